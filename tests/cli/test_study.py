"""``medsr study report`` and ``medsr study readers``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsr.cli import main
from medsr.study import Rating, Study, create_study


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    cases = {f"c{i}": {m: rng.normal(size=(8, 8)) for m in ("hr", "bicubic")} for i in range(3)}
    with create_study(tmp_path / "s", cases=cases, readers=2, seed=1) as study:
        reader = study.readers()[0]
        for item in study.reader_items(reader)[:4]:
            study.submit(reader, item.item_id, Rating(4, 4))
    return tmp_path / "s"


def test_study_report(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["study", "report", str(study_dir), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    for name in ("report.md", "report.html", "mos.png"):
        assert (tmp_path / "rep" / name).is_file()
        assert name in out
    assert "4 of 12" in (tmp_path / "rep" / "report.md").read_text()
    assert main(["study", "report", str(study_dir)]) == 0
    assert (study_dir / "report" / "report.html").is_file()


def test_study_readers(study_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["study", "readers", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "reader-1     4/6" in out and "reader-2     0/6" in out
    assert main(["study", "readers", str(study_dir), "--add", "dr-who"]) == 0
    token = capsys.readouterr().out.split("token (shown only now): ")[1].split()[0]
    with Study.open(study_dir) as study:
        assert study.authenticate(token).label == "dr-who"
    assert main(["study", "readers", str(study_dir), "--reissue", "reader-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with Study.open(study_dir) as study:
        assert study.authenticate(lines[1]).label == "reader-1"


def test_study_errors_are_reported_without_traceback(
    tmp_path: Path, study_dir: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["study", "report", str(tmp_path / "nothing")]) == 2
    assert "not a reader study" in capsys.readouterr().err
    assert main(["study", "readers", str(study_dir), "--reissue", "zoe"]) == 2
    assert "no reader labelled 'zoe'" in capsys.readouterr().err
