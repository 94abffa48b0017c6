from __future__ import annotations

import json

import pydicom

from medsr.cli import main


def test_info_json_keys_and_values(dicom_file, capsys):
    path = dicom_file("CT_small.dcm")
    assert main(["info", "--json", str(path)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {"shape", "spacing", "modality", "dtype", "min", "max"} <= set(facts)
    ds = pydicom.dcmread(path)
    assert facts["shape"] == [ds.Rows, ds.Columns]
    assert facts["modality"] == "CT" and facts["dtype"] == "int16"
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert facts["min"] == hu.min() and facts["max"] == hu.max()


def test_info_human_readable_has_no_patient_data(dicom_file, capsys):
    path = dicom_file("MR_small.dcm")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "spacing" in out and "MR" in out
    ds = pydicom.dcmread(path)
    assert str(ds.PatientName) not in out and str(ds.PatientID) not in out


def test_info_error_exit_code(tmp_path, capsys):
    (tmp_path / "x.nii").write_bytes(b"\x01\x02")
    assert main(["info", str(tmp_path / "x.nii")]) == 2
    err = capsys.readouterr().err
    assert "x.nii" in err and "Traceback" not in err
