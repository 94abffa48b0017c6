"""Small synthetic datasets for the data pipeline tests (written with medsr.io / numpy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medsr.io import Image, write


def blob_volume(
    shape: tuple[int, int, int] = (10, 24, 28), *, seed: int = 0, blank: int = 2
) -> np.ndarray:
    """A noisy ellipsoid (uint16, 100..1100) on a zero background; the first and last
    ``blank`` slices along axis 0 are all zero."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    inside = (z / 1.1) ** 2 + (y / 0.8) ** 2 + (x / 0.8) ** 2 < 1
    volume = np.where(inside, 600 + 400 * np.sin(4 * x + 3 * y) + rng.normal(0, 50, shape), 0)
    volume = np.clip(volume, 0, None).astype(np.uint16)
    if blank:
        volume[:blank] = 0
        volume[-blank:] = 0
    return volume


def write_nifti(volume: np.ndarray, path: Path, *, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write(Image(array=volume.astype(np.float32), spacing=spacing), path)
    return path


def make_brats_like(root: Path, patients: int = 4, shape=(10, 24, 28)) -> Path:
    """``root/patNNNN/{Flair,T1c}.nii.gz`` + ``brainmask.nii.gz`` per patient."""
    for p in range(patients):
        folder = root / f"pat{p + 1:04d}"
        flair = blob_volume(shape, seed=2 * p)
        write_nifti(flair, folder / "Flair.nii.gz")
        write_nifti(blob_volume(shape, seed=2 * p + 1), folder / "T1c.nii.gz")
        write_nifti((flair > 0).astype(np.float32), folder / "brainmask.nii.gz")
    return root


def make_npz_folder(root: Path, names: list[str], shape=(20, 24, 9)) -> Path:
    """``root/NAME.npz`` with key ``image`` of shape ``(H, W, S)`` (slices last, like spine)."""
    root.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        zyx = blob_volume((shape[2], shape[0], shape[1]), seed=100 + k, blank=1)
        np.savez(root / f"{name}.npz", image=np.moveaxis(zyx, 0, -1).astype(np.uint8) // 5)
    return root


def write_dicom_series(
    template: Path, folder: Path, volume: np.ndarray, *, patient_id: str, spacing: float = 2.0
) -> Path:
    """A series of ``volume`` (Z, 64, 64) slices from a 64 x 64 MR template, one PatientID."""
    ds0 = pydicom.dcmread(template)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, frame_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    for k, plane in enumerate(volume):
        ds = ds0.copy()
        ds.PatientID = patient_id
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [0.0, 0.0, k * spacing]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        pixels = ds.pixel_array.copy()
        pixels[:] = plane.astype(pixels.dtype)
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm")
    return folder


@pytest.fixture
def brats_like(tmp_path: Path) -> Path:
    return make_brats_like(tmp_path / "brain-mri")
