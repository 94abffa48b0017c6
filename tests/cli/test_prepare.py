from __future__ import annotations

import json
from pathlib import Path

from medsr.cli import main
from medsr.data.manifest import read_manifest
from tests.data.conftest import make_brats_like, make_npz_folder


def test_prepare_prints_counts_and_writes_everything(tmp_path: Path, capsys) -> None:
    brats = make_brats_like(tmp_path / "brain-mri", patients=4)
    spine = make_npz_folder(tmp_path / "spine", ["VB1_01", "VB1_02", "VB1_03"])
    out = tmp_path / "out"
    code = main(
        [
            "prepare",
            str(brats),
            str(spine),
            "--out",
            str(out),
            "--modality",
            "spine=MR",
            "--pad-multiple",
            "16",
            "--split",
            "0.5",
            "0.25",
            "0.25",
            "--seed",
            "4",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "brain-mri" in text and "spine" in text and "blank_removed" in text
    assert "wrote" in text and "manifest.csv" in text
    report = json.loads((out / "report.json").read_text())
    assert report["options"]["pad_multiple"] == 16 and report["options"]["seed"] == 4
    assert "salt" not in report["options"]
    rows = read_manifest(out)
    assert {r.modality for r in rows if r.dataset == "spine"} == {"MR"}
    assert all(r.height % 16 == 0 and r.width % 16 == 0 for r in rows)
    assert len(list((out / "store").glob("*.npy"))) == 8 + 8 + 3  # volumes, masks
    for line in text.splitlines():
        if line.startswith("total"):
            assert line.split()[1:] == [
                str(report["totals"][k])
                for k in (
                    "volumes",
                    "slices",
                    "blank_removed",
                    "duplicate_removed",
                    "kept",
                    "subjects",
                )
            ]


def test_per_dataset_slice_axis_and_salt(tmp_path: Path, capsys, monkeypatch) -> None:
    spine = make_npz_folder(tmp_path / "spine", ["A"], shape=(20, 24, 9))
    out = tmp_path / "out"
    assert (
        main(["prepare", str(spine), "--out", str(out), "--slice-axis", "spine=1", "--keep-blank"])
        == 0
    )
    row = read_manifest(out)[0]
    assert (row.num_slices, row.height, row.width) == (24, 20, 9) and row.slice_axis == 1


def test_bad_options_exit_2_with_a_message(tmp_path: Path, capsys) -> None:
    spine = make_npz_folder(tmp_path / "spine", ["A"])
    cases = [
        (["--slice-axis", "x"], "slice-axis"),
        (["--slice-axis", "5"], "slice axis 5"),
        (["--split", "0.5", "0.5", "0.5"], "sum to 1"),
        (["--ct-window", "soft"], "ct-window"),
        (["--resize", "1", "2", "3"], "--resize"),
        (["--subject-regex", "nomatch"], "does not match"),
    ]
    for extra, message in cases:
        code = main(["prepare", str(spine), "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
