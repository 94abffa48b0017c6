"""The Real-ESRGAN second-order degradation: seeds, 8-bit grid, kernels, options."""

from __future__ import annotations

import math

import pytest
import torch

from medsr.errors import ConfigError
from medsr.transforms import degrade as D


# -- Real-ESRGAN -------------------------------------------------------------------------------
def test_realesrgan_is_deterministic_per_seed_and_on_the_8_bit_grid(
    flair_slice: torch.Tensor,
) -> None:
    hr = flair_slice.expand(2, 1, 240, 240)
    a = D.realesrgan(hr, 4, generator=11)
    b = D.realesrgan(hr, 4, generator=11)
    c = D.realesrgan(hr, 4, generator=12)
    assert a.shape == (2, 1, 60, 60)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # every image draws its own degradation
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # still the same anatomy: close to the clean bicubic LR on average
    assert float((a - D.bicubic(hr, 4)).abs().mean()) < 0.15


def test_realesrgan_kernels() -> None:
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        k = D.random_blur_kernel(
            g,
            size=21,
            sigma_range=(0.2, 3.0),
            betag_range=(0.5, 4.0),
            betap_range=(1.0, 2.0),
            kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
        )
        assert k.shape == (21, 21)
        assert float(k.sum()) == pytest.approx(1.0)
        assert float(k.min()) >= 0
        assert torch.allclose(k, k.flip(0).flip(1))  # point-symmetric
        seen.add(bool(torch.allclose(k, k.T)))
    assert seen == {True, False}  # both isotropic and rotated anisotropic kernels occur
    sinc = D.sinc_kernel(math.pi / 3, 21)
    assert float(sinc.sum()) == pytest.approx(1.0)
    assert torch.allclose(sinc, sinc.T) and float(sinc.min()) < 0  # ringing lobes
    response = torch.fft.fft2(torch.nn.functional.pad(sinc, (0, 43, 0, 43))).abs()
    assert float(response[0, 0]) == pytest.approx(1.0)
    assert float(response[0, 32]) < 0.1  # cut-off pi/3 = 1/6 cycles/px: Nyquist is stopped


def test_realesrgan_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="kernel_size_range"):
        D.build_degradation({"name": "realesrgan", "kernel_size_range": [8, 21]})
    with pytest.raises(ConfigError, match="sinc_prob"):
        D.build_degradation({"name": "realesrgan", "sinc_prob": 1.5})
    with pytest.raises(ConfigError, match="noise_range"):
        D.build_degradation({"name": "realesrgan", "noise_range": [30, 1]})
    with pytest.raises(ConfigError, match="resize_prob2 must not be all zero"):
        D.build_degradation({"name": "realesrgan", "resize_prob2": [0, 0, 0]})
    custom = D.build_degradation({"name": "realesrgan", "scale": 2, "final_sinc_prob": 0.0})
    assert custom.scale == 2
