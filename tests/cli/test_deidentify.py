"""``medsr deidentify``: the tree is mirrored, and no identifier ever reaches the output."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medsr.cli import main
from medsr.io.deidentify import KEY_ENV_VAR

NAME = "Zyxwvut^Qorbanleak"
PATIENT_ID = "PIDLEAK847213"
BIRTH_DATE = "19230417"
ACCESSION = "ACCLEAK553"
SECRETS = (NAME, "Zyxwvut", "Qorbanleak", PATIENT_ID, BIRTH_DATE, ACCESSION)


def _with_identifiers(src: Path, dst: Path, *, invalid: bool = False) -> None:
    settings = pydicom_config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    settings.reading_validation_mode = settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        ds = pydicom.dcmread(src)
        ds.PatientName = NAME
        ds.PatientID = PATIENT_ID
        ds.PatientBirthDate = BIRTH_DATE
        ds.AccessionNumber = ACCESSION
        ds.OtherPatientIDs = PATIENT_ID
        ds.add_new(0x00291010, "LO", f"{NAME} {PATIENT_ID}")  # private
        item = Dataset()
        item.PatientName = NAME
        item.PatientID = PATIENT_ID
        ds.ReferencedPatientSequence = Sequence([item])
        if invalid:
            # values that break their VR's rules make pydicom warn, quoting the value
            ds.AccessionNumber = f"{ACCESSION}-{ACCESSION}-{ACCESSION}"
            ds.StudyDate = f"{BIRTH_DATE}x"
            ds.PatientAge = PATIENT_ID
        dst.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(dst, enforce_file_format=True)
    finally:
        settings.reading_validation_mode, settings.writing_validation_mode = saved


@pytest.fixture
def tree(tmp_path, dicom_file) -> Path:
    root = tmp_path / "in"
    ct, mr = dicom_file("CT_small.dcm"), dicom_file("MR_small.dcm")
    for index in range(3):
        _with_identifiers(ct, root / "series" / f"slice{index}.dcm")
    _with_identifiers(mr, root / "mr" / "invalid.dcm", invalid=True)
    (root / "notes.txt").write_text(f"scan of {NAME}, id {PATIENT_ID}\n")
    data = (root / "series" / "slice0.dcm").read_bytes()
    assert NAME.encode() in data[: len(data) // 3]
    (root / "broken").mkdir()
    (root / "broken" / "truncated.dcm").write_bytes(data[: len(data) // 3])
    (root / "broken" / "garbage.dcm").write_bytes(
        b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI" + NAME.encode() * 4
    )
    return root


def _assert_no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked"


def _assert_no_secrets_in_files(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{secret!r} leaked into {path.name}"


def test_cli_in_process_leaks_nothing(tree, tmp_path, capsys, caplog):
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(["-v", "-v", "deidentify", str(tree), str(out)])
    captured = capsys.readouterr()
    everything = "\n".join(
        [captured.out, captured.err, caplog.text, *(str(w.message) for w in caught)]
    )
    _assert_no_secrets(everything)
    assert code == 1  # two broken files
    assert "summary: 4 files de-identified" in captured.out
    assert "1 skipped, 2 failed" in captured.out
    assert "skipped (not DICOM or a DICOMDIR): notes.txt" in captured.out
    assert "failed: broken/truncated.dcm" in captured.out
    assert "failed: broken/garbage.dcm" in captured.out
    assert str(tree) not in everything  # paths are relative to the input root
    assert "[1/7] broken/garbage.dcm" in caplog.text  # progress at -v
    done = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert done == ["mr/invalid.dcm", *(f"series/slice{i}.dcm" for i in range(3))]
    _assert_no_secrets_in_files(out)
    series = [pydicom.dcmread(out / "series" / f"slice{i}.dcm") for i in range(3)]
    assert len({str(ds.StudyInstanceUID) for ds in series}) == 1
    assert all(ds.PatientIdentityRemoved == "YES" for ds in series)


def test_cli_subprocess_leaks_nothing(tree, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, KEY_ENV_VAR: "a secret key", "PYTHONWARNINGS": "always"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medsr",
            "-v",
            "-v",
            "deidentify",
            str(tree),
            str(out),
            "--shift-dates=-7",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    _assert_no_secrets(result.stdout + result.stderr)
    assert "a secret key" not in result.stdout + result.stderr
    assert result.returncode == 1
    assert "summary: 4 files de-identified" in result.stdout
    _assert_no_secrets_in_files(out)
    ds = pydicom.dcmread(out / "series" / "slice0.dcm")
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]


def test_cli_single_file_and_key_from_environment(dicom_file, tmp_path, capsys, monkeypatch):
    src = tmp_path / "one.dcm"
    _with_identifiers(dicom_file("CT_small.dcm"), src)
    monkeypatch.setenv(KEY_ENV_VAR, "k")
    assert main(["deidentify", str(src), str(tmp_path / "a.dcm")]) == 0
    (tmp_path / "dir").mkdir()
    assert main(["deidentify", str(src), str(tmp_path / "dir")]) == 0  # into a folder
    assert main(["deidentify", str(src), str(tmp_path / "c.dcm"), "--key", "other"]) == 0
    a, b, c = (
        pydicom.dcmread(p)
        for p in (tmp_path / "a.dcm", tmp_path / "dir" / "one.dcm", tmp_path / "c.dcm")
    )
    assert a.SOPInstanceUID == b.SOPInstanceUID != c.SOPInstanceUID
    captured = capsys.readouterr()
    assert "summary: 1 file de-identified" in captured.out
    _assert_no_secrets(captured.out + captured.err)


def test_cli_keeps_private_and_overlays_when_asked(dicom_file, tmp_path):
    src = tmp_path / "one.dcm"
    _with_identifiers(dicom_file("CT_small.dcm"), src)
    assert main(["deidentify", str(src), str(tmp_path / "o.dcm"), "--keep-private"]) == 0
    assert 0x00291010 in pydicom.dcmread(tmp_path / "o.dcm")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shift-dates", "0"], "shift_days"),
        (["--key", ""], "key is empty"),
    ],
)
def test_cli_option_errors(dicom_file, tmp_path, capsys, args, message):
    code = main(["deidentify", str(dicom_file("CT_small.dcm")), str(tmp_path / "o.dcm"), *args])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err


def test_cli_refuses_bad_paths(tree, tmp_path, capsys):
    assert main(["deidentify", str(tree), str(tree / "out")]) == 2
    assert main(["deidentify", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert main(["deidentify", str(tree / "notes.txt"), str(tmp_path / "n.dcm")]) == 1
    captured = capsys.readouterr()
    assert "notes.txt: not a DICOM file" in captured.out
    _assert_no_secrets(captured.out + captured.err)
