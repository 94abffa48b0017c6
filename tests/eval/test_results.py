from __future__ import annotations

import math
from pathlib import Path

import pytest

from medsr.errors import ConfigError
from medsr.eval.results import ResultsFile, read_results

COLUMNS = ["method", "split", "volume_id", "slice_index", "psnr", "notes"]


def _row(method: str, index: int, psnr: float = 30.0) -> dict:
    return {
        "method": method,
        "split": "val",
        "volume_id": "d/v",
        "slice_index": index,
        "psnr": psnr,
        "notes": "",
    }


def _open(path: Path, methods=None, settings=None, resume=True) -> ResultsFile:
    return ResultsFile(
        path,
        columns=COLUMNS,
        settings=settings or {"metrics": ["psnr"]},
        methods=methods or {"a": "bicubic"},
        resume=resume,
    )


def test_rows_are_kept_and_reported_done_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with _open(path) as f:
        f.write(_row("a", 0, 31.5))
        f.write(_row("a", 1, math.inf))
    with _open(path, methods={"a": "bicubic", "b": "lanczos"}) as f:
        assert f.done == {("a", "val", "d/v", 0), ("a", "val", "d/v", 1)}
        f.write(_row("b", 0, math.nan))
    rows = read_results(path)
    assert [r["method"] for r in rows] == ["a", "a", "b"]
    assert rows[0]["psnr"] == 31.5 and rows[1]["psnr"] == math.inf and math.isnan(rows[2]["psnr"])
    assert rows[0]["slice_index"] == 0


def test_a_row_cut_off_by_an_interruption_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    with _open(path) as f:
        f.write(_row("a", 0))
    with path.open("a") as f:
        f.write("a,val,d/v,1,29.")  # killed mid-row: no newline
    with _open(path) as f:
        assert f.done == {("a", "val", "d/v", 0)}
        f.write(_row("a", 1, 29.5))
    assert [r["psnr"] for r in read_results(path)] == [30.0, 29.5]


def test_other_settings_or_a_changed_method_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    _open(path).close()
    with pytest.raises(ConfigError, match=r"other settings \(changed: metrics\)"):
        _open(path, settings={"metrics": ["ssim"]})
    with pytest.raises(ConfigError, match=r"method 'a' was 'bicubic' and is now 'x\.pth'"):
        _open(path, methods={"a": "x.pth"})
    fresh = _open(path, settings={"metrics": ["ssim"]}, resume=False)
    fresh.close()
    assert read_results(path) == []


def test_other_columns_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    _open(path).close()
    (tmp_path / "r.csv.json").unlink()  # no settings record: the header still guards
    with pytest.raises(ConfigError, match="other columns"):
        ResultsFile(
            path,
            columns=[*COLUMNS, "ssim"],
            settings={"metrics": ["psnr"]},
            methods={"a": "bicubic"},
        )
