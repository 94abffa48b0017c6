from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.metrics import consistency_psnr

SCALE = 4


def area_down(x: torch.Tensor) -> torch.Tensor:
    """The test degradation: the mean of each 4x4 block (a local area-average downsampler)."""
    return F.avg_pool2d(x, SCALE)


@pytest.fixture(params=["cxr-01", "ct-small"])
def hr_lr(request, load):
    case = load(request.param)
    hr = torch.from_numpy(case.hr)[None, None]
    return hr, area_down(hr), case.data_range


def test_invented_structure_scores_lower(hr_lr):
    hr, lr, data_range = hr_lr
    bicubic = F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)
    # bright 9x9 spots on a 32-pixel grid: structure the LR input cannot explain, and which
    # survives 4x4 averaging
    spots = torch.zeros_like(hr)
    spots[..., 12::32, 12::32] = 1.0
    spots = F.max_pool2d(spots, 9, stride=1, padding=4)
    invented = hr + 0.15 * data_range * spots
    true_hr = float(consistency_psnr(hr, lr, degrade=area_down, data_range=data_range))
    bic = float(consistency_psnr(bicubic, lr, degrade=area_down, data_range=data_range))
    inv = float(consistency_psnr(invented, lr, degrade=area_down, data_range=data_range))
    assert math.isinf(true_hr)  # the true image explains its LR exactly
    assert math.isfinite(bic) and bic > 30.0
    assert inv < bic - 5.0


def test_structure_in_the_null_space_is_invisible(hr_lr):
    """The documented limit: a checkerboard finer than the LR pixels averages to zero in
    every 4x4 block, so the consistency check cannot see it."""
    hr, lr, data_range = hr_lr
    yy, xx = torch.meshgrid(torch.arange(hr.shape[-2]), torch.arange(hr.shape[-1]), indexing="ij")
    checker = ((yy + xx) % 2 * 2 - 1).to(hr.dtype)
    hidden = hr + 0.15 * data_range * checker
    hidden_psnr = float(consistency_psnr(hidden, lr, degrade=area_down, data_range=data_range))
    assert hidden_psnr > 200.0  # equal up to rounding (inf when the sums are exact)


def test_inputs_shapes_and_dtypes(hr_lr):
    hr, lr, data_range = hr_lr
    seen = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append((x.dtype, x.ndim))
        return area_down(x)

    consistency_psnr(hr.float(), lr, degrade=spy, data_range=data_range)
    consistency_psnr(hr[0, 0].numpy(), lr[0, 0].numpy(), degrade=spy, data_range=data_range)
    assert seen == [(torch.float32, 4), (torch.float64, 4)]
    batch = consistency_psnr(
        torch.cat([hr, hr + 1.0]), torch.cat([lr, lr]), degrade=area_down, data_range=data_range
    )
    assert batch.shape == (2,) and math.isinf(float(batch[0]))
    assert float(batch[1]) == pytest.approx(20 * math.log10(data_range), abs=1e-9)
    with pytest.raises(ConfigError, match="shape"):
        consistency_psnr(hr, lr, degrade=lambda x: F.avg_pool2d(x, 2), data_range=data_range)
    with pytest.raises(ConfigError, match="Tensor"):
        consistency_psnr(hr, lr, degrade=lambda x: np.zeros(3), data_range=data_range)
