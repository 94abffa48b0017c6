"""``read(path) -> Image``: any supported medical or plain image format, detected by content.

The file's first bytes decide its format (the name's suffix only has to agree), so a renamed or
truncated file gets an error that names the real problem. pydicom is imported when the first
DICOM is read, so that ``import medsr.io`` (and ``medsr --help``) stays fast.
"""

from __future__ import annotations

import gzip
import logging
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from medsr.errors import CorruptFileError, ReadError, UnsupportedFormatError
from medsr.io import formats, nifti
from medsr.io.image import MAX_PIXELS, Image

log = logging.getLogger(__name__)


SUFFIX_FORMATS = {
    ".dcm": "dicom",
    ".dicom": "dicom",
    ".ima": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".npz": "npz",
    ".mat": "mat",
}
READABLE = sorted(set(SUFFIX_FORMATS.values()))


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def sniff(path: Path | BinaryIO) -> str | None:
    """The format a file's content says it is, or None. ``path`` may also be an open binary
    file (read from its start; its position is left at the start)."""
    if not isinstance(path, str | os.PathLike):
        return _sniff_open(path)
    with open(path, "rb") as f:
        return _sniff_open(f)


def _sniff_open(f: BinaryIO) -> str | None:
    f.seek(0)
    head = f.read(1024)
    f.seek(0)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(formats.PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"MATLAB") or head[512:520] == formats.HDF5_SIGNATURE:
        return "mat"
    if len(head) >= 4 and int.from_bytes(head[:4], "little") in (348, 540):
        return "nifti"
    if len(head) >= 4 and int.from_bytes(head[:4], "big") in (348, 540):
        return "nifti"
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = gzip.GzipFile(fileobj=f, mode="rb").read(4)
        except (OSError, EOFError, zlib.error):
            return None
        finally:
            f.seek(0)
        if len(inner) == 4 and (
            int.from_bytes(inner, "little") in (348, 540)
            or int.from_bytes(inner, "big") in (348, 540)
        ):
            return "nifti"
    return None


def read(
    path: str | os.PathLike,
    *,
    max_pixels: int = MAX_PIXELS,
    series_uid: str | None = None,
    series: int | None = None,
    key: str | None = None,
    modality: str | None = None,
) -> Image:
    """Read an image or volume, in physical units with its geometry.

    ``path`` is a file (DICOM, NIfTI, PNG, JPEG, TIFF, NPY, NPZ, MAT) or a folder holding one
    DICOM series; when it holds several, ``series`` picks one by its 1-based index in
    :func:`medsr.io.series.list_folder` (or ``series_uid`` by its UID). ``key`` names the array in
    NPZ/MAT files that hold several. ``modality`` overrides the modality (formats without one
    default to ``OT``). Raises a ``medsr.errors.ReadError`` subclass naming the file and problem.
    NaN or infinite values are kept as they are, with a warning that counts them
    (:meth:`Image.nonfinite_count`); :func:`medsr.infer.upscale_image` refuses such an image.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder")
    if series is not None and series_uid is not None:
        raise ReadError(path, "give series (an index) or series_uid, not both")
    if path.is_dir():
        from medsr.io import dicom

        if series is not None:
            from medsr.io.series import list_folder, pick

            series_uid = pick(path, list_folder(path), series).uid
        image = dicom.read_series(path, max_pixels=max_pixels, series_uid=series_uid)
    elif series is not None and series != 1:
        raise ReadError(path, f"series {series}: a file holds one series (--series is for folders)")
    else:
        image = _read_file(path, max_pixels=max_pixels, key=key)
    if modality is not None:
        image = image.replace(modality=modality)
    bad = image.nonfinite_count()
    if bad:
        log.warning(
            "%s: %d of %d values are NaN or infinite (medsr upscale refuses such images)",
            path.name,
            bad,
            image.array.size,
        )
    return image


def _read_file(path: Path, *, max_pixels: int, key: str | None) -> Image:
    if path.stat().st_size == 0:
        raise CorruptFileError(path, "file is empty")
    detected = sniff(path)
    expected = SUFFIX_FORMATS.get(suffix_of(path))
    if detected is None:
        # DICOM without a preamble (old files, Siemens .ima) is only recognisable by parsing.
        if expected in (None, "dicom"):
            from medsr.io import dicom

            return dicom.read_file(path, max_pixels=max_pixels)
        raise UnsupportedFormatError(
            path, f"content is not {expected.upper()} (the file may be truncated or misnamed)"
        )
    if expected is not None and expected != detected:
        log.warning(
            "%s: named like %s but its content is %s; reading it as %s",
            path.name,
            expected,
            detected,
            detected,
        )
    if detected == "dicom":
        from medsr.io import dicom

        return dicom.read_file(path, max_pixels=max_pixels)
    if detected == "nifti":
        return nifti.read(path, max_pixels=max_pixels)
    if detected in ("png", "jpeg"):
        return formats.read_pillow(path, kind=detected, max_pixels=max_pixels)
    if detected == "tiff":
        return formats.read_tiff(path, max_pixels=max_pixels)
    if detected == "npy":
        return formats.read_npy(path, max_pixels=max_pixels)
    if detected == "npz":
        return formats.read_npz(path, max_pixels=max_pixels, key=key)
    return formats.read_mat(path, max_pixels=max_pixels, key=key)
