"""Thick slices (slice profiles in mm and voxels) and degrading volumes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsr.errors import ConfigError
from medsr.transforms import degrade as D

from .conftest import CONFIGS, rand


# -- thick slices ------------------------------------------------------------------------------
def _fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum of a single peak, with linear interpolation."""
    half = profile.max() / 2
    above = np.nonzero(profile >= half)[0]
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - profile[lo - 1]) / (profile[lo] - profile[lo - 1])
    right = hi + (profile[hi] - half) / (profile[hi] - profile[hi + 1])
    return float(right - left)


@pytest.mark.parametrize(
    ("thickness", "gap", "spacing"), [(8.0, -7.0, 1.0), (4.0, -3.5, 0.5), (6.0, -5.4, 0.6)]
)
def test_a_bright_slice_spreads_per_the_profile_fwhm(
    thickness: float, gap: float, spacing: float
) -> None:
    volume = torch.zeros(64, 6, 5)
    volume[32] = 1.0
    expected_voxels = thickness / spacing
    gauss = D.thick_slices(volume, thickness=thickness, gap=gap, input_spacing=spacing, axis=0)
    assert gauss.shape == volume.shape  # thickness + gap = one input voxel
    response = gauss[:, 2, 2].double().numpy()
    # the profile integrated over one voxel: FWHM of a Gaussian convolved with a unit box
    sigma = expected_voxels / 2.3548
    widened = 2.3548 * math.sqrt(sigma**2 + 1 / 12)
    assert _fwhm(response) == pytest.approx(widened, rel=0.01)
    assert response.sum() == pytest.approx(1.0, abs=1e-5)
    rect = D.thick_slices(
        volume, thickness=thickness, gap=gap, input_spacing=spacing, profile="rect", axis=0
    )[:, 2, 2].numpy()
    # a box of an even number T of voxels centred on a voxel centre: T - 1 full voxels and
    # two half voxels, so T + 1 neighbours see the bright slice, each with weight <= 1 / T
    assert (rect > 1e-7).sum() == round(expected_voxels) + 1
    assert rect.max() == pytest.approx(1 / expected_voxels, rel=1e-5)


def test_thick_slice_weights_in_mm_with_a_gap() -> None:
    # 5 mm slices every 6 mm from 1 mm voxels: centre 6j + 3 covers [6j + 0.5, 6j + 5.5]
    weights = D.slice_profile_weights(12, thickness=5.0, gap=1.0, profile="rect")
    assert weights.shape == (2, 12)
    expected = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.2, 0.1], dtype=torch.float64)
    assert torch.allclose(weights[0, :6], expected)
    assert torch.allclose(weights[1, 6:], expected)
    assert torch.allclose(weights[0, 6:], torch.zeros(6, dtype=torch.float64))
    gauss = D.slice_profile_weights(80, thickness=4.0, input_spacing=0.5)
    assert gauss.shape == (10, 80)
    assert torch.allclose(gauss.sum(dim=1), torch.ones(10, dtype=torch.float64))
    # thick slice j is centred at (j + 0.5) * 4 mm (away from the truncated ends)
    centre_of_mass = (gauss * (torch.arange(80) + 0.5) * 0.5).sum(dim=1)
    expected_centres = (torch.arange(2, 8, dtype=torch.float64) + 0.5) * 4.0
    assert torch.allclose(centre_of_mass[2:8], expected_centres, atol=1e-6)


def test_thick_slice_errors() -> None:
    with pytest.raises(ConfigError, match="whole number of voxels"):
        D.slice_profile_weights(60, thickness=5.0, input_spacing=0.84)
    with pytest.raises(ConfigError, match="not divisible"):
        D.thick_slices(torch.zeros(67, 4, 4), thickness=5.0, axis=0)
    with pytest.raises(ConfigError, match="thickness \\+ gap"):
        D.build_degradation({"name": "thick_slice", "thickness": 2.0, "gap": -2.0})
    with pytest.raises(ConfigError, match="profile"):
        D.build_degradation({"name": "thick_slice", "thickness": 2.0, "profile": "box"})


def test_thick_slices_of_a_real_volume(flair_unit: torch.Tensor) -> None:
    deg = D.load_degradation(CONFIGS / "thick_slice_5mm.yaml")
    volume = flair_unit[88:152, 88:152, :].contiguous()  # the central columns, all 155 slices
    thick = D.along_axis(deg, volume, axis=2)  # nibabel order (X, Y, Z): Z is axis 2
    assert thick.shape == (64, 64, 31)
    direct = D.thick_slices(volume, thickness=5.0, axis=2)
    assert torch.allclose(thick, direct, atol=1e-6)
    # the middle thick slice is the profile-weighted mean of the thin slices around 75..79
    w = D.slice_profile_weights(155, thickness=5.0)[15]
    assert torch.allclose(thick[..., 15], (volume * w.float()).sum(dim=2), atol=1e-5)
    assert float(thick.mean()) == pytest.approx(float(volume.mean()), rel=1e-3)


# -- volumes -----------------------------------------------------------------------------------
def test_along_axis_and_slicewise_match_explicit_loops() -> None:
    volume = rand(12, 16, 20)
    cubic = D.build_degradation({"name": "bicubic", "scale": [4, 1]})
    along = D.along_axis(cubic, volume, axis=0)
    assert along.shape == (3, 16, 20)
    loop = torch.stack([D.bicubic(volume[:, y, :], (4, 1)) for y in range(16)], dim=1)
    assert torch.allclose(along, loop, atol=1e-6)
    assert D.along_axis(cubic, volume, axis=1).shape == (12, 4, 20)
    assert D.along_axis(cubic, volume, axis=2).shape == (12, 16, 5)
    inplane = D.slicewise(D.build_degradation({"name": "bicubic", "scale": 4}), volume, axis=0)
    assert inplane.shape == (12, 4, 5)
    assert torch.allclose(inplane[5], D.bicubic(volume[5], 4), atol=1e-6)
    assert D.slicewise(lambda t: D.bicubic(t, 2), volume, axis=2).shape == (6, 8, 20)
    noisy = D.slicewise(
        D.build_degradation({"name": "gaussian_noise", "sigma": 0.1}), volume, generator=1
    )
    assert not torch.equal(noisy[0] - volume[0], noisy[1] - volume[1])
    with pytest.raises(ConfigError, match="volume"):
        D.along_axis(cubic, volume[0], axis=0)
