"""Deflated DICOM files are checked to inflate to no more than their image needs, in constant
memory, before pydicom parses them (issue 15, item 7)."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest

from medsr.errors import ImageTooLargeError
from medsr.io import read
from medsr.io.deflate import MAX_HEADER_BYTES, check_deflated, is_deflated
from medsr.io.dicom import list_series
from tests.bombs import deflate_bomb


def test_a_deflate_bomb_is_refused_before_parsing(tmp_path):
    bomb = deflate_bomb(tmp_path / "bomb.dcm", zeros_mib=1024)
    assert bomb.stat().st_size < 2 * 2**20 and is_deflated(bomb)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="64 MiB outside the pixel data") as info:
        read(bomb)
    assert "bomb.dcm" in str(info.value)
    with pytest.raises(ImageTooLargeError):  # the header-only path (series listing) too
        list_series([bomb])
    assert time.perf_counter() - start < 10  # stops at the cap, never inflates 1 GiB


def test_deflated_files_within_the_caps_still_read(tmp_path, dicom_file):
    small = deflate_bomb(tmp_path / "small.dcm", zeros_mib=4)
    reference = read(dicom_file("CT_small.dcm"))
    np.testing.assert_array_equal(read(small).array, reference.array)
    assert read(dicom_file("image_dfl.dcm")).array.shape == (512, 512)
    assert MAX_HEADER_BYTES == 64 * 2**20


def test_deflated_pixel_data_longer_than_its_image_needs(tmp_path, dicom_file):
    ds = pydicom.dcmread(dicom_file("CT_small.dcm"))
    ds.PixelData = ds.PixelData + bytes(8 * 2**20)  # 128 x 128 x 2 bytes declared
    ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    path = tmp_path / "long.dcm"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageTooLargeError, match="more than the 128 x 128 image it declares"):
        check_deflated(path, max_pixels=2**29)
    with pytest.raises(ImageTooLargeError, match="exceeds the cap of 1000"):
        check_deflated(path, max_pixels=1000)
    check_deflated(dicom_file("CT_small.dcm"), max_pixels=10)  # not deflated: not its business


def test_deidentify_checks_a_deflated_file_before_inflating_it(tmp_path):
    from medsr.io.deidentify import DeidentificationState, deidentify_file

    bomb = deflate_bomb(tmp_path / "bomb.dcm", zeros_mib=256)
    with pytest.raises(ImageTooLargeError, match="64 MiB outside the pixel data"):
        deidentify_file(bomb, tmp_path / "out.dcm", DeidentificationState(key="k"))
    with open(deflate_bomb(tmp_path / "small.dcm", zeros_mib=1), "rb") as f:  # an open file
        deidentify_file(f, tmp_path / "out.dcm", DeidentificationState(key="k"), label="x")
    assert pydicom.dcmread(tmp_path / "out.dcm").PatientIdentityRemoved == "YES"
    truncated = tmp_path / "t.dcm"
    truncated.write_bytes(bomb.read_bytes()[:150])  # cut inside the meta group
    assert not is_deflated(truncated)
