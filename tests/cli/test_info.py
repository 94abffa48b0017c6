from __future__ import annotations

import json

import pydicom
import pytest

from medsr.cli import main
from medsr.io import read


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


FAKE_NAME = "DoeJane"


@pytest.fixture
def two_series(dicom_file, tmp_path):
    """CT_small and MR_small in one folder, each with a name in its SeriesDescription."""
    folder = tmp_path / "two"
    folder.mkdir()
    uids = []
    for name, out in (("CT_small.dcm", "a.dcm"), ("MR_small.dcm", "b.dcm")):
        ds = pydicom.dcmread(dicom_file(name))
        ds.SeriesDescription = f"{ds.Modality} '{FAKE_NAME} T2'"
        ds.save_as(folder / out)
        uids += [str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)]
    return folder, uids


def assert_no_identifiers(text: str, uids: list[str]) -> None:
    assert FAKE_NAME not in text
    for uid in uids:
        assert uid not in text


def test_a_folder_of_two_series_is_listed_by_number_not_by_uid_or_description(
    two_series, tmp_path, capsys
):
    folder, uids = two_series
    assert main(["info", str(folder)]) == 0
    captured = capsys.readouterr()
    assert_no_identifiers(captured.out + captured.err, uids)
    lines = captured.out.splitlines()
    assert "--series N" in lines[0]
    assert lines[1].split() == ["N", "number", "modality", "size", "files"]
    assert lines[2].split() == ["1", "1", "CT", "128", "x", "128", "1"]
    assert lines[3].split() == ["2", "1", "MR", "64", "x", "64", "1"]

    assert main(["info", "--json", str(folder)]) == 0
    captured = capsys.readouterr()
    assert_no_identifiers(captured.out + captured.err, uids)
    listed = json.loads(captured.out)["series"]
    assert [(s["index"], s["modality"], s["files"]) for s in listed] == [(1, "CT", 1), (2, "MR", 1)]

    assert main(["info", "--series", "2", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "MR" in captured.out and "64 x 64" in captured.out
    assert_no_identifiers(captured.out + captured.err, uids)


def test_convert_and_errors_name_series_by_index_only(two_series, tmp_path, capsys):
    folder, uids = two_series
    assert main(["convert", str(folder), str(tmp_path / "x.nii.gz")]) == 2
    captured = capsys.readouterr()
    assert "#1: number 1, CT, 128 x 128, 1 file" in captured.err and "--series N" in captured.err
    assert_no_identifiers(captured.out + captured.err, uids)

    assert main(["convert", str(folder), str(tmp_path / "x.nii.gz"), "--series", "1"]) == 0
    captured = capsys.readouterr()
    assert_no_identifiers(captured.out + captured.err, uids)
    assert read(tmp_path / "x.nii.gz").array.shape == (128, 128)

    for argv in (["--series", "3"], ["--series-uid", "1.2.3.4"]):
        assert main(["convert", str(folder), str(tmp_path / "y.nii.gz"), *argv]) == 2
        captured = capsys.readouterr()
        assert "#2: number 1, MR" in captured.err
        assert_no_identifiers(captured.out + captured.err, uids)


def test_info_labels_axes_units_and_the_nibabel_order(capsys):
    from medsr import samples

    assert main(["info", str(samples.path("chest-ct"))]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert out["shape"] == "3 x 512 x 512 (axes Z, Y, X: slice, row, column)"
    assert out["spacing"] == "5 x 0.8418 x 0.8418 mm (Z, Y, X)"  # rounded, with its unit
    assert out["orientation"].startswith("SPL: Z to superior, Y to posterior, X to left")
    assert out["nibabel"] == "the reverse order: shape 512 x 512 x 3 (X, Y, Z), aff2axcodes LPS"
    assert out["values"] == "-1024 to 2484 (HU)"
    assert out["origin"] == "(-228.04, -93.06, -249.00) mm, centre of the first pixel, LPS"


def test_info_nibabel_line_matches_nibabel(tmp_path, capsys):
    import nibabel as nib

    from medsr import samples

    path = tmp_path / "ct.nii.gz"
    assert main(["convert", str(samples.path("chest-ct")), str(path)]) == 0
    capsys.readouterr()
    assert main(["info", "--json", str(path)]) == 0
    facts = json.loads(capsys.readouterr().out)
    loaded = nib.load(path)
    assert facts["axes"] == ["Z", "Y", "X"] and facts["spacing_unit"] == "mm"
    assert facts["nibabel_axcodes"] == list(nib.aff2axcodes(loaded.affine))
    assert facts["shape"][::-1] == list(loaded.shape)


def test_pair_names_the_series_of_a_mixed_folder_by_index_only(two_series, capsys):
    folder, uids = two_series
    assert main(["pair", str(folder), str(folder)]) == 2
    captured = capsys.readouterr()
    assert "#2: number 1, MR, 64 x 64, 1 file" in captured.err
    assert_no_identifiers(captured.out + captured.err, uids)
