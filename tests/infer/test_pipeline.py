"""The upscale pipeline: planning (names, collisions), the output policy, and ``run`` end to
end on a small NIfTI volume and a small DICOM series with bicubic."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsr.errors import ConfigError, ReadError
from medsr.infer import pipeline
from medsr.infer.model_source import load_model
from medsr.infer.outputs import OutputLedger
from medsr.infer.pipeline import (
    Job,
    UpscaleOptions,
    check_plan,
    default_format,
    named_format,
    output_format,
    output_path,
    plan,
    run,
    series_output_name,
)
from medsr.io import Image, read, write
from medsr.io.image import Source
from medsr.io.write import VOLUME_FORMATS, fit_to_output, stored_range


def _volume(shape=(3, 8, 10), spacing=(3.0, 1.0, 1.0), modality="MR") -> Image:
    rng = np.random.default_rng(0)
    return Image(rng.integers(0, 400, shape).astype(np.float32), spacing, modality=modality)


def _touch_png(path: Path) -> Path:
    """A 4x4 8-bit grey PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)).save(path)
    return path


def _ct_series(folder: Path) -> Path:
    """A 3-slice CT series written from scratch (int16 HU)."""
    write(_ct(), folder, format="dicom")
    return folder


def _ct() -> Image:
    image = _volume(modality="CT")
    return image.replace(array=image.array - 1000.0)


# -- planning ------------------------------------------------------------------------------------
def test_plan_names_files_series_and_mirrored_trees(tmp_path):
    tree = tmp_path / "in"
    _touch_png(tree / "a.png")
    _touch_png(tree / "sub" / "b.png")
    write(_volume(), tree / "sub" / "v.nii.gz")
    (tree / "notes.txt").write_text("not an image")
    series = _ct_series(tmp_path / "ct")
    found = plan([tree, series, tmp_path / "missing.nii.gz"], tmp_path / "out")
    stems = {job.path.name: job.stem for job in found.jobs}
    assert stems == {
        "a.png": Path("a"),
        "b.png": Path("sub/b"),
        "v.nii.gz": Path("sub/v"),  # .nii.gz is one suffix
        "ct": Path("ct"),  # a series folder keeps its name
        "missing.nii.gz": Path("missing"),  # fails when run, with a clear error
    }
    assert found.skipped == (tree / "notes.txt",)
    assert found.root == tmp_path / "out"
    assert all(job.out == tmp_path / "out" and job.file is None for job in found.jobs)


def test_an_input_given_twice_is_one_job(tmp_path):
    png = _touch_png(tmp_path / "a.png")
    found = plan([png, str(png), tmp_path / "." / "a.png"], tmp_path / "out")
    assert [job.path for job in found.jobs] == [png]


def test_a_single_input_may_be_written_to_the_file_out_names(tmp_path):
    png = _touch_png(tmp_path / "a.png")
    found = plan([png], tmp_path / "x" / "sr.tif")
    (job,) = found.jobs
    assert job.file == tmp_path / "x" / "sr.tif" and found.root == tmp_path / "x"
    assert output_format(job, UpscaleOptions()) == "tiff"
    with pytest.raises(ConfigError, match="names a tiff file but --format is png"):
        output_format(job, UpscaleOptions(format="png"))
    # two inputs (or batch mode): OUT is a folder whatever its name
    other = _touch_png(tmp_path / "b.png")
    assert plan([png, other], tmp_path / "sr.tif").root == tmp_path / "sr.tif"
    assert plan([png], tmp_path / "sr.tif", single=False).jobs[0].file is None
    with pytest.raises(ConfigError, match=r"does not write \.jpg files"):
        plan([png], tmp_path / "sr.jpg")


def test_listed_entries_are_placed_below_their_common_folder(tmp_path):
    a = _touch_png(tmp_path / "site" / "p1" / "a.png")
    series = _ct_series(tmp_path / "site" / "p2" / "ct")
    found = plan([], tmp_path / "out", listed=[a, series], single=False)
    assert sorted(str(job.stem) for job in found.jobs) == ["p1/a", "p2/ct"]


def test_a_folder_of_several_series_gives_one_job_per_series(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for k in (1, 2):
        for path in _ct_series(tmp_path / f"s{k}").iterdir():
            shutil.copy(path, folder / f"s{k}-{path.name}")
    jobs = plan([folder], tmp_path / "out").jobs
    assert len(jobs) == 2 and len({job.series_uid for job in jobs}) == 2
    for job in jobs:
        assert job.stem.parent == Path("mixed") and job.stem.name.startswith("series-")
        assert job.series_uid is not None and job.series_uid not in job.label
    # stable from run to run, the UID not revealed, two series with one number kept apart
    assert series_output_name(7, "1.2.3") == series_output_name(7, "1.2.3")
    assert series_output_name(7, "1.2.3") != series_output_name(7, "1.2.4")
    assert "1.2.3" not in series_output_name(7, "1.2.3")
    assert series_output_name(None, "1.2.3").startswith("series-") and series_output_name(
        " 4/b ", "1.2.3"
    ).startswith("series-4b-")


def test_check_plan_refuses_collisions_and_outputs_inside_inputs(tmp_path):
    a = _touch_png(tmp_path / "x" / "a.png")
    b = _touch_png(tmp_path / "y" / "a.png")
    with pytest.raises(ConfigError, match="inputs would write the same output"):
        check_plan(plan([a, b], tmp_path / "out"), UpscaleOptions())
    tree = tmp_path / "x"
    with pytest.raises(ConfigError, match="never writes over or into its inputs"):
        check_plan(plan([tree], tree / "out"), UpscaleOptions(), [tree])
    check_plan(plan([a], tmp_path / "out"), UpscaleOptions())  # fine


# -- the output policy ---------------------------------------------------------------------------
def test_which_format_a_path_means(tmp_path):
    assert named_format(tmp_path / "x.nii.gz") == "nifti"
    assert named_format(tmp_path / "x.NII") == "nifti"
    assert named_format(tmp_path / "x.dcm") == "dicom"
    assert named_format(tmp_path / "x.ima") == "dicom"
    assert named_format(tmp_path / "x.tiff") == "tiff"
    assert named_format(tmp_path / "results") is None  # a folder
    (tmp_path / "looks.png").mkdir()
    assert named_format(tmp_path / "looks.png") is None  # an existing folder stays a folder
    for suffix in (".jpg", ".mat"):
        with pytest.raises(ConfigError, match=f"does not write \\{suffix} files"):
            named_format(tmp_path / f"x{suffix}")


def test_the_output_format_of_each_input_format():
    expected = {"dicom": "dicom", "nifti": "nifti", "png": "png", "jpeg": "png"}
    expected |= {"tiff": "tiff", "npy": "npy", "npz": "npz", "mat": "npz", "other": "npz"}
    assert {fmt: default_format(fmt) for fmt in expected} == expected
    # the PNG writer stores one 2D image: a volume goes to TIFF
    assert "png" not in VOLUME_FORMATS and default_format("png", volume=True) == "tiff"
    assert default_format("nifti", volume=True) == "nifti"


def test_output_format_before_and_after_reading(tmp_path):
    png = _touch_png(tmp_path / "a.png")
    job = Job(png, Path("a"), tmp_path)
    assert output_format(job, UpscaleOptions()) == "png"
    assert output_format(job, UpscaleOptions(format="npz")) == "npz"
    renamed = tmp_path / "scan"  # no suffix: the content says PNG
    shutil.copy(png, renamed)
    assert output_format(Job(renamed, Path("scan"), tmp_path), UpscaleOptions()) == "png"
    assert output_format(Job(tmp_path / "nothing", Path("n")), UpscaleOptions()) is None
    assert output_format(job, UpscaleOptions(), _volume()) == "npy"  # no source: an array
    with pytest.raises(ConfigError, match="unknown output format 'jpeg'"):
        UpscaleOptions(format="jpeg")


def test_output_path_a_series_folder_or_a_file(tmp_path):
    base = tmp_path / "out" / "scan"
    dicom_volume = _volume().replace(source=Source(format="dicom"))
    multiframe = _volume().replace(source=Source(format="dicom", frame_order=(0, 1, 2)))
    flat = Image(np.zeros((4, 4), np.float32), (1.0, 1.0))
    assert output_path(base, dicom_volume, "dicom") == base  # one file per slice
    assert output_path(base, multiframe, "dicom") == base.with_name("scan.dcm")
    assert output_path(base, flat, "dicom") == base.with_name("scan.dcm")
    assert output_path(base, dicom_volume, "nifti") == base.with_name("scan.nii.gz")
    assert output_path(base, flat, "tiff") == base.with_name("scan.tif")


def test_what_a_writer_can_store(tmp_path):
    png = _touch_png(tmp_path / "a.png")
    eight_bit = read(png)
    assert stored_range(eight_bit, "png") == (0.0, 255.0, True)
    assert stored_range(eight_bit, "nifti") is None  # float output keeps everything
    over = eight_bit.replace(array=np.full((4, 4), 300.4, np.float32))
    fitted, clipped = fit_to_output(over, "png")
    assert clipped == 16 and float(fitted.array.max()) == 255.0
    ct = read(_ct_series(tmp_path / "ct"))
    low, high, integer = stored_range(ct, "dicom")
    assert low <= float(ct.array.min()) and high >= float(ct.array.max()) and not integer


# -- running -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bicubic():
    return load_model("bicubic", scale=2)


def test_run_a_nifti_volume(tmp_path, bicubic):
    source = tmp_path / "in" / "v.nii.gz"
    source.parent.mkdir()
    write(_volume(), source)
    found = plan([source], tmp_path / "out")
    options = UpscaleOptions(device="cpu", tile=0)
    check_plan(found, options)
    ledger = OutputLedger(found.root)
    calls: list[tuple[int, int]] = []
    outcome = run(
        found.jobs[0], bicubic, options, ledger=ledger, progress=lambda *a: calls.append(a)
    )
    assert outcome.ok, outcome.error
    assert outcome.output == tmp_path / "out" / "v.nii.gz" and outcome.written == [outcome.output]
    assert outcome.format == "nifti" and calls and calls[-1][0] == calls[-1][1]
    sr = read(outcome.output)
    assert sr.array.shape == (3, 16, 20)
    assert sr.spacing == pytest.approx((3.0, 0.5, 0.5))
    assert ledger.lists(outcome.output) and outcome.warnings == []

    # the output exists: refused without --overwrite, replaced with it (the ledger lists it)
    again = run(found.jobs[0], bicubic, options, ledger=OutputLedger(found.root))
    assert not again.ok and "already exists" in again.error and not again.bug
    replaced = run(
        found.jobs[0], bicubic, UpscaleOptions(device="cpu", overwrite=True), ledger=ledger
    )
    assert replaced.ok, replaced.error


def test_run_a_dicom_series_into_a_derived_series(tmp_path, bicubic):
    series = _ct_series(tmp_path / "in" / "ct")
    (job,) = plan([series], tmp_path / "out").jobs
    options = UpscaleOptions(device="cpu", description="bicubic test")
    outcome = run(job, bicubic, options)
    assert outcome.ok, outcome.error
    assert outcome.output == tmp_path / "out" / "ct" and len(outcome.written) == 3
    sr, lr = read(outcome.output), read(series)
    assert sr.array.shape == (3, 16, 20) and sr.modality == "CT"
    assert abs(float(sr.array.mean()) - float(lr.array.mean())) < 5.0  # HU stay HU
    first = pydicom.dcmread(sorted(outcome.written)[0])
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert "bicubic test" in first.DerivationDescription


def test_the_derived_series_says_how_it_was_made(tmp_path, bicubic):
    series = _ct_series(tmp_path / "in" / "ct")
    (job,) = plan([series], tmp_path / "out").jobs
    outcome = run(job, bicubic, UpscaleOptions(device="cpu", self_ensemble=True))
    assert outcome.ok, outcome.error
    first = pydicom.dcmread(sorted(outcome.written)[0])
    assert f"({bicubic.name} x2, self-ensemble x8)" in first.DerivationDescription
    (job,) = plan([series], tmp_path / "plain").jobs
    outcome = run(job, bicubic, UpscaleOptions(device="cpu"))
    first = pydicom.dcmread(sorted(outcome.written)[0])
    assert f"({bicubic.name} x2)" in first.DerivationDescription
    assert "self-ensemble" not in first.DerivationDescription


def test_run_takes_an_image_already_read(tmp_path, bicubic):
    image = read(_touch_png(tmp_path / "a.png"))
    job = Job(tmp_path / "upload", Path("result"), tmp_path / "out")
    outcome = run(job, bicubic, UpscaleOptions(device="cpu"), image=image)
    assert outcome.ok and outcome.output == tmp_path / "out" / "result.png"
    assert outcome.image is image and read(outcome.output).array.shape == (8, 8)


def test_run_turns_errors_into_the_outcome(tmp_path, bicubic, monkeypatch):
    missing = Job(tmp_path / "gone.png", Path("gone"), tmp_path / "out")
    outcome = run(missing, bicubic, UpscaleOptions(device="cpu"))
    assert not outcome.ok and isinstance(outcome.exception, ReadError) and not outcome.bug
    assert str(tmp_path / "gone.png") not in outcome.error  # the caller names the input

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(pipeline, "read", broken)
    outcome = run(missing, bicubic, UpscaleOptions(device="cpu"))
    assert outcome.bug and outcome.error == "unexpected RuntimeError: boom (a bug in medsr)"
