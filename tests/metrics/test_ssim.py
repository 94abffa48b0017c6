from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as tm_ms_ssim,
)
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

from medsr.errors import ConfigError
from medsr.metrics import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_min_size, ssim, ssim_map

from .conftest import degrade

TOL = 1e-4


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def _skimage_ssim(sr, hr, data_range, full=False):
    return structural_similarity(
        hr,
        sr,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        full=full,
    )


def test_ssim_matches_skimage(pair):
    sr, case = pair
    ours = ssim(sr, case.hr, data_range=case.data_range)
    assert ours.shape == (1,) and ours.dtype == torch.float64
    assert abs(float(ours) - _skimage_ssim(sr, case.hr, case.data_range)) < TOL


def test_reflect_padding_matches_torchmetrics(blurred_noisy_pair):
    sr, case = blurred_noisy_pair
    ours = ssim(sr, case.hr, data_range=case.data_range, padding="reflect")
    ref = tm_ssim(_t(sr), _t(case.hr), data_range=case.data_range)
    assert abs(float(ours) - float(ref)) < TOL


def test_valid_map_is_the_interior_of_the_padded_map(pair):
    """The documented relation between the two border choices: they agree exactly away
    from the 5-pixel border; the means differ only by the border pixels' values."""
    sr, case = pair
    valid = ssim_map(sr, case.hr, data_range=case.data_range)
    padded = ssim_map(sr, case.hr, data_range=case.data_range, padding="reflect")
    h, w = case.hr.shape
    assert valid.shape == (1, 1, h - 10, w - 10) and padded.shape == (1, 1, h, w)
    assert torch.allclose(padded[..., 5:-5, 5:-5], valid, rtol=0, atol=1e-12)


def test_masked_ssim_averages_the_map_over_the_region(load):
    case = load("ct-small")
    sr = degrade(case.hr, "blur+noise", case.data_range)
    _, smap = _skimage_ssim(sr, case.hr, case.data_range, full=True)
    interior = (slice(5, -5), slice(5, -5))
    want = smap[interior][case.mask[interior]].mean()
    got = ssim(sr, case.hr, data_range=case.data_range, mask=case.mask)
    assert abs(float(got) - want) < TOL
    everywhere = np.ones_like(case.mask)
    assert float(ssim(sr, case.hr, data_range=case.data_range, mask=everywhere)) == pytest.approx(
        float(ssim(sr, case.hr, data_range=case.data_range)), abs=1e-12
    )
    # a region only inside the 5-pixel margin has no valid window centre: NaN
    margin = np.zeros_like(case.mask)
    margin[:3, :] = True
    assert math.isnan(float(ssim(sr, case.hr, data_range=case.data_range, mask=margin)))
    padded = ssim(sr, case.hr, data_range=case.data_range, mask=margin, padding="reflect")
    assert math.isfinite(float(padded))


def test_ssim_properties(load):
    case = load("mr-small")
    hr = case.hr
    assert float(ssim(hr, hr, data_range=case.data_range)) == pytest.approx(1.0, abs=1e-12)
    mild = degrade(hr, "blur", case.data_range)
    strong = degrade(degrade(hr, "blur", case.data_range), "blur+noise", case.data_range)
    s_mild, s_strong = (float(ssim(s, hr, data_range=case.data_range)) for s in (mild, strong))
    assert 1.0 > s_mild > s_strong
    # the luminance and contrast constants follow data_range: a wider range, a higher SSIM
    assert float(ssim(strong, hr, data_range=8 * case.data_range)) > s_strong
    batch = ssim(np.stack([mild, strong])[:, None], np.stack([hr, hr])[:, None], data_range=4096)
    assert batch.tolist() == pytest.approx([s_mild, s_strong], abs=1e-12)
    with pytest.raises(ConfigError, match="11x11"):
        ssim(hr[:10, :10], hr[:10, :10], data_range=4096)
    with pytest.raises(ConfigError, match="padding"):
        ssim(hr, hr, data_range=4096, padding="same")


def _pool(a: np.ndarray, times: int) -> torch.Tensor:
    t = _t(a)
    for _ in range(times):
        t = F.avg_pool2d(t, 2)
    return t


def test_ms_ssim_and_its_relation_to_torchmetrics(blurred_noisy_pair):
    """torchmetrics' MS-SSIM crops the contrast terms to the valid region but averages the
    coarsest scale's SSIM over a reflect-padded map; ours uses the valid region at every
    scale. So the two differ by exactly (padded / valid SSIM at scale 5) ** 0.1333."""
    sr, case = blurred_noisy_pair
    if min(case.hr.shape) < ms_ssim_min_size():
        with pytest.raises(ConfigError, match="176x176"):
            ms_ssim(sr, case.hr, data_range=case.data_range)
        return
    ours = float(ms_ssim(sr, case.hr, data_range=case.data_range))
    ref = float(tm_ms_ssim(_t(sr), _t(case.hr), data_range=case.data_range, reduction="none"))
    x5, y5 = _pool(sr, 4), _pool(case.hr, 4)
    s_valid = float(ssim(x5, y5, data_range=case.data_range))
    s_padded = float(ssim(x5, y5, data_range=case.data_range, padding="reflect"))
    assert ref == pytest.approx(ours * (s_padded / s_valid) ** MS_SSIM_WEIGHTS[-1], abs=1e-9)
    # the documented size of the difference (docs/metrics.md): below 1e-3
    assert abs(ours - ref) < 1e-3


def test_ms_ssim_properties(load):
    case = load("ct-small")
    hr = case.hr
    assert ms_ssim_min_size() == 176 and ms_ssim_min_size(3) == 44
    with pytest.raises(ConfigError, match="176x176"):
        ms_ssim(hr, hr, data_range=case.data_range)
    three = MS_SSIM_WEIGHTS[:3]
    assert float(ms_ssim(hr, hr, data_range=4096, weights=three)) == pytest.approx(1.0, abs=1e-12)
    mild = degrade(hr, "blur", case.data_range)
    strong = degrade(mild, "blur+noise", case.data_range)
    values = [float(ms_ssim(s, hr, data_range=4096, weights=three)) for s in (mild, strong)]
    assert 1.0 > values[0] > values[1] > 0.0
    # an all-true mask is the unmasked value; a half mask something else, still finite
    full = np.ones(hr.shape, bool)
    half = np.zeros(hr.shape, bool)
    half[:, :64] = True
    plain = ms_ssim(strong, hr, data_range=4096, weights=three)
    assert float(ms_ssim(strong, hr, data_range=4096, weights=three, mask=full)) == pytest.approx(
        float(plain), abs=1e-12
    )
    assert math.isfinite(float(ms_ssim(strong, hr, data_range=4096, weights=three, mask=half)))
    # anti-correlated texture: the negative contrast terms are clipped to 0, not NaN
    texture = np.random.default_rng(0).normal(0.0, 500.0, hr.shape)
    assert float(ssim(1000 - texture, 1000 + texture, data_range=4096)) < 0
    assert float(ms_ssim(1000 - texture, 1000 + texture, data_range=4096, weights=three)) == 0.0
