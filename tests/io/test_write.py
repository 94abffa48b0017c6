from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
import torch.nn.functional as F

from medsr.errors import WriteError
from medsr.io import Image, read, write

DCIODVFY = shutil.which("dciodvfy")
DCENTVFY = shutil.which("dcentvfy")


def upscale(image: Image, scale: int = 2) -> Image:
    """A stand-in for super-resolution: bicubic in-plane, geometry regridded."""
    array = image.array if image.is_volume else image.array[None]
    up = F.interpolate(torch.from_numpy(array)[:, None], scale_factor=scale, mode="bicubic")
    up = up[:, 0].numpy()
    return image.regrid(up if image.is_volume else up[0])


def dciodvfy_errors(path) -> set[str]:
    out = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).splitlines()
    # values (UIDs, numbers) differ between files; compare the kind of error and the element
    return {
        re.sub(r"= <[^>]*>|\[[^\]]*\]", "#", line) for line in lines if line.startswith("Error")
    }


def assert_valid_derived(source_path, written, source_ds):
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPInstanceUID != source_ds.SOPInstanceUID
        assert ds.SeriesInstanceUID != source_ds.SeriesInstanceUID
        assert ds.StudyInstanceUID == source_ds.StudyInstanceUID
        if "FrameOfReferenceUID" in source_ds:
            assert ds.FrameOfReferenceUID == source_ds.FrameOfReferenceUID
        assert ds.ImageType[0] == "DERIVED"
        assert "not for primary diagnosis" in ds.SeriesDescription
        # enhanced IODs carry the derivation in the shared Derivation Image functional group
        shared = ds.get("SharedFunctionalGroupsSequence")
        derivation = shared[0].DerivationImageSequence[0] if shared else ds
        assert "not for primary diagnosis" in derivation.DerivationDescription
        refs = {item.ReferencedSOPInstanceUID for item in derivation.SourceImageSequence}
        assert refs, "SourceImageSequence must reference the source"
        for element in ds.iterall():
            if element.VR == "DS" and element.value is not None:
                values = element.value if element.VM > 1 else [element.value]
                assert all(len(str(v)) <= 16 for v in values), element
        if DCIODVFY:
            new = dciodvfy_errors(path) - dciodvfy_errors(source_path)
            assert not new, f"dciodvfy errors not in the input: {new}"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR2_UNCR.dcm"])
def test_derived_dicom_single_file(dicom_file, tmp_path, name):
    path = dicom_file(name)
    source = read(path)
    sr = upscale(source, 2)
    written = write(sr, tmp_path / "sr.dcm", description="bicubic test")
    source_ds = pydicom.dcmread(path)
    assert_valid_derived(path, written, source_ds)
    back = read(written[0])
    assert back.array.shape == sr.array.shape
    assert back.spacing == pytest.approx(sr.spacing)
    np.testing.assert_allclose(back.origin, sr.origin, atol=1e-4)
    slope = float(source_ds.get("RescaleSlope", 1))
    inside = (sr.array > source.array.min()) & (sr.array < source.array.max())
    # values within half a stored unit where nothing had to be clipped
    assert np.abs(back.array - sr.array)[inside].max() <= slope / 2 + 1e-3
    ds = pydicom.dcmread(written[0])
    assert (ds.BitsStored, ds.PixelRepresentation) == (
        source_ds.BitsStored,
        source_ds.PixelRepresentation,
    )
    assert ds.Rows == 2 * source_ds.Rows
    if DCENTVFY:
        result = subprocess.run([DCENTVFY, str(path), str(written[0])], capture_output=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_monochrome1_writes_back_as_monochrome2_with_same_display(dicom_file, tmp_path):
    path = dicom_file("RG3_UNCR.dcm")
    source = read(path)
    written = write(source, tmp_path / "copy.dcm")
    ds = pydicom.dcmread(written[0])
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    np.testing.assert_array_equal(read(written[0]).array, source.array)
    assert ds.SeriesDescription.startswith("[medsr]")  # same grid: not labelled as SR


def test_enhanced_multiframe_round_trip(dicom_file, tmp_path):
    path = dicom_file("eCT_Supplemental.dcm")
    source = read(path)
    sr = upscale(source, 2)
    written = write(sr, tmp_path / "sr.dcm")
    assert_valid_derived(path, written, pydicom.dcmread(path))
    back = read(written[0])
    assert back.array.shape == (2, 1024, 1024)
    assert back.spacing == pytest.approx(sr.spacing)
    np.testing.assert_allclose(back.origin, sr.origin, atol=1e-4)


def test_colour_dicom_round_trip(dicom_file, tmp_path):
    path = dicom_file("US1_UNCR.dcm")
    source = read(path)
    written = write(source, tmp_path / "us.dcm")
    back = read(written[0])
    assert back.color and np.array_equal(back.array, source.array)


def test_real_ct_series_derived(shared_data, tmp_path):
    files = sorted((shared_data / "chest-ct" / "A0001").iterdir())[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    source = read(folder)
    sr = upscale(source, 2)
    written = write(sr, tmp_path / "out")
    assert len(written) == 3
    assert_valid_derived(files[0], written[:1], pydicom.dcmread(files[0]))
    back = read(tmp_path / "out")
    assert back.array.shape == (3, 1024, 1024)
    assert back.spacing == pytest.approx(sr.spacing)
    np.testing.assert_allclose(back.origin, sr.origin, atol=1e-4)
    series = {pydicom.dcmread(p).SeriesInstanceUID for p in written}
    assert len(series) == 1
    if DCENTVFY:
        result = subprocess.run(
            [DCENTVFY, *map(str, files), *map(str, written)], capture_output=True
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_through_plane_regrid_updates_positions(dicom_file, tmp_path):
    from tests.io.test_read import _write_series

    template = pydicom.dcmread(dicom_file("MR_small.dcm"))
    folder = _write_series(template, tmp_path / "thick", [0.0, 4.0, 8.0, 12.0])
    source = read(folder)
    thin = source.regrid(np.repeat(source.array, 4, axis=0))
    written = write(thin, tmp_path / "thin")
    assert len(written) == 16
    back = read(tmp_path / "thin")
    assert back.spacing[0] == pytest.approx(1.0)
    assert back.origin[2] == pytest.approx(-1.5)  # edge-aligned: 0 - 4/2 + 1/2
    ds = pydicom.dcmread(written[0])
    assert float(ds.SliceThickness) == pytest.approx(1.0)
    assert len(ds.SourceImageSequence) == 2


def test_nifti_affine_rescaled(tmp_path):
    affine = np.array([[-0.9, 0, 0, 100], [0, -0.9, 0, 120], [0, 0, 3.0, -50], [0, 0, 0, 1]])
    data = np.random.default_rng(0).integers(0, 1000, size=(20, 16, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "in.nii.gz")
    source = read(tmp_path / "in.nii.gz")
    sr = upscale(source, 2)
    write(sr, tmp_path / "out.nii.gz")
    out = nib.load(tmp_path / "out.nii.gz")
    assert out.shape == (40, 32, 5)
    assert out.get_data_dtype() == np.int16  # source type kept
    np.testing.assert_allclose(np.abs(np.diag(out.affine))[:3], [0.45, 0.45, 3.0])
    # the outer corner of the field of view is unchanged
    corner_in = affine @ [-0.5, -0.5, -0.5, 1]
    corner_out = out.affine @ [-0.5, -0.5, -0.5, 1]
    np.testing.assert_allclose(corner_in, corner_out, atol=1e-4)


def test_png_and_tiff_keep_bit_depth(dicom_file, tmp_path):
    source = read(dicom_file("MR_small.dcm"))  # 16-bit values
    write(source, tmp_path / "mr.png")
    back = read(tmp_path / "mr.png")
    assert back.source.bits_stored == 16
    np.testing.assert_array_equal(back.array, source.array)
    ct = read(dicom_file("CT_small.dcm"))  # HU: negative values -> stored values are written
    write(ct, tmp_path / "ct.tif")
    stored = pydicom.dcmread(dicom_file("CT_small.dcm")).pixel_array
    np.testing.assert_array_equal(read(tmp_path / "ct.tif").array, stored)


def test_npy_round_trip_and_no_silent_overwrite(tmp_path):
    image = Image(array=np.random.default_rng(0).normal(size=(4, 5)), spacing=(1, 1))
    write(image, tmp_path / "a.npy")
    np.testing.assert_array_equal(read(tmp_path / "a.npy").array, image.array)
    with pytest.raises(WriteError, match="exists"):
        write(image, tmp_path / "a.npy")
    write(image, tmp_path / "a.npy", overwrite=True)
    with pytest.raises(WriteError, match="suffix"):
        write(image, tmp_path / "a.xyz")


def test_volume_to_single_dicom_file_is_refused(dicom_file, tmp_path):
    from tests.io.test_read import _write_series

    template = pydicom.dcmread(dicom_file("MR_small.dcm"))
    source = read(_write_series(template, tmp_path / "s", [0.0, 1.0]))
    with pytest.raises(WriteError, match="folder"):
        write(source, tmp_path / "vol.dcm")


def test_nifti_to_dicom_and_back_keeps_geometry(tmp_path):
    affine = np.array([[0, 0, -2.0, 30], [0.8, 0, 0, -40], [0, -0.8, 0, 60], [0, 0, 0, 1]])
    data = np.random.default_rng(1).normal(size=(12, 10, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "in.nii")
    source = read(tmp_path / "in.nii")
    written = write(source, tmp_path / "dicom")
    assert len(written) == source.spatial_shape[0]
    back = read(tmp_path / "dicom")
    np.testing.assert_allclose(back.affine(), source.affine(), atol=1e-4)
    span = float(data.max() - data.min())
    np.testing.assert_allclose(back.array, source.array, atol=span / 65535)
    write(back, tmp_path / "back.nii.gz")
    np.testing.assert_allclose(nib.load(tmp_path / "back.nii.gz").affine, affine, atol=1e-4)


@pytest.mark.parametrize("umask", [0o022, 0o007])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask):
    """Not mkstemp's 0600: colleagues on a shared server read outputs as any other file."""
    image = Image(np.arange(64, dtype=np.float32).reshape(8, 8), spacing=(1.0, 1.0))
    volume = Image(np.zeros((2, 8, 8), np.float32), spacing=(2.0, 1.0, 1.0))
    old = os.umask(umask)
    try:
        written = [
            *write(image, tmp_path / "a.png"),
            *write(image, tmp_path / "a.tif"),
            *write(image, tmp_path / "a.nii.gz"),
            *write(image, tmp_path / "a.npy"),
            *write(image, tmp_path / "a.npz"),
            *write(image, tmp_path / "a.dcm"),
            *write(volume, tmp_path / "series"),
        ]
    finally:
        os.umask(old)
    assert len(written) == 8
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
