from __future__ import annotations

import os
import re
import shutil
import stat

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsr import samples
from medsr.cli import main
from medsr.infer import default_model
from medsr.io import Image, read, write
from tests.test_privacy import SECRETS, assert_clean


@pytest.fixture
def ct_series(tmp_path):
    folder = tmp_path / "in" / "ct"
    shutil.copytree(samples.path("chest-ct"), folder)
    return folder


@pytest.fixture
def small_png(tmp_path):
    """A 96x96 8-bit crop of the bundled chest X-ray."""
    path = tmp_path / "in" / "xray.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    with PILImage.open(samples.path("chest-xray")) as im:
        im.crop((400, 300, 496, 396)).save(path)
    return path


def test_dicom_series_becomes_a_derived_series_in_hu(ct_series, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["upscale", str(ct_series), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"{default_model(2)} x2 (trained)" in stdout
    assert "3x512x512 -> 3x1024x1024" in stdout and "fidelity" in stdout
    source, sr = read(ct_series), read(out / "ct")
    assert sr.array.shape == (3, 1024, 1024)
    assert sr.spacing == pytest.approx((5.0, source.spacing[1] / 2, source.spacing[2] / 2))
    # air stays air: the trained default model leaves at most a few HU of texture there
    # (its window is -1024..3071 HU; interpolation gave exactly -1024)
    np.testing.assert_allclose(sr.array[:, :40, :40], -1024.0, atol=8.0)
    assert abs(float(sr.array.mean()) - float(source.array.mean())) < 3.0
    first_in = pydicom.dcmread(sorted(ct_series.iterdir())[0])
    first_out = pydicom.dcmread(out / "ct" / "IM00001.dcm")
    assert first_out.StudyInstanceUID == first_in.StudyInstanceUID
    assert first_out.SeriesInstanceUID != first_in.SeriesInstanceUID
    assert list(first_out.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert first_out.BitsStored == first_in.BitsStored
    assert f"{default_model(2)} x2" in first_out.DerivationDescription
    assert "not for primary diagnosis" in first_out.SeriesDescription


def test_mean_hu_agrees_with_bicubic(ct_series, tmp_path):
    assert main(["upscale", str(ct_series), "-o", str(tmp_path / "b"), "--model", "bicubic"]) == 0
    assert main(["upscale", str(ct_series), "-o", str(tmp_path / "l"), "--tile", "0"]) == 0
    bicubic, default = read(tmp_path / "b" / "ct"), read(tmp_path / "l" / "ct")
    # the trained default shifts the mean of this CT by ~4 HU (3.8 measured; 0.1 % of its
    # -1024..3071 HU window); interpolation agreed within 1 HU
    assert abs(float(bicubic.array.mean()) - float(default.array.mean())) < 5.0  # HU


def test_nifti_keeps_a_rescaled_affine(tmp_path):
    out = tmp_path / "out"
    mri = samples.path("brain-mri")
    assert main(["upscale", str(mri), "-o", str(out), "--scale", "3", "--model", "bicubic"]) == 0
    (written,) = (p for p in out.iterdir() if not p.name.startswith("."))  # not the list
    assert written.name == "brain-mri-flair.nii.gz"
    before, after = nib.load(mri), nib.load(written)
    assert after.shape[:2] == (720, 720)
    np.testing.assert_allclose(after.affine[:3, :2], before.affine[:3, :2] / 3, atol=1e-6)
    np.testing.assert_allclose(read(written).array.mean(), read(mri).array.mean(), atol=0.02)


def test_png_keeps_its_bit_depth(small_png, tmp_path):
    out = tmp_path / "out"
    assert main(["upscale", str(small_png), "-o", str(out), "--scale", "4"]) == 0
    with PILImage.open(out / "xray.png") as im:
        assert im.mode == "L" and im.size == (384, 384)
        values = np.asarray(im, dtype=np.float64)
    with PILImage.open(small_png) as im:
        original = np.asarray(im, dtype=np.float64)
    assert abs(values.mean() - original.mean()) < 1.0  # not rescaled min..max
    single = tmp_path / "single.png"
    assert main(["upscale", str(small_png), "-o", str(single), "--tile", "40"]) == 0
    assert read(single).array.shape == (192, 192)


def test_a_folder_of_studies_is_mirrored_and_bad_inputs_do_not_stop_the_others(
    ct_series, small_png, tmp_path, capsys
):
    root = tmp_path / "in"  # holds ct/ (a series) and xray.png
    (root / "notes.txt").write_text("not an image")
    broken = root / "study2" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(small_png.read_bytes()[:200])
    shutil.copy(small_png, root / "study2" / "again.png")
    out = tmp_path / "out"
    assert main(["upscale", str(root), "-o", str(out), "--model", "bicubic"]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "broken.png" in captured.err
    assert "skipped" in captured.out and "notes.txt" in captured.out
    assert "3 of 4 inputs upscaled, 1 failed" in captured.out
    assert read(out / "ct").array.shape == (3, 1024, 1024)
    assert read(out / "xray.png").array.shape == (192, 192)
    assert read(out / "study2" / "again.png").array.shape == (192, 192)
    assert not (out / "study2" / "broken.png").exists()


def test_a_folder_with_two_series_gives_two_inputs(ct_series, tmp_path, capsys):
    write(Image(np.zeros((16, 16), np.float32), spacing=(1, 1)), ct_series / "other.dcm")
    out = tmp_path / "out"
    assert main(["upscale", str(ct_series), "-o", str(out), "--model", "nearest"]) == 0
    outputs = sorted(p.name for p in (out / "ct").iterdir())
    assert len(outputs) == 2 and all(name.startswith("series-") for name in outputs)
    shapes = sorted(read(p).array.shape for p in (out / "ct").iterdir())
    assert shapes == [(3, 1024, 1024), (32, 32)]


def test_through_plane_dicom_geometry(ct_series, tmp_path):
    out = tmp_path / "out"
    assert main(["upscale", str(ct_series), "-o", str(out), "--axis", "through-plane"]) == 0
    files = sorted((out / "ct").iterdir())
    assert len(files) == 6
    datasets = [pydicom.dcmread(f) for f in files]
    assert all(float(ds.SliceThickness) == 2.5 for ds in datasets)
    z = [float(ds.ImagePositionPatient[2]) for ds in datasets]
    np.testing.assert_allclose(np.diff(z), 2.5)
    sr, source = read(out / "ct"), read(ct_series)
    assert sr.spacing == pytest.approx((2.5, *source.spacing[1:]))
    assert sr.array.shape == (6, 512, 512)


def test_format_override_and_overwrite(ct_series, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["upscale", str(ct_series), "-o", str(out), "--format", "nifti", "--model", "nearest"]
    assert main(args) == 0
    assert read(out / "ct.nii.gz").array.shape == (3, 1024, 1024)
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_deidentified_output(ct_series, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["upscale", str(ct_series), "-o", str(out), "--deidentify", "--model", "nearest"]) == 0
    )
    source = pydicom.dcmread(sorted(ct_series.iterdir())[0])
    ds = pydicom.dcmread(out / "ct" / "IM00001.dcm")
    assert ds.StudyInstanceUID != source.StudyInstanceUID
    assert str(ds.get("PatientName", "")) != str(source.PatientName) or not source.PatientName


def test_model_errors_stop_before_any_input(tmp_path, capsys):
    mri = str(samples.path("brain-mri"))
    assert main(["upscale", mri, "-o", str(tmp_path), "--model", "rcan"]) == 2
    assert "without trained weights" in capsys.readouterr().err
    assert main(["upscale", mri, "-o", str(tmp_path), "--model", "nope"]) == 2
    assert main(["upscale", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 1
    (tmp_path / "empty_dir").mkdir()
    assert main(["upscale", str(tmp_path / "empty_dir"), "-o", str(tmp_path / "o")]) == 2
    assert "no image inputs" in capsys.readouterr().err


def test_help_names_the_default_model(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # argparse would wrap inside the hyphenated names
    with pytest.raises(SystemExit):
        main(["upscale", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for scale in (2, 3, 4):
        assert f"x{scale}: {default_model(scale)}" in out


def test_performance_options_keep_the_output(small_png, tmp_path, caplog):
    plain = tmp_path / "plain.png"
    tuned = tmp_path / "tuned.png"
    assert main(["upscale", str(small_png), "-o", str(plain), "--model", "bicubic"]) == 0
    args = [
        "upscale",
        str(small_png),
        "-o",
        str(tuned),
        "--model",
        "bicubic",
        "--channels-last",
        "--self-ensemble",
        "--precision",
        "bf16",
        "--batch-size",
        "3",
        "--tile",
        "40",
        "--overlap",
        "8",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert "only used on a GPU" in caplog.text  # bf16 is never used on the CPU
    np.testing.assert_allclose(read(tuned).array, read(plain).array, atol=1.0)


def test_upscale_prints_no_identifiers(dicom_file, tmp_path, capsys, caplog):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    for keyword, value in SECRETS.items():
        setattr(ds, keyword, value)
    good, bad = tmp_path / "good.dcm", tmp_path / "bad.dcm"
    ds.save_as(good)
    bad.write_bytes(good.read_bytes()[:-3000])  # truncated pixel data, header intact
    caplog.set_level("DEBUG")
    args = ["-v", "-v", "upscale", str(good), str(bad), "-o", str(tmp_path / "out")]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert_clean(captured.out + captured.err + caplog.text)


# -- where outputs may go (issue 15: inputs never lost, --overwrite only over medsr's outputs) --
def _snapshot(folder) -> dict[str, bytes]:
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): p.read_bytes() for p in paths}


@pytest.mark.parametrize(
    "case", ["series-into-parent", "file-onto-itself", "file-into-its-folder", "inside-series"]
)
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_over_or_inside_an_input_is_refused(
    ct_series, dicom_file, tmp_path, capsys, case, overwrite
):
    single = tmp_path / "self.dcm"
    shutil.copy(dicom_file("MR_small.dcm"), single)
    source, out = {
        "series-into-parent": (ct_series, ct_series.parent),  # par/good_series -o par
        "file-onto-itself": (single, single),  # self.dcm -o self.dcm
        "file-into-its-folder": (single, tmp_path),  # self.dcm -o . (OUT/self.dcm)
        "inside-series": (ct_series, ct_series / "sr"),  # the output inside the input
    }[case]
    before = _snapshot(source)
    args = ["upscale", str(source), "-o", str(out), "--model", "nearest"]
    assert main(args + (["--overwrite"] if overwrite else [])) == 2
    err = capsys.readouterr().err
    assert "never writes over or into its inputs" in err and str(source) in err
    assert _snapshot(source) == before
    assert not (ct_series / "sr").exists()


def test_a_tree_and_self_supervised_refuse_outputs_inside_their_inputs(
    ct_series, dicom_file, tmp_path, capsys
):
    tree = ct_series.parent  # in/ holds the series ct/
    before = _snapshot(tree)
    assert main(["upscale", str(tree), "-o", str(tree / "sr"), "--model", "nearest"]) == 2
    assert "lies inside the input" in capsys.readouterr().err
    args = ["upscale", str(ct_series), "-o", str(tree), "--self-supervised", "--axis", "0"]
    assert main([*args, "--overwrite"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert _snapshot(tree) == before


def test_overwrite_replaces_only_earlier_medsr_outputs(small_png, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "xray.png"  # a file of the user's at the output's place
    mine.write_bytes(b"not written by medsr")
    args = ["upscale", str(small_png), "-o", str(out), "--model", "nearest"]
    assert main([*args, "--overwrite"]) == 1
    assert "not an earlier medsr output" in capsys.readouterr().err
    assert mine.read_bytes() == b"not written by medsr"
    mine.unlink()
    assert main(args) == 0  # medsr's own output: listed in OUT/.medsr-outputs
    assert main(args) == 1  # still refused without --overwrite
    assert "already exists" in capsys.readouterr().err
    first = mine.stat().st_mtime_ns
    assert main([*args, "--overwrite"]) == 0
    assert mine.stat().st_mtime_ns != first and read(mine).array.shape == (192, 192)


def test_inputs_that_would_write_one_output_are_refused_before_writing(small_png, tmp_path, capsys):
    with PILImage.open(small_png) as im:
        im.convert("L").save(small_png.with_suffix(".jpg"))  # xray.png and xray.jpg -> xray.png
    out = tmp_path / "out"
    args = ["upscale", str(small_png), str(small_png.with_suffix(".jpg")), "-o", str(out)]
    assert main([*args, "--model", "nearest"]) == 2
    assert "would write the same output" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "fmt"), [("e5.png", "png"), ("x.nii.gz", "nifti"), ("x.tif", "tiff")]
)
def test_an_output_file_name_sets_the_format(dicom_file, tmp_path, name, fmt):
    target = tmp_path / "out" / name
    args = ["upscale", str(dicom_file("MR_small.dcm")), "-o", str(target), "--model", "nearest"]
    assert main(args) == 0
    assert target.is_file()  # a file in the format its name says, not a folder of DICOM
    image = read(target)
    assert image.source.format == fmt and image.array.shape == (128, 128)


def test_an_output_file_name_medsr_cannot_honour_is_refused(dicom_file, tmp_path, capsys):
    source = str(dicom_file("MR_small.dcm"))
    assert main(["upscale", source, "-o", str(tmp_path / "x.jpg"), "--model", "nearest"]) == 2
    assert "does not write .jpg" in capsys.readouterr().err
    args = ["upscale", source, "-o", str(tmp_path / "x.png"), "--format", "dicom"]
    assert main([*args, "--model", "nearest"]) == 2
    assert "names a png file but --format is dicom" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_output_folder_is_named_with_its_cause(
    small_png, tmp_path, capsys, monkeypatch
):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = ["upscale", str(small_png), "--model", "nearest", "-o"]
    assert main([*args, str(blocker / "out")]) == 2
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err

    import tempfile

    def refuse(*a, **k):  # what a read-only folder, a full quota or an ACL answers
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "out"
    assert main([*args, str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write here" in err and "Permission denied" in err
    assert "bug" not in err
    assert main(["upscale", str(small_png.parent), "-o", str(out), "--model", "nearest"]) == 2
    assert f"{out}: cannot write here" in capsys.readouterr().err  # batch mode too


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anyway")
def test_a_read_only_output_folder_is_refused(small_png, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir(mode=0o555)
    try:
        assert main(["upscale", str(small_png), "-o", str(out), "--model", "nearest"]) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert f"{out}: cannot write here" in err and "Permission denied" in err


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_get_the_mode_the_umask_gives(ct_series, small_png, dicom_file, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        args = [str(ct_series), str(small_png), str(dicom_file("MR_small.dcm"))]
        assert main(["upscale", *args, "-o", str(out), "--model", "nearest"]) == 0
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 3 + 1 + 1 + 1  # 3 slices, the PNG, MR_small.dcm and the list
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_two_series_with_one_number_in_one_folder_get_their_own_outputs(dicom_file, tmp_path):
    """CT_small.dcm and MR_small.dcm both have SeriesNumber 1 (issue 15)."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(dicom_file(name), folder / name)
    out = tmp_path / "out"
    args = ["upscale", str(folder), "-o", str(out), "--model", "nearest"]
    assert main(args) == 0
    names = sorted(p.name for p in (out / "two").iterdir())
    assert len(names) == 2 and all(re.fullmatch(r"series-1-[0-9a-f]{8}\.dcm", n) for n in names)
    shapes = {n: read(out / "two" / n).array.shape for n in names}
    assert sorted(shapes.values()) == [(128, 128), (256, 256)]
    assert main([*args, "--overwrite"]) == 0  # each replaced by its own series' result
    assert sorted(p.name for p in (out / "two").iterdir()) == names
    assert {n: read(out / "two" / n).array.shape for n in names} == shapes
