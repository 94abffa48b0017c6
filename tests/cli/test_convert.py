from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medsr.cli import main
from medsr.io import read


def test_dicom_series_to_nifti_keeps_geometry(shared_data, tmp_path):
    import shutil

    folder = tmp_path / "ct"
    folder.mkdir()
    for f in sorted((shared_data / "chest-ct" / "A0001").iterdir())[:4]:
        shutil.copy(f, folder / f.name)
    assert main(["convert", str(folder), str(tmp_path / "ct.nii.gz")]) == 0
    source, converted = read(folder), read(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(converted.affine(), source.affine(), atol=1e-4)
    np.testing.assert_array_equal(converted.array, source.array)
    assert nib.load(tmp_path / "ct.nii.gz").header.get_xyzt_units()[0] == "mm"


def test_png_to_dicom_to_png(dicom_file, tmp_path):
    assert main(["convert", str(dicom_file("MR_small.dcm")), str(tmp_path / "a.png")]) == 0
    assert main(["convert", str(tmp_path / "a.png"), str(tmp_path / "b.dcm")]) == 0
    assert main(["convert", str(tmp_path / "b.dcm"), str(tmp_path / "c.png")]) == 0
    np.testing.assert_array_equal(read(tmp_path / "a.png").array, read(tmp_path / "c.png").array)


def test_convert_refuses_to_overwrite(dicom_file, tmp_path, capsys):
    out = tmp_path / "a.npy"
    assert main(["convert", str(dicom_file("MR_small.dcm")), str(out)]) == 0
    assert main(["convert", str(dicom_file("MR_small.dcm")), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["convert", "--overwrite", str(dicom_file("MR_small.dcm")), str(out)]) == 0


@pytest.mark.parametrize("suffix", [".nii", ".tif", ".npz", ".dcm"])
def test_convert_round_trips_values(dicom_file, tmp_path, suffix):
    source = read(dicom_file("CT_small.dcm"))
    assert main(["convert", str(dicom_file("CT_small.dcm")), str(tmp_path / f"x{suffix}")]) == 0
    back = read(tmp_path / f"x{suffix}")
    if suffix == ".tif":  # stored values (HU - intercept) in 16 bits
        np.testing.assert_array_equal(back.array - 1024, source.array)
    else:
        np.testing.assert_array_equal(back.array, source.array)


@pytest.mark.parametrize("suffix", [".png", ".dcm"])
def test_an_unwritable_folder_is_named_with_its_cause(
    dicom_file, tmp_path, capsys, monkeypatch, suffix
):
    import tempfile

    def refuse(*args, **kwargs):  # what a read-only folder answers
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = tmp_path / "out" / f"x{suffix}"
    assert main(["convert", str(dicom_file("CT_small.dcm")), str(target)]) == 2
    err = capsys.readouterr().err
    assert str(target) in err and "Permission denied" in err and "bug" not in err
