"""The web benchmark runs through the real app and writes its section."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_web.py"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_web_writes_a_section(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_web", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = tmp_path / "RESULTS.md"
    argv = ["--repeats", "1", "--inputs", "CT_small", "--append", str(results)]
    assert bench.main(argv) == 0
    text = results.read_text()
    assert text.startswith("\n## Web app (issue 8)") and "load average" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| CT_small")]
    assert "128x128 -> 256x256" in row
    wall, job = (float(v) for v in row.split("|")[4:6])
    assert 0 < job <= wall
