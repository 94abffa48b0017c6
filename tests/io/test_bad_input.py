"""Every kind of broken input raises a typed medsr error that names the file and the problem."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
import sys
import zlib

import nibabel as nib
import numpy as np
import pytest

from medsr.errors import (
    CorruptFileError,
    ImageTooLargeError,
    MedsrError,
    MissingCodecError,
    NoPixelDataError,
    ReadError,
    UnsupportedFormatError,
)
from medsr.io import read
from tests.conftest import pydicom_data_dir, pydicom_test_files_dir


def test_truncated_dicom(dicom_file, tmp_path):
    data = dicom_file("CT_small.dcm").read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"cut\.dcm"):
        read(path)


def test_junk_named_dicom(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(UnsupportedFormatError, match="not a DICOM file"):
        read(path)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        read(tmp_path / "empty.png")
    with pytest.raises(ReadError, match="no such file"):
        read(tmp_path / "absent.nii.gz")


def test_misnamed_content_is_refused(tmp_path):
    (tmp_path / "scan.png").write_text("hello, this is text")
    with pytest.raises(UnsupportedFormatError, match="not PNG"):
        read(tmp_path / "scan.png")


def test_dicom_without_pixel_data(dicom_file):
    with pytest.raises(NoPixelDataError, match="RT Plan"):
        read(dicom_file("rtplan.dcm"))


def test_nifti_header_declaring_an_absurd_size(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((30000, 30000, 30000))
    path = tmp_path / "huge.nii"
    with open(path, "wb") as f:
        f.write(header.binaryblock)
        f.write(b"\0" * (352 - len(header.binaryblock)))
        f.write(b"\0" * 1000)
    with pytest.raises(ImageTooLargeError, match="voxels"):
        read(path)


def test_truncated_nifti(tmp_path):
    path = tmp_path / "vol.nii"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), np.eye(4)), path)
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(CorruptFileError, match="truncated"):
        read(path)
    gz = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(20, 20, 20).astype(np.float32), np.eye(4)), gz)
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=r"vol\.nii\.gz"):
        read(gz)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def test_png_decompression_bomb_is_refused_before_decoding(tmp_path):
    # A tiny file declaring 100000 x 100000 pixels: decoding it would need 10 GB.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
    path = tmp_path / "bomb.png"
    path.write_bytes(data + _png_chunk(b"IEND", b""))
    with pytest.raises(ImageTooLargeError, match="bomb"):
        read(path)


def test_pixel_cap_is_configurable(dicom_file):
    with pytest.raises(ImageTooLargeError, match="cap"):
        read(dicom_file("CT_small.dcm"), max_pixels=1000)


def test_missing_codec_is_named(dicom_file):
    """With the JPEG 2000 plugins hidden, a J2K file names its transfer syntax and the fix."""
    path = dicom_file("MR_small_jp2klossless.dcm")
    code = (
        "import sys\n"
        "for name in ('openjpeg', 'gdcm', 'pylibjpeg', 'libjpeg', 'rle', 'PIL'):\n"
        "    sys.modules[name] = None\n"
        "from medsr.errors import MissingCodecError\n"
        "from medsr.io import read\n"
        "try:\n"
        f"    read({str(path)!r})\n"
        "except MissingCodecError as error:\n"
        "    print('MISSING', error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "MISSING" in out.stdout and "JPEG 2000" in out.stdout and "pip install" in out.stdout
    assert MissingCodecError.__mro__[1] is ReadError


# Every broken file shipped with pydicom and pydicom-data.
BROKEN = [
    "MR_truncated.dcm",
    "emri_small_jpeg_2k_lossless_too_short.dcm",
    "rtplan_truncated.dcm",
    "JPEG-lossy.dcm",
    "JPEG2000-embedded-sequence-delimiter.dcm",
    "badVR.dcm",
    "no_meta.dcm",
    "meta_missing_tsyntax.dcm",
]


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_from_pydicom_data(dicom_file, name):
    path = dicom_file(name)
    with pytest.raises(MedsrError) as info:
        read(path)
    assert name in str(info.value)


def test_every_pydicom_file_reads_or_fails_cleanly():
    """No DICOM test file makes medsr crash with anything but a MedsrError."""
    folders = [pydicom_test_files_dir(), pydicom_data_dir()]
    files = sorted(p for f in folders if f is not None for p in f.glob("*.dcm"))
    assert len(files) > 50
    outcomes = {"read": 0, "refused": 0}
    for path in files:
        try:
            image = read(path)
        except MedsrError as error:
            assert path.name in str(error)
            outcomes["refused"] += 1
        else:
            assert np.isfinite(image.array).all(), path.name
            outcomes["read"] += 1
    assert outcomes["read"] > 80


def test_cli_reports_bad_input_without_traceback(tmp_path, dicom_file):
    shutil.copy(dicom_file("MR_truncated.dcm"), tmp_path / "bad.dcm")
    out = subprocess.run(
        [sys.executable, "-m", "medsr", "info", str(tmp_path / "bad.dcm")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "bad.dcm" in out.stderr and "truncated" in out.stderr
    assert "Traceback" not in out.stderr


def _nifti_with_dim0(path, ndim: int):
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    data = bytearray(path.read_bytes())
    data[40:42] = struct.pack("<h", ndim)
    path.write_bytes(bytes(data))
    return path


def test_nifti_with_an_invalid_dim0_is_a_clear_error(tmp_path):
    for ndim in (9, 0, -1):
        path = _nifti_with_dim0(tmp_path / f"d{ndim}.nii", ndim)
        with pytest.raises(CorruptFileError, match=rf"dim\[0\] = {ndim} dimensions; NIfTI allows"):
            read(path)
    out = subprocess.run(
        [sys.executable, "-m", "medsr", "info", str(tmp_path / "d9.nii")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "d9.nii" in out.stderr and "dim[0] = 9" in out.stderr
    assert "Traceback" not in out.stderr and "bug" not in out.stderr


def test_nifti_gz_declaring_more_than_it_holds_is_refused_before_allocating(tmp_path):
    import tracemalloc

    from tests.bombs import nifti_gz_bomb

    for side in (400, 800):  # 512 MB and 4 GB of float64 declared in 52 bytes
        bomb = nifti_gz_bomb(tmp_path / f"b{side}.nii.gz", side)
        assert bomb.stat().st_size < 100
        tracemalloc.start()
        with pytest.raises(CorruptFileError, match="inflates to 352 bytes but the header"):
            read(bomb)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 16 * 2**20, peak
    # a real .nii.gz cut short is refused the same way, before nibabel allocates
    gz = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(30, 30, 30), np.eye(4)), gz)
    data = gzip.decompress(gz.read_bytes())
    gz.write_bytes(gzip.compress(data[: len(data) - 8]))
    with pytest.raises(CorruptFileError, match="truncated"):
        read(gz)
