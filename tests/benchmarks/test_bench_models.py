"""The model benchmark script runs and writes its section (tiny settings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_models.py"


def test_bench_models_writes_a_section(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_models", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.count_macs("espcn", scale=4, size=16) == 16 * 16 * (
        5 * 5 * 1 * 64 + 3 * 3 * 64 * 32 + 3 * 3 * 32 * 16
    )
    results = tmp_path / "RESULTS.md"
    argv = [
        "--archs",
        "bicubic,espcn",
        "--sizes",
        "8",
        "--runs",
        "1",
        "--macs-size",
        "16",
        "--append",
        str(results),
    ]
    assert bench.main(argv) == 0
    table = capsys.readouterr().out
    assert "| espcn | 24,752 | 37,200 |" in table
    text = results.read_text()
    assert text.startswith("\n## Model zoo (issue 4)") and "load average" in text
    assert "--archs bicubic,espcn" in text and table.strip() in text
