"""No command prints patient identifiers: run the CLI on files with known identifiers
(successful and failing runs, verbose logging) and search every byte of output."""

from __future__ import annotations

import subprocess
import sys

import pydicom
import pytest

from medsr.cli import main
from medsr.io import read

SECRETS = {
    "PatientName": "Zyxwv^Privacyprobe",
    "PatientID": "PID-9137-SECRET",
    "PatientBirthDate": "19230517",
    "AccessionNumber": "ACC77331SEC",
}


@pytest.fixture
def identified(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    for keyword, value in SECRETS.items():
        setattr(ds, keyword, value)
    good = tmp_path / "good.dcm"
    ds.save_as(good)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(good.read_bytes()[:-3000])  # truncated pixel data, header intact
    return good, bad


def assert_clean(text: str) -> None:
    for value in SECRETS.values():
        assert value not in text
        assert value.split("^")[0] not in text


def test_info_and_convert_print_no_identifiers(identified, tmp_path, capsys, caplog):
    good, bad = identified
    caplog.set_level("DEBUG")
    codes = [
        main(["-v", "-v", "info", str(good)]),
        main(["-v", "-v", "info", "--json", str(bad)]),
        main(["-v", "-v", "convert", str(good), str(tmp_path / "out.nii.gz")]),
        main(["-v", "-v", "convert", str(bad), str(tmp_path / "bad.nii.gz")]),
    ]
    assert codes == [0, 2, 0, 2]
    captured = capsys.readouterr()
    assert_clean(captured.out + captured.err + caplog.text)


def test_subprocess_output_is_clean(identified, tmp_path):
    good, bad = identified
    for args in (["info", str(bad)], ["convert", str(good), str(tmp_path / "x.dcm")]):
        out = subprocess.run(
            [sys.executable, "-m", "medsr", "-v", "-v", *args], capture_output=True, text=True
        )
        assert_clean(out.stdout + out.stderr)


def test_convert_deidentify_removes_identifiers(identified, tmp_path):
    good, _ = identified
    assert main(["convert", "--deidentify", str(good), str(tmp_path / "anon.dcm")]) == 0
    data = (tmp_path / "anon.dcm").read_bytes()
    for value in SECRETS.values():
        assert value.encode() not in data
    ds = pydicom.dcmread(tmp_path / "anon.dcm")
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.StudyInstanceUID != pydicom.dcmread(good).StudyInstanceUID
    assert (read(tmp_path / "anon.dcm").array == read(good).array).all()
