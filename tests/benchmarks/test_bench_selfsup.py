"""The self-supervised benchmark's simulation, baselines, metrics and section."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_selfsup.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_selfsup", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_simulation_and_cubic_baseline_share_the_truth_grid():
    bench = _bench()
    z = np.arange(40, dtype=np.float32)
    truth = np.broadcast_to((z * 3.0 + 10.0)[:, None, None], (40, 12, 10)).copy()
    image = bench.thick_image(truth, 5, 4.0)
    assert image.array.shape == (8, 12, 10) and image.spacing == (5.0, 1.0, 1.0)
    # slice j is centred on truth voxel 5j + 2: a linear ramp samples exactly there (inside;
    # the end slices' profiles are cut by the volume's ends)
    expected = 3.0 * (5 * np.arange(8) + 2) + 10
    np.testing.assert_allclose(image.array[1:-1, 0, 0], expected[1:-1], rtol=1e-5)
    out = bench.cubic(image, 5)
    assert out.shape == truth.shape
    # cubic reproduces the ramp where it only reads the exact inner slices (1..6)
    np.testing.assert_allclose(out[12:28], truth[12:28], rtol=1e-4)
    s = bench.scores(truth + 1e-3, truth)
    assert s["ssim"] > 0.99 and s["psnr"] > 40


def test_section_from_the_recorded_results():
    bench = _bench()
    results = SCRIPT.parent / "selfsup" / "results.json"
    if not results.exists():
        pytest.skip("no recorded results")
    text = bench.section(json.loads(results.read_text()))
    assert text.startswith("## Self-supervised through-plane SR (issue 10)")
    assert "| mni | 4 mm | self-supervised |" in text and "limit 15 min" in text


def test_would_stop_follows_the_early_stopping_rule():
    bench = _bench()
    psnrs = [30.0, 31.0, 31.005, 31.0, 30.9]
    history = [{"step": 100 * i, "heldout_psnr": v} for i, v in enumerate(psnrs, 1)]
    assert bench.would_stop(history, 2, 0.01)["step"] == 400
    assert bench.would_stop(history, 3, 0.01)["step"] == 500
    assert bench.would_stop(history, 4, 0.01) is None


def test_budget_section_from_the_recorded_results():
    bench = _bench()
    results = SCRIPT.parent / "selfsup" / "results.json"
    report = json.loads(results.read_text()) if results.exists() else {}
    if "curve" not in report or "step" not in report:
        pytest.skip("no recorded step and curve results")
    text = bench.budget_section(report)
    assert text.startswith(bench.BUDGET_HEADING)
    assert "| 48 | 16 | no | 1 |" in text and "(end: " in text
