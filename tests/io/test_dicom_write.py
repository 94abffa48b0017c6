"""Derived DICOM output: staging, preamble, copied elements, series identity, validity."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

from medsr.errors import ReadError, WriteError
from medsr.io import Image, dicom_write, read, write
from tests.conftest import pydicom_data_dir, pydicom_test_files_dir

DCIODVFY = shutil.which("dciodvfy")


def upscale(image: Image, scale: float = 2, *, axis: int | None = None) -> Image:
    """Bicubic stand-in for SR: in-plane (``axis`` None) or along one array axis."""
    array = image.array if image.is_volume else image.array[None]
    if image.color:
        planes = torch.from_numpy(np.moveaxis(array, -1, 1))
        up = F.interpolate(planes, scale_factor=scale, mode="bicubic").numpy()
        up = np.moveaxis(up, 1, -1)
    elif axis is None:
        up = F.interpolate(torch.from_numpy(array)[:, None], scale_factor=scale, mode="bicubic")
        up = up[:, 0].numpy()
    else:
        vol = torch.from_numpy(np.moveaxis(array, axis, 0)).permute(1, 2, 0)[:, None]
        up = F.interpolate(vol, scale_factor=(1, scale), mode="bilinear")[:, 0]
        up = np.moveaxis(up.permute(2, 0, 1).numpy(), 0, axis)
    return image.regrid(up if image.is_volume else up[0])


def make_series(source: Path, folder: Path, n: int = 3, thickness: float = 5.0, **extra) -> Path:
    """``n`` slices of ``source`` stacked ``thickness`` mm apart, as one series in ``folder``."""
    folder.mkdir(parents=True)
    series = generate_uid()
    for k in range(n):
        ds = pydicom.dcmread(source)
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + thickness * k]
        ds.SliceThickness = thickness
        for keyword, value in extra.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"{k}.dcm")
    return folder


# -- item 3: a failed series write leaves nothing partial ------------------------------------
def _fail_on_second_slice(monkeypatch) -> None:
    real_save = dicom_write._save
    calls = []

    def save(ds, path, finalize=None):
        calls.append(path)
        if len(calls) == 2:
            raise WriteError(path, "could not write DICOM ([Errno 28] No space left on device)")
        real_save(ds, path, finalize)

    monkeypatch.setattr(dicom_write, "_save", save)


def test_series_write_failure_on_slice_2_leaves_no_partial_series(
    dicom_file, tmp_path, monkeypatch
):
    image = read(make_series(dicom_file("CT_small.dcm"), tmp_path / "in", n=4))
    _fail_on_second_slice(monkeypatch)
    with pytest.raises(WriteError, match="No space left"):
        write(image, tmp_path / "out" / "series")
    assert not (tmp_path / "out" / "series").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no staging folder left either


def test_series_overwrite_failure_keeps_the_earlier_output(dicom_file, tmp_path, monkeypatch):
    image = read(make_series(dicom_file("CT_small.dcm"), tmp_path / "in", n=4))
    target = tmp_path / "out"
    first = write(image, target)
    before = {p.name: p.read_bytes() for p in first}
    _fail_on_second_slice(monkeypatch)
    with pytest.raises(WriteError):
        write(upscale(image), target, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_scratch_series_is_staged_too(tmp_path, monkeypatch):
    image = Image(np.zeros((3, 8, 8), np.float32), spacing=(1.0, 1.0, 1.0))
    _fail_on_second_slice(monkeypatch)
    with pytest.raises(WriteError):
        write(image, tmp_path / "scratch")
    assert list(tmp_path.iterdir()) == []


def test_series_overwrite_replaces_every_earlier_slice(dicom_file, tmp_path):
    image = read(make_series(dicom_file("CT_small.dcm"), tmp_path / "in", n=4))
    write(image, tmp_path / "out")
    fewer = upscale(image.replace(array=image.array[:2]), 2)
    written = write(fewer, tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in written]
    assert read(tmp_path / "out").array.shape == (2, 256, 256)


# -- item 6: zeroed preamble -----------------------------------------------------------------
def test_derived_files_never_copy_the_source_preamble(dicom_file, tmp_path):
    hostile = b"MZ\x90\x00" + b"\xcc" * 124  # an executable header (CVE-2019-11687)
    single = tmp_path / "single.dcm"
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.preamble = hostile
    ds.save_as(single)
    multi = tmp_path / "multi.dcm"
    ds = pydicom.dcmread(dicom_file("eCT_Supplemental.dcm"))
    ds.preamble = b"II*\x00" + b"\x11" * 124  # a TIFF header
    ds.save_as(multi)
    folder = make_series(dicom_file("CT_small.dcm"), tmp_path / "series", n=2)
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        ds.preamble = hostile
        ds.save_as(f)
    written = [
        *write(upscale(read(single)), tmp_path / "o1.dcm"),
        *write(upscale(read(multi)), tmp_path / "o2.dcm"),
        *write(read(folder), tmp_path / "o3"),
    ]
    assert len(written) == 4
    for path in written:
        head = path.read_bytes()[:132]
        assert head == b"\x00" * 128 + b"DICM", path


# -- item 7: private and oversized elements are not copied -----------------------------------
def test_private_and_oversized_elements_are_not_copied(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    block = ds.private_block(0x0011, "ATTACKER", create=True)
    block.add_new(0x01, "OB", b"\x00" * (1 << 20))  # 1 MiB private OB
    block.add_new(0x02, "LO", "secret private text")
    ds.add_new(0x00420011, "OB", b"\x01" * (200 * 1024))  # EncapsulatedDocument, 200 KiB
    ds.add_new(0x00091001, "UN", b"\x02" * 1000)  # private UN without a creator
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "1", "99X", "x"
    item.add_new(0x00131010, "LO", "private in a sequence")
    ds.AnatomicRegionSequence = DicomSequence([item])
    source = tmp_path / "bomb.dcm"
    ds.save_as(source)
    [out] = write(upscale(read(source)), tmp_path / "out.dcm")
    assert out.stat().st_size < 256 * 1024 + 200 * 1024  # 256x256 16-bit pixels + header
    back = pydicom.dcmread(out)
    assert not [e for e in back.iterall() if e.tag.is_private]
    assert "EncapsulatedDocument" not in back
    assert back.AnatomicRegionSequence[0].CodeValue == "1"  # the rest of the item stays


def test_small_binary_elements_and_lut_data_are_kept(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    lut = Dataset()
    lut.LUTDescriptor = [0, 0, 16]  # 2^16 entries: the largest LUT, 128 KiB
    lut.add_new(0x00283006, "OW", np.arange(65536, dtype="<u2").tobytes())
    ds.VOILUTSequence = DicomSequence([lut])
    source = tmp_path / "lut.dcm"
    ds.save_as(source)
    [out] = write(read(source), tmp_path / "out.dcm")
    back = pydicom.dcmread(out)
    assert back.VOILUTSequence[0].LUTData == lut.LUTData


def test_big_endian_sources_are_written_little_endian(dicom_file, tmp_path):
    path = dicom_file("MR_small_bigendian.dcm")
    source = read(path)
    [out] = write(upscale(source), tmp_path / "out.dcm")
    back = pydicom.dcmread(out)
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.Rows == 2 * source.array.shape[0]


# -- item 12: series number and description --------------------------------------------------
def test_every_output_kind_gets_series_number_plus_1000(dicom_file, tmp_path):
    single = dicom_file("CT_small.dcm")
    multi = dicom_file("eCT_Supplemental.dcm")
    folder = make_series(single, tmp_path / "series", n=2)
    cases = [
        (single, tmp_path / "o1.dcm"),
        (multi, tmp_path / "o2.dcm"),
        (folder, tmp_path / "o3"),
    ]
    for source, target in cases:
        first = next(iter(source.iterdir())) if source.is_dir() else source
        number = int(pydicom.dcmread(first).SeriesNumber)
        written = write(upscale(read(source)), target)
        assert {int(pydicom.dcmread(p).SeriesNumber) for p in written} == {number + 1000}


def test_series_description_is_short_readable_and_never_stacked(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    original = "Thorax routine 1.0 B31f axial lung window contrast"  # 51 characters
    ds.SeriesDescription = original
    source = tmp_path / "src.dcm"
    ds.save_as(source)
    [first] = write(upscale(read(source), 4), tmp_path / "x4.dcm")
    text = pydicom.dcmread(first).SeriesDescription
    assert len(text) <= 64 and text == f"[SR x4] {original}"
    [second] = write(upscale(read(first), 0.25), tmp_path / "back.dcm")
    again = pydicom.dcmread(second).SeriesDescription
    assert again == f"[SR x0.25] {original}"
    assert again.count("[") == 1
    [same] = write(read(second), tmp_path / "same.dcm")
    assert pydicom.dcmread(same).SeriesDescription == f"[medsr] {original}"


def test_series_description_short_original_keeps_the_warning():
    text = dicom_write.series_description("5mm", "SR x2")
    assert text == "[SR x2, not for primary diagnosis] 5mm"
    long = dicom_write.series_description("x" * 80, "SR x2")
    assert len(long) == 64 and long.startswith("[SR x2] xxx") and long.endswith("...")


def test_series_description_thickness_follows_through_plane_sr(dicom_file, tmp_path):
    folder = make_series(
        dicom_file("CT_small.dcm"), tmp_path / "in", n=4, SeriesDescription="Abdomen 5mm"
    )
    image = read(folder)
    assert image.spacing[0] == pytest.approx(5.0)
    thin = upscale(image, 5, axis=0)
    written = write(thin, tmp_path / "out")
    ds = pydicom.dcmread(written[0])
    assert ds.SeriesDescription == "[SR x5, not for primary diagnosis] Abdomen 1mm"
    assert float(ds.SliceThickness) == pytest.approx(1.0)


# -- item 11: no new dciodvfy errors on any pydicom-data file medsr reads --------------------
def _small_dicom_files() -> list[Path]:
    files: set[Path] = set()
    for folder in (pydicom_test_files_dir(), pydicom_data_dir()):
        if folder is not None:
            files |= {p for p in folder.glob("*.dcm") if p.stat().st_size < 2_000_000}
    return sorted(files, key=lambda p: p.name)


def _dciodvfy(path: Path) -> tuple[set[str], bool]:
    """Error lines (values blanked, invalid UIDs keyed by value, not by the element holding
    them) and whether dciodvfy could read the file at all."""
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (out.stdout + out.stderr).splitlines()
    readable = out.returncode >= 0 and not any("read failed" in line for line in lines)
    errors = set()
    for line in lines:
        if line.startswith("Error"):
            line = re.sub(r"= <[^>]*>|\[[^\]]*\]", "#", line)
            # a source with an invalid SOPInstanceUID makes the output's reference to it invalid
            line = re.sub(r"\(0x[0-9a-f]{4},0x[0-9a-f]{4}\) (?:UI )?[A-Za-z ]*? UID\b", "UID", line)
            errors.add(line)
    return errors, readable


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) absent")
@pytest.mark.parametrize("path", _small_dicom_files(), ids=lambda p: p.name)
def test_no_new_dciodvfy_errors(path, tmp_path):
    try:
        image = read(path)
    except ReadError:
        pytest.skip("medsr does not read this file")
    source_errors, readable = _dciodvfy(path)
    if not readable:
        pytest.skip("dciodvfy cannot read the source, so there is nothing to compare with")
    try:
        written = write(upscale(image), tmp_path / "out.dcm")
    except WriteError as error:
        # documented refusals, never a half-written file
        assert "cannot be written back as DICOM" in str(error)
        assert not (tmp_path / "out.dcm").exists()
        return
    for out in written[:2]:
        new = _dciodvfy(out)[0] - source_errors
        assert not new, f"new dciodvfy errors: {sorted(new)}"


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) absent")
def test_enhanced_ct_derivation_lives_in_the_functional_groups(dicom_file, tmp_path):
    path = dicom_file("eCT_Supplemental.dcm")
    [out] = write(upscale(read(path)), tmp_path / "out.dcm")

    def warnings(p: Path) -> set[str]:
        run = subprocess.run([DCIODVFY, str(p)], capture_output=True, text=True, timeout=60)
        lines = (run.stdout + run.stderr).splitlines()
        return {re.sub(r"<[^>]*>", "#", line) for line in lines if line.startswith("Warning")}

    assert warnings(out) - warnings(path) == set()
    ds = pydicom.dcmread(out)
    assert "SourceImageSequence" not in ds and "DerivationDescription" not in ds
    item = ds.SharedFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert (
        item.SourceImageSequence[0].ReferencedSOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID
    )
