from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsr.errors import ConfigError
from medsr.metrics import DEFAULT_METRICS, METRICS, MetricSpec, compute_metrics, psnr, ssim

from .conftest import degrade

# what each metric gives for identical images
PERFECT = {
    "psnr": math.inf,
    "ssim": 1.0,
    "ms_ssim": 1.0,
    "mse": 0.0,
    "mae": 0.0,
    "nrmse_mean": 0.0,
    "nrmse_range": 0.0,
    "nrmse_euclidean": 0.0,
    "vif": 1.0,
    "gmsd": 0.0,
    "lpips": 0.0,
}


def test_table_names_and_defaults():
    assert set(METRICS) == set(PERFECT)
    assert "lpips" not in DEFAULT_METRICS
    assert set(DEFAULT_METRICS) == set(METRICS) - {"lpips"}
    assert all(isinstance(spec, MetricSpec) for spec in METRICS.values())


@pytest.fixture
def ct192(load):
    """The CT slice enlarged to 192x192, so that every metric's minimum size is met, in
    stored values (HU + 1024): nrmse_mean needs a positive mean, and the slice in HU has a
    negative one (mostly air)."""
    case = load("ct-small")
    assert case.hr.mean() < 0
    hr = ndimage.zoom(case.hr + 1024, 1.5, order=3)
    return hr, case.data_range


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_through_the_table(name, ct192):
    spec = METRICS[name]
    if spec.unavailable_reason() is not None:
        pytest.skip(spec.unavailable_reason())
    hr, data_range = ct192
    mild = degrade(hr, "blur", data_range)
    strong = degrade(mild, "blur+noise", data_range)
    sr = np.stack([mild, strong, hr])[:, None]
    ref = np.stack([hr, hr, hr])[:, None]
    values = spec(sr, ref, data_range=data_range)
    assert values.shape == (3,) and values.dtype == torch.float64
    v_mild, v_strong, v_same = values.tolist()
    assert v_same == pytest.approx(PERFECT[name], abs=1e-6)
    # the direction recorded in the table is the direction of the data
    assert (v_mild > v_strong) == spec.higher_is_better
    if spec.supports_mask:
        region = np.zeros(hr.shape, bool)
        region[40:150, 30:170] = True
        masked = spec(sr, ref, data_range=data_range, mask=region)
        assert masked.shape == (3,) and bool(torch.isfinite(masked[:2]).all())
    else:
        with pytest.raises(ConfigError, match="mask"):
            spec(sr, ref, data_range=data_range, mask=np.ones(hr.shape, bool))
    if spec.needs_data_range:
        with pytest.raises(ConfigError, match="data_range"):
            spec(sr, ref)
    if spec.min_size > 1:
        small = hr[: spec.min_size, : spec.min_size]
        assert math.isfinite(float(spec(small * 0.9, small, data_range=data_range)))
        smaller = hr[: spec.min_size - 1, : spec.min_size]
        with pytest.raises(ConfigError, match="at least"):
            spec(smaller, smaller, data_range=data_range)


def test_compute_metrics(ct192):
    hr, data_range = ct192
    sr = degrade(hr, "blur+noise", data_range)
    out = compute_metrics(sr, hr, data_range=data_range)
    assert list(out) == list(DEFAULT_METRICS)
    assert float(out["psnr"]) == float(psnr(sr, hr, data_range=data_range))
    cropped = compute_metrics(sr, hr, data_range=data_range, metrics=["psnr", "ssim"], border=4)
    assert float(cropped["ssim"]) == pytest.approx(
        float(ssim(sr[4:-4, 4:-4], hr[4:-4, 4:-4], data_range=data_range)), abs=1e-12
    )
    region = hr > 0
    with_mask = compute_metrics(sr, hr, data_range=data_range, metrics=["psnr"], mask=region)
    assert float(with_mask["psnr"]) == pytest.approx(
        float(psnr(sr, hr, data_range=data_range, mask=region)), abs=1e-12
    )
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_metrics(sr, hr, data_range=data_range, metrics=["psnr", "fsim"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_match_cpu(ct192):
    hr, data_range = ct192
    sr = degrade(hr, "blur+noise", data_range)
    region = hr > 1024
    names = [n for n in METRICS if METRICS[n].unavailable_reason() is None]
    on_cpu = compute_metrics(sr, hr, data_range=data_range, metrics=names)
    x = torch.from_numpy(sr).cuda()
    y = torch.from_numpy(hr).cuda()
    on_gpu = compute_metrics(x, y, data_range=data_range, metrics=names)
    for name in names:
        assert on_gpu[name].device.type == "cuda"
        assert float(on_gpu[name]) == pytest.approx(float(on_cpu[name]), rel=1e-6, abs=1e-9)
    masked = [n for n in names if METRICS[n].supports_mask]
    region_gpu = torch.from_numpy(region).cuda()
    got = compute_metrics(x, y, data_range=data_range, metrics=masked, mask=region_gpu)
    want = compute_metrics(sr, hr, data_range=data_range, metrics=masked, mask=region)
    for name in masked:
        assert float(got[name]) == pytest.approx(float(want[name]), rel=1e-6, abs=1e-9)
