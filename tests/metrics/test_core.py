from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import mean_squared_error, normalized_root_mse, peak_signal_noise_ratio
from torchmetrics.functional import mean_absolute_error
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.regression import normalized_root_mean_squared_error as tm_nrmse

from medsr.errors import ConfigError
from medsr.metrics import (
    crop_border,
    data_range_width,
    mae,
    mse,
    nrmse_euclidean,
    nrmse_mean,
    nrmse_range,
    psnr,
)

TOL = 1e-4


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def test_psnr_matches_skimage_and_torchmetrics(pair):
    sr, case = pair
    ours = psnr(sr, case.hr, data_range=case.data_range)
    assert ours.shape == (1,) and ours.dtype == torch.float64
    ref = peak_signal_noise_ratio(case.hr, sr, data_range=case.data_range)
    tm = tm_psnr(_t(sr), _t(case.hr), data_range=case.data_range, reduction="none", dim=(1, 2, 3))
    assert abs(float(ours) - ref) < TOL
    assert abs(float(ours) - float(tm)) < TOL


@pytest.mark.parametrize(
    ("fn", "skimage_name"),
    [(nrmse_mean, "mean"), (nrmse_range, "min-max"), (nrmse_euclidean, "euclidean")],
)
def test_nrmse_variants_match_skimage(pair, fn, skimage_name):
    sr, case = pair
    ref = normalized_root_mse(case.hr, sr, normalization=skimage_name)
    assert abs(float(fn(sr, case.hr)) - ref) < TOL * max(1.0, abs(ref))


def test_nrmse_matches_torchmetrics_where_defined_alike(pair):
    sr, case = pair
    x, y = torch.from_numpy(sr).flatten(), torch.from_numpy(case.hr).flatten()
    assert abs(float(nrmse_mean(sr, case.hr)) - float(tm_nrmse(x, y, normalization="mean"))) < TOL
    assert abs(float(nrmse_range(sr, case.hr)) - float(tm_nrmse(x, y, normalization="range"))) < TOL
    # torchmetrics' "l2" divides the RMSE by the norm, not the RMS: a factor sqrt(N) apart
    l2 = float(tm_nrmse(x, y, normalization="l2")) * math.sqrt(x.numel())
    assert abs(float(nrmse_euclidean(sr, case.hr)) - l2) < TOL


def test_mse_mae_match_references(pair):
    sr, case = pair
    ref_mse = mean_squared_error(case.hr, sr)
    assert abs(float(mse(sr, case.hr)) - ref_mse) < TOL * max(1.0, ref_mse)
    ref_mae = float(mean_absolute_error(_t(sr), _t(case.hr)))
    assert abs(float(mae(sr, case.hr)) - ref_mae) < TOL * max(1.0, ref_mae)


def test_masked_metrics_use_only_region_pixels(load):
    case = load("ct-small")
    sr = case.hr + np.random.default_rng(1).normal(0, 20, case.hr.shape)
    m = case.mask
    assert 0 < m.sum() < m.size
    x, y = sr[m], case.hr[m]
    assert float(psnr(sr, case.hr, data_range=4096, mask=m)) == pytest.approx(
        peak_signal_noise_ratio(y, x, data_range=4096), abs=TOL
    )
    assert float(mae(sr, case.hr, mask=m)) == pytest.approx(np.abs(x - y).mean(), rel=1e-9)
    variants = ((nrmse_mean, "mean"), (nrmse_range, "min-max"), (nrmse_euclidean, "euclidean"))
    for fn, norm in variants:
        assert float(fn(sr, case.hr, mask=m)) == pytest.approx(
            normalized_root_mse(y, x, normalization=norm), rel=1e-9
        )


def test_shapes_batches_and_input_types(load):
    case = load("mr-small")
    hr = case.hr
    sr1 = hr + 10.0
    sr2 = hr * 0.9
    single = [float(psnr(s, hr, data_range=4096)) for s in (sr1, sr2)]
    batch = psnr(np.stack([sr1, sr2])[:, None], np.stack([hr, hr])[:, None], data_range=4096)
    assert batch.shape == (2,)
    assert batch.tolist() == pytest.approx(single, abs=1e-12)
    # (C, H, W) is one image with C channels: the channels are pooled
    chw = psnr(np.stack([sr1, sr2]), np.stack([hr, hr]), data_range=4096)
    assert chw.shape == (1,)
    both = 10 * math.log10(4096**2 / ((100.0 + float(((0.1 * hr) ** 2).mean())) / 2))
    assert float(chw) == pytest.approx(both, abs=1e-9)
    # integer numpy input and float32 tensors give the same value as float64
    as_int = psnr(hr.astype(np.int16) + np.int16(3), hr.astype(np.int16), data_range=4096)
    as_f32 = psnr(torch.tensor(hr + 3, dtype=torch.float32), torch.tensor(hr), data_range=4096)
    assert float(as_int) == pytest.approx(10 * math.log10(4096**2 / 9), abs=1e-9)
    assert float(as_f32) == pytest.approx(float(as_int), abs=1e-9)


def test_identical_and_empty_region():
    img = np.arange(64.0).reshape(8, 8)
    assert math.isinf(float(psnr(img, img, data_range=63)))
    assert float(mse(img, img)) == 0.0
    empty = np.zeros((8, 8), bool)
    assert math.isnan(float(psnr(img + 1, img, data_range=63, mask=empty)))
    assert math.isnan(float(nrmse_range(img + 1, img, mask=empty)))


def test_mask_broadcasts_over_batch_and_channels():
    rng = np.random.default_rng(0)
    hr = rng.random((3, 2, 16, 16))
    sr = hr + rng.normal(0, 0.1, hr.shape)
    m = np.zeros((16, 16), bool)
    m[4:12, 2:9] = True
    got = mse(sr, hr, mask=m)
    want = [((sr[b][:, m] - hr[b][:, m]) ** 2).mean() for b in range(3)]
    assert got.tolist() == pytest.approx(want, rel=1e-12)
    per_image = np.zeros((3, 1, 16, 16), bool)
    per_image[1, 0, :3, :3] = True
    got = mse(sr, hr, mask=per_image)
    assert math.isnan(float(got[0])) and math.isnan(float(got[2]))
    assert float(got[1]) == pytest.approx(((sr[1][:, :3, :3] - hr[1][:, :3, :3]) ** 2).mean())


def test_data_range_is_explicit_and_validated():
    img = np.ones((8, 8))
    assert data_range_width((-1024, 3071)) == 4095.0
    assert float(psnr(img * 2, img, data_range=(-1024, 3071))) == pytest.approx(
        float(psnr(img * 2, img, data_range=4095))
    )
    assert data_range_width(np.float32(255)) == data_range_width(torch.tensor(255.0)) == 255.0
    for bad in (0, -1.0, math.inf, math.nan, (5, 5), (1, 2, 3), None, "255", True):
        with pytest.raises(ConfigError, match="data_range"):
            psnr(img, img, data_range=bad)
    with pytest.raises(TypeError):
        psnr(img, img)  # no default: never inferred from the data


def test_bad_inputs_raise_config_errors():
    img = np.ones((8, 8))
    with pytest.raises(ConfigError, match="same shape"):
        mse(img, np.ones((8, 9)))
    with pytest.raises(ConfigError, match="boolean"):
        mse(img, img, mask=np.ones((8, 8)))
    with pytest.raises(ConfigError, match="broadcast"):
        mse(img, img, mask=np.ones((4, 4), bool))
    with pytest.raises(ConfigError, match="shape"):
        mse(np.ones(8), np.ones(8))
    with pytest.raises(ConfigError, match="Tensor or numpy"):
        mse([[1.0]], [[1.0]])


def test_crop_border():
    x = torch.arange(100.0).reshape(1, 1, 10, 10)
    assert torch.equal(crop_border(x, 0), x)
    assert torch.equal(crop_border(x, 2), x[..., 2:8, 2:8])
    with pytest.raises(ConfigError, match="border"):
        crop_border(x, 5)
    with pytest.raises(ConfigError, match="border"):
        crop_border(x, -1)
