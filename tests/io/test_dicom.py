"""DICOM reading: MONOCHROME1 display window, pixel padding."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from medsr.io import read, write
from medsr.web.jobs import default_window


def linear_display(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.clip((values - (centre - width / 2)) / width, 0.0, 1.0)


@pytest.fixture
def rg1_crop(dicom_file, tmp_path):
    """A 256x256 crop of RG1_UNCR (MONOCHROME1 CR) with WindowCenter 3861 / Width 2000, a VOI
    LUT and PresentationLUTShape INVERSE."""
    ds = pydicom.dcmread(dicom_file("RG1_UNCR.dcm"))
    crop = ds.pixel_array[800:1056, 800:1056].copy()
    ds.Rows, ds.Columns = crop.shape
    ds.PixelData = crop.astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 3861, 2000
    lut = Dataset()
    lut.LUTDescriptor = [256, 0, 8]
    lut.add_new(0x00283006, "OW", np.arange(256, dtype="<u2").tobytes())  # LUTData
    ds.VOILUTSequence = DicomSequence([lut])
    ds.PresentationLUTShape = "INVERSE"
    path = tmp_path / "rg1_crop.dcm"
    ds.save_as(path)
    return path, crop


def test_monochrome1_window_is_inverted_with_the_pixels(rg1_crop, tmp_path):
    path, stored = rg1_crop
    image = read(path)
    centre, width = image.metadata["window_center"], image.metadata["window_width"]
    assert width == 2000
    assert centre == pytest.approx(32767 - 3861)  # 15 bits stored: 0 + 32767 - 3861
    # the same picture: MONOCHROME1 shows 1 - window(stored), MONOCHROME2 window(inverted)
    before = 1 - linear_display(stored.astype(np.float64), 3861, 2000)
    after = linear_display(image.array.astype(np.float64), centre, width)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert np.mean((after > 0) & (after < 1)) > 0.05  # not all saturated
    # the web app's automatic window is the same window
    assert default_window(image) == pytest.approx((centre - 1000, centre + 1000))
    # and it is what the written (MONOCHROME2) file declares
    [out] = write(image, tmp_path / "out.dcm")
    ds = pydicom.dcmread(out)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    assert float(ds.WindowCenter) == pytest.approx(centre)
    assert "VOILUTSequence" not in ds  # dropped, not rebuilt (docs/inference.md)
    assert ds.PresentationLUTShape == "IDENTITY"


def test_pixel_padding_becomes_a_physical_range(dicom_file):
    image = read(dicom_file("693_J2KR.dcm"))  # PixelPaddingValue -2000, intercept -1024
    assert image.metadata["padding"] == (-3024.0, -3024.0)
    assert np.count_nonzero(image.array == -3024.0) > 50_000


def test_monochrome1_frame_voi_windows_are_inverted_too(dicom_file, tmp_path):
    ds = pydicom.dcmread(dicom_file("eCT_Supplemental.dcm"))  # window 49 in the shared groups
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "m1.dcm"
    ds.save_as(path)
    header = read(path).source.datasets[0]
    voi = header.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0]
    # 16 bits unsigned, intercept -1024: K = 65535 - 2048
    assert float(voi.WindowCenter) == pytest.approx(65535 - 2048 - 49)
