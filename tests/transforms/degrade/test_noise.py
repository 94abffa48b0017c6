"""Noise statistics: Rician SNR, Gaussian and Poisson."""

from __future__ import annotations

import math

import pytest
import torch

from medsr.transforms import degrade as D


# -- noise -------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr", [5.0, 10.0, 20.0, 40.0])
def test_rician_noise_has_the_requested_snr_on_a_flat_region(snr: float) -> None:
    image = torch.zeros(1, 1, 256, 256)
    image[..., 32:224, 32:224] = 0.5  # flat foreground; its mean is the SNR reference
    noisy = D.rician_noise(image, snr, generator=0, clip=False)
    region = noisy[..., 40:216, 40:216].double()
    measured = float(region.mean() / region.std())
    # Rician bias: mean ~ sqrt(S^2 + sigma^2) and the std a little below sigma at low SNR
    assert measured == pytest.approx(snr, rel=0.04 + 0.5 / snr**2)
    sigma = 0.5 / snr
    background = noisy[..., :24, :].double()
    assert float(background.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.03)
    assert float(noisy.min()) >= 0.0  # a magnitude image


def test_rician_reference_max_and_snr_range(flair_slice: torch.Tensor) -> None:
    image = torch.zeros(1, 1, 128, 128)
    image[..., :, :64] = 0.25
    image[..., :, 64:] = 1.0
    noisy = D.rician_noise(image, 20.0, generator=1, reference="max", clip=False)
    assert float(noisy[..., 8:-8, 72:-8].std()) == pytest.approx(1.0 / 20, rel=0.05)
    ref = D.noise_reference(image, "foreground_mean")
    assert float(ref) == pytest.approx(0.625)
    batch = flair_slice.expand(16, 1, 240, 240)
    out = D.rician_noise(batch, (5.0, 50.0), generator=2)
    background_std = out[..., :20, :20].reshape(16, -1).std(dim=1)
    assert float(background_std.max() / background_std.min()) > 3  # a different SNR per image


def test_gaussian_and_poisson_noise_statistics() -> None:
    flat = torch.full((1, 1, 200, 200), 0.5)
    g = D.gaussian_noise(flat, 0.05, generator=0)
    assert float(g.std()) == pytest.approx(0.05, rel=0.03)
    assert float(g.mean()) == pytest.approx(0.5, abs=1e-3)
    p = D.poisson_noise(flat, 200.0, generator=0)
    assert float(p.var()) == pytest.approx(0.5 / 200.0, rel=0.05)
    assert float(p.mean()) == pytest.approx(0.5, abs=2e-3)
    counts = p * 200.0
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # whole photon counts
