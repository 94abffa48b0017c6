"""The batch benchmark runs the real command on a tree of real files and writes its section."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_batch.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_batch", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_one_process_on_the_bundled_samples(tmp_path, capsys):
    bench = _bench()
    results = tmp_path / "RESULTS.md"
    argv = ["--tree", "small", "--configs", "1x1", "--repeats", "1", "--model", "nearest"]
    assert bench.main([*argv, "--append", str(results)]) == 0
    assert "1 process, 1 thread, run 1" in capsys.readouterr().out
    text = results.read_text()
    assert text.startswith("\n## Batch inference (issue 12)") and "Load average" in text
    row = next(line for line in text.splitlines() if line.startswith("| 1 process"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[3]) > 0 and float(cells[4]) > 0 and cells[5] == "1.00x"
