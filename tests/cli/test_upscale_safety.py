"""``medsr upscale --save-maps`` and ``--consistency`` (issue 20)."""

from __future__ import annotations

import argparse
import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

from medsr import samples
from medsr.cli import main
from medsr.cli.safety import add_safety_arguments
from medsr.infer.safety import DEFAULT_CONSISTENCY
from medsr.io import Image, read, write


def test_dicom_maps_are_derived_series_of_their_own(dicom_file, tmp_path, capsys):
    src = tmp_path / "in" / "ct.dcm"
    src.parent.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), src)
    out = tmp_path / "out"
    args = ["upscale", str(src), "-o", str(out), "--save-maps", "--consistency"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "consistency: back-projected in" in stdout
    assert "consistency |D(SR)-LR|: p99" in stdout and " HU" in stdout
    sr = pydicom.dcmread(out / "ct.dcm")
    source = pydicom.dcmread(src)
    series = {sr.SeriesInstanceUID}
    for name, label in (
        ("ct-consistency.dcm", "consistency map |degrade(SR)-LR| HU"),
        ("ct-sr-minus-bicubic.dcm", "SR - bicubic HU"),
    ):
        ds = pydicom.dcmread(out / name)
        assert label in ds.SeriesDescription
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID not in series | {source.SeriesInstanceUID}
        series.add(ds.SeriesInstanceUID)
        assert (ds.Rows, ds.Columns) == (sr.Rows, sr.Columns)
        assert list(ds.PixelSpacing) == list(sr.PixelSpacing)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    error = read(out / "ct-consistency.dcm").array
    assert error.min() >= 0 and error.shape == (256, 256)
    summary = json.loads((out / "ct-consistency.json").read_text())
    assert summary["units"] == "HU"
    assert 0 <= summary["worst"]["row"] < 128 and 0 <= summary["worst"]["column"] < 128
    # the map on the output grid holds the input-grid errors (rounded to whole HU)
    assert float(error.max()) == pytest.approx(summary["max"], abs=0.51)


def test_nifti_maps_keep_the_output_geometry(tmp_path):
    volume = np.random.default_rng(0).normal(100.0, 20.0, (3, 24, 20)).astype(np.float32)
    path = tmp_path / "in" / "mr.nii.gz"
    path.parent.mkdir()
    write(Image(array=volume, spacing=(3.0, 1.0, 1.5), modality="MR"), path)
    out = tmp_path / "out"
    assert main(["upscale", str(path), "-o", str(out), "--model", "bicubic", "--save-maps"]) == 0
    sr = nib.load(out / "mr.nii.gz")
    for name in ("mr-consistency.nii.gz", "mr-sr-minus-bicubic.nii.gz"):
        m = nib.load(out / name)
        assert m.shape == sr.shape
        np.testing.assert_allclose(m.affine, sr.affine)
    # bicubic output: SR - bicubic is zero, the consistency error is what bicubic leaves
    np.testing.assert_allclose(read(out / "mr-sr-minus-bicubic.nii.gz").array, 0.0, atol=1e-3)
    assert read(out / "mr-consistency.nii.gz").array.max() > 1.0
    assert (out / "mr-consistency.json").is_file()


def test_maps_are_not_written_over_other_files(tmp_path, capsys):
    path = tmp_path / "in" / "x.npy"
    path.parent.mkdir()
    np.save(path, np.random.default_rng(1).random((16, 16)).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    (out / "x-consistency.npy").write_bytes(b"someone else's file")
    args = ["upscale", str(path), "-o", str(out), "--model", "bicubic", "--save-maps"]
    assert main(args) == 1
    assert "x-consistency.npy" in capsys.readouterr().err
    assert (out / "x-consistency.npy").read_bytes() == b"someone else's file"
    assert not (out / "x.npy").exists()  # refused before anything was written


def test_save_maps_is_refused_in_batch_mode(tmp_path, capsys):
    tree = tmp_path / "tree" / "a"
    tree.mkdir(parents=True)
    np.save(tree / "x.npy", np.zeros((16, 16), dtype=np.float32))
    args = ["upscale", str(tmp_path / "tree"), "-o", str(tmp_path / "out"), "--save-maps"]
    assert main(args) == 2
    assert "--save-maps" in capsys.readouterr().err


def test_the_cli_default_is_the_library_default():
    parser = argparse.ArgumentParser()
    add_safety_arguments(parser)
    assert parser.parse_args([]).consistency is DEFAULT_CONSISTENCY
    assert parser.parse_args(["--consistency"]).consistency is True
    assert parser.parse_args(["--no-consistency"]).consistency is False


def test_sample_ct_with_consistency_is_consistent(tmp_path, capsys):
    """The bundled CT at x2: back-projection reaches 80 dB before the output is stored."""
    folder = tmp_path / "in" / "ct"
    shutil.copytree(samples.path("chest-ct"), folder)
    image = read(folder)
    crop = image.replace(array=np.ascontiguousarray(image.array[:1, 200:264, 200:264]))
    path = tmp_path / "in" / "crop.npy"
    write(crop, path)
    assert main(["upscale", str(path), "-o", str(tmp_path / "out"), "--consistency"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("ok "))
    fidelity = float(line.rsplit("fidelity ", 1)[1].split(" dB")[0])
    assert fidelity >= 79.0


def test_an_unseen_modality_is_flagged_in_the_summary_and_the_series(dicom_file, tmp_path, capsys):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.Modality = "PT"
    src = tmp_path / "in" / "pet.dcm"
    src.parent.mkdir()
    ds.save_as(src)
    out = tmp_path / "out"
    assert main(["upscale", str(src), "-o", str(out), "--save-maps"]) == 0
    stdout = capsys.readouterr().out
    assert "OOD: modality PT (outside the model's training data)" in stdout
    assert "warning: modality PT was never seen in training" in stdout
    sr = pydicom.dcmread(out / "pet.dcm")
    assert sr.SeriesDescription.startswith("[SR x2, not for primary diagnosis; OOD: modality PT]")
    assert "out of distribution: modality PT" in sr.DerivationDescription
    assert "OOD: modality PT" in pydicom.dcmread(out / "pet-consistency.dcm").SeriesDescription
    summary = json.loads((out / "pet-consistency.json").read_text())
    assert summary["out_of_distribution"][0].startswith("modality PT was never seen")


def test_an_in_distribution_input_carries_no_flag(dicom_file, tmp_path, capsys):
    src = tmp_path / "in" / "ct.dcm"
    src.parent.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out")]) == 0
    assert "OOD" not in capsys.readouterr().out
    assert "OOD" not in pydicom.dcmread(tmp_path / "out" / "ct.dcm").SeriesDescription
