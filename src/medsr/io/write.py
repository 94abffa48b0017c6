"""``write(image, path, like=source)``: DICOM (derived series), NIfTI, PNG, TIFF, NPY, NPZ.

What each writer can store: :data:`VOLUME_FORMATS` (which hold a volume), :func:`stored_range`
(which values the source's bit depth keeps) and :func:`fit_to_output` (an image clipped to
them). The DICOM writer (and pydicom) is imported when the first DICOM is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medsr.errors import WriteError
from medsr.io import formats, nifti
from medsr.io.image import Image, Source
from medsr.io.read import suffix_of
from medsr.tempfiles import create_temp, file_mode

if TYPE_CHECKING:
    from medsr.io.deidentify import DeidentificationState
    from medsr.io.dicom_write import Finalize

log = logging.getLogger(__name__)

WRITABLE = ("dicom", "nifti", "png", "tiff", "npy", "npz")
VOLUME_FORMATS = ("dicom", "nifti", "tiff", "npy", "npz")
"""The formats that hold a volume ``(Z, Y, X)``; a PNG is one 2D image."""
SUFFIXES = {
    "dicom": ".dcm",
    "nifti": ".nii.gz",
    "png": ".png",
    "tiff": ".tif",
    "npy": ".npy",
    "npz": ".npz",
}
_BY_SUFFIX = {
    ".dcm": "dicom",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".npy": "npy",
    ".npz": "npz",
}


def format_for(path: Path, format: str | None = None) -> str:
    """The output format: given explicitly, else from the suffix; a folder path means DICOM."""
    if format is not None:
        if format not in WRITABLE:
            raise WriteError(path, f"unknown output format {format!r}; choose from {WRITABLE}")
        return format
    suffix = suffix_of(path)
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix == "":
        return "dicom"
    raise WriteError(
        path, f"cannot tell the format from the suffix {suffix!r}; use one of {sorted(_BY_SUFFIX)}"
    )


def write(
    image: Image,
    path: str | os.PathLike,
    *,
    like: Image | Source | None = None,
    format: str | None = None,
    description: str = "",
    overwrite: bool = False,
    deidentify: DeidentificationState | None = None,
) -> list[Path]:
    """Write ``image``; returns the files written.

    ``like`` is the image (or its ``Source``) whose header the output derives from; by default
    the image's own source. DICOM output is a derived series: a volume goes into the folder
    ``path`` (one file per slice) unless its source was one multi-frame file; a 2D image into the
    file ``path``. Existing files are not replaced unless ``overwrite``. With ``deidentify``
    (one state per run, so UIDs map consistently) DICOM output gets the PS3.15 Basic
    Application Level Confidentiality Profile; other formats carry no identifiers.
    """
    path = Path(path)
    fmt = format_for(path, format)
    source = like.source if isinstance(like, Image) else like if like is not None else image.source
    if fmt == "dicom":
        finalize = None
        if deidentify is not None:
            from medsr.io.deidentify import deidentify_dataset

            def finalize(ds, state=deidentify):
                deidentify_dataset(ds, state, label=path.name)

        return _write_dicom(
            image, path, source, description=description, overwrite=overwrite, finalize=finalize
        )
    if path.exists() and not overwrite:
        raise WriteError(path, "already exists (pass overwrite to replace it)")
    image_for_values = image if source is image.source else image.replace(source=source)
    writers: dict[str, Callable[[Image, Path], None]] = {
        "nifti": nifti.write,
        "png": formats.write_png,
        "tiff": formats.write_tiff,
        "npy": formats.write_npy,
        "npz": formats.write_npz,
    }
    _atomic(path, lambda tmp: writers[fmt](image_for_values, tmp))
    return [path]


def _atomic(path: Path, write_to: Callable[[Path], None]) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.

    The file gets the mode of any new file (``0o666 & ~umask``); a folder that cannot be
    written, a full disk and the like raise :class:`WriteError` naming ``path`` and the cause.
    """
    tmp = create_temp(path, prefix=".medsr-", suffix=suffix_of(path))
    try:
        write_to(tmp)
        os.chmod(tmp, file_mode())  # in case the writer made its file anew
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(error, OSError):
            raise WriteError(path, f"could not be written: {error.strerror or error}") from error
        raise


def _write_dicom(
    image: Image,
    path: Path,
    source: Source | None,
    *,
    description: str,
    overwrite: bool,
    finalize: Finalize | None,
) -> list[Path]:
    from medsr.io import dicom_write

    is_file = suffix_of(path) in (".dcm", ".dicom", ".ima")
    with dicom_write.strict_writing():
        if source is None or source.format != "dicom" or not source.datasets:
            if is_file and path.exists() and not overwrite:
                raise WriteError(path, "already exists (pass overwrite to replace it)")
            return dicom_write.write_scratch(
                image, path, as_series=not is_file, overwrite=overwrite, finalize=finalize
            )
        datasets = source.datasets
        if source.frame_order is not None:
            target = path if is_file else path / "IM00001.dcm"
            if target.exists() and not overwrite:
                raise WriteError(target, "already exists (pass overwrite to replace it)")
            return dicom_write.write_multiframe(
                image,
                target,
                template=datasets[0],
                frame_order=source.frame_order,
                description=description,
                finalize=finalize,
            )
        if image.is_volume or not is_file:
            if is_file:
                raise WriteError(
                    path,
                    f"a volume of {image.spatial_shape[0]} slices is written as a series into a "
                    "folder: give a folder path (no .dcm suffix)",
                )
            return dicom_write.write_series(
                image,
                path,
                templates=datasets,
                description=description,
                overwrite=overwrite,
                finalize=finalize,
            )
        if path.exists() and not overwrite:
            raise WriteError(path, "already exists (pass overwrite to replace it)")
        return dicom_write.write_single(
            image, path, template=datasets[0], description=description, finalize=finalize
        )


# -- what a writer can store ----------------------------------------------------------------------
def stored_range(image: Image, fmt: str) -> tuple[float, float, bool] | None:
    """``(low, high, integer)``: the physical values that writing ``image`` as ``fmt`` can keep,
    when the output keeps the source's integer bit depth; None for float output.

    DICOM (from a DICOM source): the stored range through RescaleSlope/Intercept (the writer
    rounds). PNG/TIFF from an integer PNG/JPEG/TIFF, NIfTI from an integer NIfTI: the
    integer range of the source's bit depth (values are rounded here).
    """
    src = image.source
    if src is None or image.color:
        return None
    if fmt == "dicom" and src.format == "dicom" and src.datasets:
        from medsr.io.dicom_write import rescale, stored_integer_range

        ds = src.datasets[0]
        low, high, _ = stored_integer_range(ds)
        slope, intercept = rescale(ds)
        ends = sorted((intercept + slope * low, intercept + slope * high))
        return ends[0], ends[1], False
    same_kind = (fmt == "nifti" and src.format == "nifti") or (
        fmt in ("png", "tiff") and src.format in ("png", "jpeg", "tiff")
    )
    if not same_kind or src.bits_stored is None:
        return None
    bits = src.bits_stored
    if src.signed:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1, True
    return 0.0, 2.0**bits - 1, True


def fit_to_output(image: Image, fmt: str) -> tuple[Image, int]:
    """``image`` clipped (and rounded, for integer formats) to what ``fmt`` keeps of the
    source's bit depth (:func:`stored_range`), and the number of pixels clipped.

    SR overshoots (interpolation ringing, a network's output) can leave the stored range, e.g.
    below -1024 HU next to air. Without this, PNG/TIFF writers would rescale non-integer
    values min..max (changing every intensity) and NIfTI would clip silently.
    """
    limits = stored_range(image, fmt)
    if limits is None:
        return image, 0
    low, high, integer = limits
    array = image.array
    clipped = int(np.count_nonzero((array < low) | (array > high)))
    out = np.clip(array, low, high)
    if integer:
        out = np.rint(out, out=out)
    if clipped:
        log.info(
            "%d pixel(s) (%.2f%%) of the output fell outside %g..%g, the range of the "
            "source's bit depth, and were clipped",
            clipped,
            100.0 * clipped / array.size,
            low,
            high,
        )
    return image.replace(array=out), clipped
