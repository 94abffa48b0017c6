"""``medsr study create``, ``medsr study report`` and ``medsr study readers``."""

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


# -- medsr study create -------------------------------------------------------------------------
def test_study_create_from_cases_and_methods(dicom_file, tmp_path, capsys):
    import re
    import shutil

    from PIL import Image as PILImage

    from medsr.io import read

    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), cases / "CT small #1.dcm")
    PILImage.fromarray((np.arange(40 * 30) % 251).reshape(40, 30).astype(np.uint8)).save(
        cases / "xray.png"
    )
    folder = tmp_path / "study"
    args = ["study", "create", str(folder), "--cases", str(cases), "--readers", "3"]
    methods = ["--methods", "hr", "lr", "bicubic", "smooth=bilinear", "--seed", "5"]
    assert main(args + methods) == 0
    out = capsys.readouterr().out
    tokens = re.findall(r"^  reader-\d: (\S+)$", out, re.M)
    assert len(tokens) == 3
    with Study.open(folder) as study:
        assert study.info.cases == ("CT-small-1", "xray")
        assert study.info.methods == ("bicubic", "hr", "lr", "smooth")
        assert study.info.n_items == 8 and study.info.seed == 5
        assert study.authenticate(tokens[1]).label == "reader-2"
        # every method of a case is rendered at the HR size with one window
        sizes = set()
        for item in study.reader_items(study.readers()[0]):
            png = study.image_path(item.images[0])
            with PILImage.open(png) as im:
                sizes.add(im.size)
        assert sizes == {(128, 128), (30, 40)}
        low, high = study.info.windows["CT-small-1"]
        hr = read(cases / "CT small #1.dcm").array
        assert low == pytest.approx(np.percentile(hr, 0.5))
        assert high == pytest.approx(np.percentile(hr, 99.5))


def test_study_create_errors(tmp_path, capsys):
    assert main(["study", "create", str(tmp_path / "s"), "--cases", str(tmp_path / "none"),
                 "--methods", "hr"]) == 2  # fmt: skip
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "cases").mkdir()
    np.save(tmp_path / "cases" / "a.npy", np.zeros((8, 8)))
    code = main(["study", "create", str(tmp_path / "s"), "--cases", str(tmp_path / "cases"),
                 "--methods", "hr", "hr"])  # fmt: skip
    assert code == 2 and "twice" in capsys.readouterr().err
    code = main(["study", "create", str(tmp_path / "s"), "--cases", str(tmp_path / "cases"),
                 "--methods", "hr", "edsr", "--scale", "2"])  # fmt: skip
    assert code == 2 and "edsr" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
