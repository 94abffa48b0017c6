"""Fixtures for the web app: small real DICOM inputs and an app with fast settings."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.test_privacy import SECRETS


@pytest.fixture
def ct_file(dicom_file, tmp_path) -> Path:
    """CT_small.dcm (128x128 CT) with known identifiers (to check privacy)."""
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    for keyword, value in SECRETS.items():
        setattr(ds, keyword, value)
    path = tmp_path / "ct.dcm"
    ds.save_as(path)
    return path


def small_series(ct_path: Path, folder: Path, slices: int = 3) -> list[Path]:
    """A series of ``slices`` 128x128 CT slices 2 mm apart, each a shifted copy of CT_small."""
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(ct_path)
    series_uid = pydicom.uid.generate_uid()
    paths = []
    for k in range(slices):
        ds = template.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.InstanceNumber = k + 1
        pixels = np.roll(template.pixel_array, 4 * k, axis=1)
        ds.PixelData = pixels.astype(template.pixel_array.dtype).tobytes()
        path = folder / f"slice{k}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def series_zip(ct_file, tmp_path) -> bytes:
    paths = small_series(ct_file, tmp_path / "series")
    return zip_bytes({f"study/series/{p.name}": p.read_bytes() for p in paths})
