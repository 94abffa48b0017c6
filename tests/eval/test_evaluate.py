from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medsr.data.manifest import read_manifest
from medsr.errors import ConfigError
from medsr.eval.evaluate import EvalSettings, Evaluator, result_columns, run_evaluation, select_rows
from medsr.eval.methods import method_from_module
from medsr.eval.regions import parse_region
from medsr.eval.results import read_results
from medsr.models import build_generator
from medsr.transforms.degrade import build_degradation
from tests.eval.conftest import TinyNet, rows_by

BICUBIC_X4 = build_degradation({"name": "bicubic", "scale": 4})


def _interp(name: str, scale: int = 4):
    return method_from_module(build_generator(name, {"scale": scale, "in_channels": 1}), name=name)


def _same(a: list[dict], b: list[dict]) -> bool:
    """Rows equal, NaN equal to NaN."""

    def norm(rows):
        return [{k: "nan" if v != v else v for k, v in r.items()} for r in rows]

    return norm(a) == norm(b)


def _settings(prepared: Path, **kw) -> EvalSettings:
    base = {
        "manifest": prepared,
        "degradation": BICUBIC_X4,
        "splits": ("val",),
        "metrics": ("psnr", "ssim", "ms_ssim", "mae", "nrmse_mean"),
        "regions": (parse_region("brain"), parse_region("lesion=zscore:1")),
        "region_metrics": ("psnr", "ssim"),
    }
    base.update(kw)
    return EvalSettings(**base)


def test_one_row_per_method_and_image_in_physical_units(prepared: Path, tiny_net) -> None:
    settings = _settings(prepared)
    methods = [_interp("bicubic"), _interp("nearest"), method_from_module(tiny_net, name="tiny")]
    rows = run_evaluation(methods, settings)
    assert len(rows) == 3 * 7  # val: 3 spine + 4 brain slices
    assert list(rows[0]) == result_columns(settings)
    manifest = {(r.volume_id, r.slice_index): r for r in read_manifest(prepared)}
    evaluator = Evaluator(settings)
    for row in rows:
        record = manifest[(row["volume_id"], row["slice_index"])]
        low, high = record.load_normaliser().bounds
        assert (row["data_low"], row["data_high"]) == (low, high)
        assert row["data_range"] == pytest.approx(high - low)
        assert (row["lr_height"] * 4, row["lr_width"] * 4) == (row["height"], row["width"])
        assert row["runtime_s"] >= 0
    # PSNR and MAE recomputed by hand in physical units from the stored HR slice
    row = rows_by(rows, method="nearest", dataset="spine-mri")[0]
    index = next(
        i
        for i in evaluator.indices
        if evaluator.dataset.rows[i].volume_id == row["volume_id"]
        and evaluator.dataset.rows[i].slice_index == row["slice_index"]
    )
    sample = evaluator.sample(index)
    lr = sample.normaliser.inverse(sample.lr[0].double().numpy())
    sr = np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1)  # nearest x4 in physical units
    err = sr - sample.hr_physical
    assert row["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    expected_psnr = 10 * math.log10(row["data_range"] ** 2 / (err**2).mean())
    assert row["psnr"] == pytest.approx(expected_psnr, rel=1e-5)
    # small images: MS-SSIM cannot be computed, the row says why
    assert math.isnan(row["ms_ssim"]) and "ms_ssim: image smaller than 176 px" in row["notes"]
    # the ground truth itself is perfectly consistent with its (noise-free) LR
    oracle, _ = evaluator.score_output("oracle", sample, sample.hr.double(), 0.0)
    assert oracle["psnr"] == math.inf and oracle["consistency_psnr"] > 100
    assert row["consistency_psnr"] < 60


def test_region_columns_with_masks_and_nan_without(prepared: Path) -> None:
    settings = _settings(prepared, region_metrics=("psnr", "ssim", "mae"))
    rows = run_evaluation([_interp("bicubic")], settings)
    columns = result_columns(settings)
    for region in ("brain", "lesion"):
        assert f"{region}_fraction" in columns
        for m in ("psnr", "ssim", "mae"):
            for side in ("inside", "outside", "difference"):
                assert f"{region}_{m}_{side}" in columns
    brain_rows = rows_by(rows, dataset="brain-mri")
    spine_rows = rows_by(rows, dataset="spine-mri")
    for row in brain_rows:
        assert 0 < row["brain_fraction"] < 1
        assert np.isfinite(row["brain_ssim_inside"]) and np.isfinite(row["brain_ssim_outside"])
        assert row["brain_psnr_difference"] == pytest.approx(
            row["brain_psnr_inside"] - row["brain_psnr_outside"]
        )
        assert 0 <= row["lesion_fraction"] < row["brain_fraction"]
    for row in spine_rows:  # no attached mask
        assert math.isnan(row["brain_fraction"]) and math.isnan(row["brain_ssim_inside"])


def test_regions_smaller_than_min_pixels_are_left_out(prepared: Path) -> None:
    small = parse_region("lesion=zscore:1", min_pixels=10_000)  # more than a 48x48 slice
    rows = run_evaluation([_interp("bicubic")], _settings(prepared, regions=(small,)))
    brain = rows_by(rows, dataset="brain-mri")
    assert all(0 < r["lesion_fraction"] < 1 for r in brain)  # the fraction is still given
    assert all(math.isnan(r["lesion_psnr_inside"]) for r in brain)
    assert all("fewer than min_pixels=10000" in r["notes"] for r in brain)


def test_threshold_region_on_every_dataset(prepared: Path) -> None:
    settings = _settings(prepared, regions=(parse_region("bright=threshold:30,"),))
    rows = run_evaluation([_interp("bilinear")], settings)
    assert all(0 < r["bright_fraction"] < 1 for r in rows)
    assert all(np.isfinite(r["bright_psnr_inside"]) for r in rows)


def test_resume_keeps_rows_and_computes_only_the_rest(prepared: Path, tmp_path: Path) -> None:
    settings = _settings(prepared, splits=("val", "test"))
    methods = [_interp("bicubic"), _interp("lanczos")]
    out = tmp_path / "results.csv"

    class Stop(Exception):
        pass

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(methods, settings, out=out, progress=stop_after_five)
    first = read_results(out)
    assert len(first) == 5
    totals = []
    rows = run_evaluation(methods, settings, out=out, progress=lambda d, t: totals.append(t))
    assert len(rows) == 2 * 14 and set(totals) == {2 * 14 - 5}
    again = read_results(out)
    assert _same(again[:5], first)  # the rows of the interrupted run are kept as they were
    keys = {(r["method"], r["split"], r["volume_id"], r["slice_index"]) for r in again}
    assert len(keys) == len(again) == 28
    calls = []
    run_evaluation(methods, settings, out=out, progress=lambda d, t: calls.append(d))
    assert calls == []  # nothing left to do
    with pytest.raises(ConfigError, match="other settings"):
        run_evaluation(methods, _settings(prepared, splits=("val", "test"), border=2), out=out)


def test_same_lr_for_every_method_and_every_run(prepared: Path) -> None:
    noisy = build_degradation(
        [{"name": "bicubic", "scale": 4}, {"name": "gaussian_noise", "sigma": 0.02}]
    )
    settings = _settings(prepared, degradation=noisy, regions=())
    a = Evaluator(settings).sample(Evaluator(settings).indices[0])
    b = Evaluator(settings).sample(Evaluator(settings).indices[0])
    assert np.array_equal(a.lr.numpy(), b.lr.numpy())
    other = Evaluator(_settings(prepared, degradation=noisy, regions=(), seed=1))
    assert not np.array_equal(other.sample(other.indices[0]).lr.numpy(), a.lr.numpy())


def test_2_5d_method_gets_its_neighbours(prepared: Path) -> None:
    settings = _settings(prepared, regions=(), metrics=("psnr",))
    net = method_from_module(TinyNet(in_channels=3), name="tiny-2.5d")
    rows = run_evaluation([net, _interp("bicubic")], settings)
    assert len(rows) == 14 and all(np.isfinite(r["psnr"]) for r in rows)


def test_select_rows_every_nth_and_cap() -> None:
    class R:
        def __init__(self, volume: str, index: int, split: str = "val", dataset: str = "d"):
            self.volume_id, self.slice_index, self.split, self.dataset = (
                volume,
                index,
                split,
                dataset,
            )

    rows = (
        [R("a", i) for i in range(10)] + [R("b", 0)] + [R("c", i, split="test") for i in range(3)]
    )
    assert select_rows(rows, splits=["val"], every=4) == [2, 6, 10]  # b keeps its only slice
    assert select_rows(rows, splits=["val"], every=1, max_slices_per_volume=3) == [0, 4, 9, 10]
    assert select_rows(rows, splits=["test"], every=1) == [11, 12, 13]
    assert select_rows(rows, splits=["val"], datasets=["x"]) == []


def test_bad_settings_and_methods(prepared: Path) -> None:
    with pytest.raises(ConfigError, match="unknown split"):
        _settings(prepared, splits=("validation",))
    with pytest.raises(ConfigError, match="unknown metric"):
        _settings(prepared, metrics=("psnr", "sharpness"))
    with pytest.raises(ConfigError, match="cannot be computed inside a region"):
        _settings(prepared, region_metrics=("lpips",))
    with pytest.raises(ConfigError, match="no dataset"):
        Evaluator(_settings(prepared, datasets=("chest-ct",)))
    with pytest.raises(ConfigError, match="is x2 but the degradation is x4"):
        run_evaluation([_interp("bicubic", scale=2)], _settings(prepared))
    with pytest.raises(ConfigError, match="unique"):
        run_evaluation([_interp("bicubic"), _interp("bicubic")], _settings(prepared))
