from __future__ import annotations

import random
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsr.errors import GeometryError, MixedSeriesError
from medsr.io import read

# -- DICOM files ------------------------------------------------------------------------------


def test_ct_values_are_hounsfield_units(dicom_file):
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.array, expected.astype(np.float32))
    assert image.modality == "CT"
    assert image.spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert image.origin == tuple(float(v) for v in ds.ImagePositionPatient)
    # X axis (columns) points along the row direction cosine, Y along the column cosine
    np.testing.assert_allclose(
        image.direction[:, 1], [float(v) for v in ds.ImageOrientationPatient[:3]]
    )
    np.testing.assert_allclose(
        image.direction[:, 0], [float(v) for v in ds.ImageOrientationPatient[3:]]
    )
    assert image.source.bits_stored == int(ds.BitsStored)
    assert image.source.stored_dtype == "int16"


@pytest.mark.parametrize(
    ("compressed", "reference"),
    [
        ("MR_small_RLE.dcm", "MR_small.dcm"),
        ("MR_small_jp2klossless.dcm", "MR_small.dcm"),
        ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
        ("MR_small_bigendian.dcm", "MR_small.dcm"),
        ("MR_small_implicit.dcm", "MR_small.dcm"),
        ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
        ("emri_small_RLE.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
    ],
)
def test_lossless_compressed_syntaxes_decode_to_the_same_pixels(dicom_file, compressed, reference):
    a, b = read(dicom_file(compressed)), read(dicom_file(reference))
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == b.spacing


def test_monochrome1_is_inverted_so_bright_means_more(dicom_file):
    path = dicom_file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path)
    image = read(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1" and image.source.inverted
    top = (1 << int(ds.BitsStored)) - 1
    slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
    expected = (top - ds.pixel_array.astype(np.float64)) * slope + intercept
    np.testing.assert_allclose(image.array, expected, rtol=1e-6)
    assert image.modality == "CR"


def test_enhanced_multiframe_uses_functional_groups(dicom_file):
    path = dicom_file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    image = read(path)
    assert image.array.shape == (2, 512, 512)
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert image.spacing[1:] == tuple(float(v) for v in measures.PixelSpacing)
    frames = ds.PerFrameFunctionalGroupsSequence
    positions = [
        np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
        for f in frames
    ]
    np.testing.assert_allclose(image.spacing[0], np.linalg.norm(positions[1] - positions[0]))
    # HU through the per-frame / shared pixel value transformation
    assert image.array.min() >= -1024 - 1e-3


def test_colour_dicom_is_rgb(dicom_file):
    image = read(dicom_file("US1_UNCR.dcm"))
    assert image.color and image.array.shape == (480, 640, 3)
    assert image.array.min() >= 0 and image.array.max() <= 255


def test_siemens_ima_without_preamble(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    path = tmp_path / "scan.ima"
    ds.preamble = None
    ds.save_as(path, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    image = read(path)
    np.testing.assert_array_equal(image.array, read(dicom_file("MR_small.dcm")).array)


# -- DICOM series -----------------------------------------------------------------------------


def _write_series(ds_template, folder, positions, *, shuffle_names=True, thickness=99.0):
    """Slices of one series at the given z positions, with misleading names and numbers."""
    folder.mkdir(parents=True, exist_ok=True)
    order = list(range(len(positions)))
    rng = random.Random(0)
    names = [f"file{n:03d}.dcm" for n in order]
    if shuffle_names:
        rng.shuffle(names)
    series_uid = pydicom.uid.generate_uid()
    for k, z in enumerate(positions):
        ds = ds_template.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = len(positions) - k  # reversed: must not be used for sorting
        ds.SliceThickness = thickness  # must not be used for spacing
        pixels = ds.pixel_array.copy()
        pixels[:] = k  # slice k holds the value k
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / names[k])
    return folder


def test_series_sorted_by_position_not_names_or_numbers(dicom_file, tmp_path):
    template = pydicom.dcmread(dicom_file("MR_small.dcm"))
    positions = [7.5, -5.0, 2.5, 0.0, 5.0, -2.5]
    folder = _write_series(template, tmp_path / "series", positions)
    image = read(folder)
    assert image.array.shape == (6, 64, 64)
    # slice k of the file list held value k; the volume must be ordered by z
    expected_order = np.argsort(positions)
    np.testing.assert_array_equal(image.array[:, 0, 0], expected_order.astype(np.float32))
    assert image.spacing[0] == pytest.approx(2.5)
    assert image.origin[2] == pytest.approx(-5.0)
    assert len(image.source.datasets) == 6


def test_irregular_or_duplicate_positions_are_refused(dicom_file, tmp_path):
    template = pydicom.dcmread(dicom_file("MR_small.dcm"))
    with pytest.raises(GeometryError, match="irregular slice spacing"):
        read(_write_series(template, tmp_path / "gap", [0.0, 2.5, 5.0, 10.0]))
    with pytest.raises(MixedSeriesError, match="share the position"):
        read(_write_series(template, tmp_path / "dup", [0.0, 2.5, 2.5, 5.0]))


def test_mixed_series_folder_names_both(dicom_file, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), folder / "a.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), folder / "b.dcm")
    (folder / "notes.txt").write_text("not dicom")
    with pytest.raises(MixedSeriesError, match="2 series") as info:
        read(folder)
    assert "CT" in str(info.value) and "MR" in str(info.value)
    uid = str(pydicom.dcmread(folder / "b.dcm").SeriesInstanceUID)
    assert read(folder, series_uid=uid).modality == "MR"


def test_real_ct_series(shared_data, tmp_path):
    folder = shared_data / "chest-ct" / "A0001"
    image = read(folder)
    assert image.array.shape == (64, 512, 512)
    assert image.modality == "CT"
    assert image.spacing == pytest.approx((5.0, 0.841796875, 0.841796875))
    assert image.array.min() == -1024  # air in HU
    positions = [
        float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
        for p in folder.iterdir()
    ]
    assert image.origin[2] == pytest.approx(min(positions))


# -- other formats ----------------------------------------------------------------------------


def test_nifti_geometry_matches_the_affine(tmp_path):
    data = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)  # (i, j, k)
    affine = np.array(
        [[0.0, -1.5, 0, 10], [2.0, 0, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]]
    )  # oblique axis permutation with flips
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), path)
    image = read(path)
    assert image.array.shape == (4, 5, 6)
    np.testing.assert_array_equal(image.array, np.transpose(data, (2, 1, 0)))
    assert image.spacing == pytest.approx((3.0, 1.5, 2.0))
    ras_to_lps = np.diag([-1, -1, 1, 1])
    for i, j, k in [(0, 0, 0), (5, 4, 3), (2, 1, 3)]:
        expected = (ras_to_lps @ affine @ [i, j, k, 1])[:3]
        np.testing.assert_allclose((image.affine() @ [k, j, i, 1])[:3], expected, atol=1e-9)


def test_brats_nifti(shared_data):
    image = read(shared_data / "brain-mri-brats2013" / "pat0003" / "Flair_subtrMeanDivStd.nii.gz")
    assert image.array.shape == (155, 240, 240)
    assert image.spacing == (1.0, 1.0, 1.0)
    assert image.source.format == "nifti" and image.source.bits_stored is None


@pytest.mark.parametrize(("bits", "dtype", "top"), [(8, np.uint8, 200), (16, np.uint16, 200)])
def test_png_bit_depth_comes_from_the_file(tmp_path, bits, dtype, top):
    array = np.linspace(0, top, 64 * 32).reshape(32, 64).astype(dtype)
    path = tmp_path / "img.png"
    PILImage.fromarray(array).save(path)
    image = read(path)
    # a 16-bit PNG whose values stay below 256 is still 16-bit
    assert image.source.bits_stored == bits
    np.testing.assert_array_equal(image.array, array.astype(np.float32))


def test_jpeg_and_real_chest_xray(shared_data, tmp_path):
    image = read(shared_data / "chest-xray" / "cxr-01.png")
    assert image.array.shape == (1024, 1024) and image.source.bits_stored == 8
    PILImage.fromarray(image.array.astype(np.uint8)).save(tmp_path / "x.jpg", quality=95)
    jpeg = read(tmp_path / "x.jpg")
    assert jpeg.source.format == "jpeg" and np.abs(jpeg.array - image.array).mean() < 3


def test_tiff_pages_become_slices(tmp_path):
    import tifffile

    volume = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9) * 50
    tifffile.imwrite(tmp_path / "v.tif", volume, photometric="minisblack")
    image = read(tmp_path / "v.tif")
    np.testing.assert_array_equal(image.array, volume)
    assert image.source.bits_stored == 16
    floats = np.random.default_rng(1).normal(size=(8, 9)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tiff", floats)
    assert read(tmp_path / "f.tiff").source.bits_stored is None


def test_npy_and_npz(tmp_path):
    volume = np.random.default_rng(2).integers(0, 1600, size=(5, 6, 7)).astype(np.uint16)
    np.save(tmp_path / "v.npy", volume)
    np.testing.assert_array_equal(read(tmp_path / "v.npy").array, volume)
    mask = volume > 800
    np.savez(tmp_path / "v.npz", image=volume, mask=mask, spacing=np.array([2.0, 1.0, 1.0]))
    image = read(tmp_path / "v.npz")
    np.testing.assert_array_equal(image.mask, mask)
    assert image.spacing == (2.0, 1.0, 1.0)
    np.savez(tmp_path / "two.npz", a=volume, b=volume)
    with pytest.raises(Exception, match="which array"):
        read(tmp_path / "two.npz")
    assert read(tmp_path / "two.npz", key="b").array.shape == (5, 6, 7)


def test_spine_npz(shared_data):
    image = read(shared_data / "spine-mri" / "VB1_02.npz")
    assert image.array.shape == (361, 361, 57) and image.source.bits_stored == 8


def _cjdata(rng):
    image = rng.integers(0, 4000, size=(32, 24)).astype(np.int16)
    mask = np.zeros((32, 24), dtype=np.uint8)
    mask[10:20, 5:9] = 1
    return image, mask


def test_mat_v5_figshare_layout(tmp_path):
    import scipy.io

    image, mask = _cjdata(np.random.default_rng(3))
    cj = {"image": image, "tumorMask": mask, "label": 2.0, "PID": "100360"}
    scipy.io.savemat(tmp_path / "1.mat", {"cjdata": cj})
    result = read(tmp_path / "1.mat")
    np.testing.assert_array_equal(result.array, image)
    np.testing.assert_array_equal(result.mask, mask.astype(bool))
    assert result.metadata["label"] == 2 and result.metadata["subject_id"] == "100360"


def test_mat_v73_figshare_layout(tmp_path):
    import h5py

    image, mask = _cjdata(np.random.default_rng(4))
    path = tmp_path / "2.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        group = f.create_group("cjdata")
        group["image"] = image.T  # MATLAB v7.3 stores arrays column-major (transposed)
        group["tumorMask"] = mask.T
        group["label"] = np.array([[3.0]])
        group["PID"] = np.array([[ord(c)] for c in "MR042"], dtype=np.uint16)
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116, b" "))
    result = read(path)
    np.testing.assert_array_equal(result.array, image)
    np.testing.assert_array_equal(result.mask, mask.astype(bool))
    assert result.metadata == {"label": 3, "subject_id": "MR042"}


def test_generic_mat_volume_moves_slices_first(tmp_path):
    import scipy.io

    volume = np.random.default_rng(5).normal(size=(6, 7, 3))  # MATLAB (rows, cols, slices)
    scipy.io.savemat(tmp_path / "v.mat", {"vol": volume})
    result = read(tmp_path / "v.mat")
    np.testing.assert_allclose(result.array, np.moveaxis(volume, -1, 0).astype(np.float32))


def _volume_with_nonfinite(path):
    data = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    data[0, 0, 0] = data[1, 2, 3] = np.nan
    data[2, 2, 2], data[3, 3, 3], data[5, 4, 3] = np.inf, -np.inf, np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def test_nan_and_inf_values_are_counted_at_read(tmp_path, caplog, capsys):
    import json

    from medsr.cli import main

    path = _volume_with_nonfinite(tmp_path / "v.nii")
    caplog.set_level("WARNING")
    image = read(path)
    assert image.nonfinite_count() == 5 and image.describe()["nonfinite"] == 5
    assert "v.nii: 5 of 120 values are NaN or infinite" in caplog.text
    assert main(["info", "--json", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["nonfinite"] == 5
    assert main(["info", str(path)]) == 0
    assert any(
        line.split()[:2] == ["nonfinite", "5"] for line in capsys.readouterr().out.splitlines()
    )
    clean = tmp_path / "c.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), clean)
    assert read(clean).describe()["nonfinite"] == 0
