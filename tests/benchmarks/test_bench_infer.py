"""The inference benchmark runs, writes its section, and confirms the default model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from medsr.infer.defaults import FALLBACK_MODEL

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_infer.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_infer", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_the_default_model_is_the_best_interpolation(tmp_path, capsys):
    bench = _bench()
    results = tmp_path / "RESULTS.md"
    # the brain slice only, to stay fast; the recorded run uses all three samples
    argv = ["--parts", "quality", "--samples", "brain-mri", "--append", str(results)]
    assert bench.main(argv) == 0
    out = capsys.readouterr()
    assert f"Best mean PSNR: **{FALLBACK_MODEL}**" in out.out
    text = results.read_text()
    assert text.startswith("\n## Inference (issue 7)") and "load average" in text
    assert bench.main(["--parts", "none", "--append", str(results)]) == 0  # a second block
    assert results.read_text().count("## Inference (issue 7)") == 1  # under one heading


def test_speed_part_compares_against_eager(capsys):
    bench = _bench()
    tiny = {"num_features": 8, "num_blocks": 1, "growth": 4}
    lines = bench.part_speed([16], "bicubic", 1, False, rrdbnet=tiny)
    rows = [line for line in lines if "| 16x16 |" in line]
    assert len(rows) == 8  # 4 variants x 2 models (rrdbnet, the default)
    assert all(float(row.split("|")[6]) < 1e-4 for row in rows)  # identical outputs
