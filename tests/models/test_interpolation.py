"""Interpolation baselines: Lanczos-3 against PIL, flat fields, nearest replication."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from medsr.models import Bicubic, Bilinear, Lanczos, Nearest
from medsr.models.interpolation import lanczos_phase_kernels


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_lanczos_kernels_are_normalised_and_mirror_each_other(scale):
    kernels = lanczos_phase_kernels(scale)
    assert kernels.shape == (scale, 7)
    torch.testing.assert_close(kernels.sum(1), torch.ones(scale))
    # Phase p and phase scale-1-p sit symmetrically around the input sample.
    torch.testing.assert_close(kernels, kernels.flip(0).flip(1))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lanczos_matches_pil_away_from_the_border(scale):
    rng = np.random.default_rng(0)
    image = rng.random((20, 24)).astype(np.float32)
    ours = Lanczos(scale=scale)(torch.from_numpy(image)[None, None])[0, 0].numpy()
    pil = np.asarray(
        Image.fromarray(image, mode="F").resize((24 * scale, 20 * scale), Image.LANCZOS)
    )
    margin = 3 * scale  # PIL renormalises the truncated kernel at the border; we replicate
    inner = (slice(margin, -margin), slice(margin, -margin))
    np.testing.assert_allclose(ours[inner], pil[inner], atol=2e-5)
    assert not np.allclose(ours[inner], image.repeat(scale, 0).repeat(scale, 1)[inner])


@pytest.mark.parametrize("cls", [Nearest, Bilinear, Bicubic, Lanczos])
def test_flat_images_stay_flat(cls):
    lr = torch.full((2, 3, 5, 6), 0.37)
    sr = cls(scale=3, in_channels=3)(lr)
    torch.testing.assert_close(sr, torch.full((2, 3, 15, 18), 0.37))


def test_nearest_replicates_pixels():
    lr = torch.arange(6.0).reshape(1, 1, 2, 3)
    sr = Nearest(scale=2)(lr)
    assert torch.equal(sr, lr.repeat_interleave(2, -1).repeat_interleave(2, -2))


def test_lanczos_reproduces_linear_ramps_in_the_interior():
    ramp = torch.linspace(0, 1, 16).expand(1, 1, 16, 16)
    sr = Lanczos(scale=4)(ramp)[..., 12:-12, 12:-12]
    expected = Bilinear(scale=4)(ramp)[..., 12:-12, 12:-12]
    torch.testing.assert_close(sr, expected, atol=2e-3, rtol=0)
