from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medsr.errors import ConfigError
from medsr.metrics import (
    DEFAULT_REGION_METRICS,
    METRICS,
    mask_from_labels,
    psnr,
    region_columns,
    region_metrics,
    threshold_mask,
)

from .conftest import degrade


def test_threshold_mask():
    img = np.array([[-1000.0, -400.0], [40.0, 1200.0]])
    assert threshold_mask(img, low=-500).tolist() == [[False, True], [True, True]]
    assert threshold_mask(img, high=40).tolist() == [[True, True], [True, False]]
    assert threshold_mask(img, low=-500, high=100).tolist() == [[False, True], [True, False]]
    assert threshold_mask(torch.tensor(img), low=0).dtype == torch.bool
    with pytest.raises(ConfigError, match="low, high"):
        threshold_mask(img)
    with pytest.raises(ConfigError, match="low <= high"):
        threshold_mask(img, low=5, high=1)


def test_mask_from_labels():
    labels = np.array([[0, 1, 2], [4, 4, 0]], dtype=np.uint8)
    assert mask_from_labels(labels).tolist() == [[False, True, True], [True, True, False]]
    assert mask_from_labels(labels, values=[4]).tolist() == [
        [False, False, False],
        [True, True, False],
    ]
    # float label maps with scaling residue (as in the BraTS brainmask files) still work
    assert mask_from_labels(np.array([0.0, 0.99999997, 2.0000001]), values=[1]).tolist() == [
        False,
        True,
        False,
    ]
    with pytest.raises(ConfigError, match="label map"):
        mask_from_labels(np.array([0.0, 0.5]))
    with pytest.raises(ConfigError, match="at least one"):
        mask_from_labels(labels, values=[])


def test_brain_region_metrics_on_brats(load):
    """Inside and outside the real brain mask of a BraTS slice, with 5 times more noise in
    the brain than in the background: the brain must score worse."""
    case = load("brats-flair")
    hr, brain = case.hr, case.mask
    rng = np.random.default_rng(3)
    sigma = np.where(brain, 0.05, 0.01) * case.data_range
    sr = hr + rng.normal(0, 1, hr.shape) * sigma
    res = region_metrics(sr, hr, mask=brain, data_range=case.data_range)
    assert list(res) == list(DEFAULT_REGION_METRICS)
    for name, v in res.items():
        assert v.inside.shape == v.outside.shape == v.difference.shape == (1,)
        torch.testing.assert_close(v.difference, v.inside - v.outside, equal_nan=True)
        if name not in ("ms_ssim", "nrmse_range"):
            assert v.note == "", name
            assert bool(torch.isfinite(v.difference)), name
            better_inside = bool(v.difference > 0) == METRICS[name].higher_is_better
            assert not better_inside, name
    # the background of these z-scored slices is one constant: its range is 0
    assert np.ptp(hr[~brain]) == 0 and math.isinf(float(res["nrmse_range"].outside))
    # MS-SSIM's coarsest valid windows (the central 80x80 pixels of 240x240) lie in the brain
    assert math.isnan(float(res["ms_ssim"].outside)) and "80" in res["ms_ssim"].note
    assert math.isfinite(float(res["ms_ssim"].inside))
    assert float(res["psnr"].inside) == pytest.approx(
        peak_signal_noise_ratio(hr[brain], sr[brain], data_range=case.data_range), abs=1e-6
    )
    # the tumour-region SSIM of the brain tumour work: the map averaged over the region
    _, smap = structural_similarity(
        hr,
        sr,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=case.data_range,
        full=True,
    )
    inner = (slice(5, -5), slice(5, -5))
    assert float(res["ssim"].inside) == pytest.approx(smap[inner][brain[inner]].mean(), abs=1e-4)
    assert float(res["ssim"].outside) == pytest.approx(smap[inner][~brain[inner]].mean(), abs=1e-4)
    columns = region_columns(res)
    assert columns["ssim_inside"] is res["ssim"].inside
    assert len(columns) == 3 * len(res)


def test_region_metrics_with_a_label_mask_and_border(load):
    case = load("ct-small")
    sr = degrade(case.hr, "blur+noise", case.data_range)
    labels = np.zeros(case.hr.shape, np.int16)
    labels[30:70, 40:90] = 2
    region = mask_from_labels(labels)
    res = region_metrics(
        sr, case.hr, mask=region, data_range=4096, metrics=["psnr", "ssim", "vif"], border=8
    )
    crop = (slice(8, -8), slice(8, -8))
    want = region_metrics(
        sr[crop],
        case.hr[crop],
        mask=region[crop],
        data_range=4096,
        metrics=["psnr", "ssim", "vif"],
    )
    for name in ("psnr", "ssim", "vif"):
        assert float(res[name].inside) == pytest.approx(float(want[name].inside), abs=1e-12)
        assert float(res[name].outside) == pytest.approx(float(want[name].outside), abs=1e-12)
    assert float(res["psnr"].inside) == pytest.approx(
        float(psnr(sr[crop], case.hr[crop], data_range=4096, mask=region[crop])), abs=1e-12
    )


def test_empty_or_unusable_regions_give_nan_and_a_note(load, caplog):
    case = load("ct-small")
    sr = degrade(case.hr, "noise", case.data_range)
    empty = np.zeros(case.hr.shape, bool)
    with caplog.at_level(logging.WARNING, logger="medsr.metrics.roi"):
        res = region_metrics(sr, case.hr, mask=empty, data_range=4096, metrics=["psnr", "ssim"])
    for name in ("psnr", "ssim"):
        assert math.isnan(float(res[name].inside)) and math.isnan(float(res[name].difference))
        assert math.isfinite(float(res[name].outside))
        assert "inside: the region is empty in image(s) [0]" in res[name].note
    assert "region is empty" in caplog.text
    # a region only in the 5-pixel margin: PSNR has pixels, SSIM has no window centre
    margin = np.zeros(case.hr.shape, bool)
    margin[:2, :] = True
    res = region_metrics(sr, case.hr, mask=margin, data_range=4096, metrics=["psnr", "ssim"])
    assert math.isfinite(float(res["psnr"].inside)) and res["psnr"].note == ""
    assert math.isnan(float(res["ssim"].inside)) and "within 5 pixels" in res["ssim"].note
    # an image smaller than a metric's minimum: NaN and a note, not an exception
    small = region_metrics(sr, case.hr, mask=case.mask, data_range=4096, metrics=["ms_ssim"])
    assert math.isnan(float(small["ms_ssim"].inside)) and "176x176" in small["ms_ssim"].note


def test_region_metrics_per_image_masks():
    rng = np.random.default_rng(0)
    hr = rng.random((2, 1, 48, 48))
    sr = hr + rng.normal(0, 0.05, hr.shape)
    masks = np.zeros((2, 1, 48, 48), bool)
    masks[0, 0, 10:30, 10:30] = True  # the second image has no region
    res = region_metrics(sr, hr, mask=masks, data_range=1.0, metrics=["mae"])
    assert math.isfinite(float(res["mae"].inside[0])) and math.isnan(float(res["mae"].inside[1]))
    assert "image(s) [1]" in res["mae"].note


def test_region_metrics_rejects_bad_requests():
    img = np.zeros((32, 32))
    region = np.ones((32, 32), bool)
    with pytest.raises(ConfigError, match="do not support masks"):
        region_metrics(img, img, mask=region, data_range=1.0, metrics=["lpips"])
    with pytest.raises(ConfigError, match="unknown metric"):
        region_metrics(img, img, mask=region, data_range=1.0, metrics=["ssimm"])
    with pytest.raises(ConfigError, match="boolean"):
        region_metrics(img, img, mask=region.astype(float), data_range=1.0)
