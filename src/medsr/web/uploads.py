"""Uploads, checked and read: the one place where an uploaded file becomes an Image.

:class:`UploadReader` holds the limits and the de-identification state. ``accept`` checks
the bytes as they arrive (size, type, zip members, NIfTI header; de-identifying DICOM before
anything else reads it), stores them as a job's input and reads them; ``read_stored`` reads
an accepted upload again (a queued job after a restart). Rejections are
:class:`~medsr.web.limits.UploadRejected` with the HTTP status to answer.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from medsr.errors import (
    FileError,
    ImageTooLargeError,
    MedsrError,
    MissingCodecError,
    UnsupportedFormatError,
)
from medsr.io import read
from medsr.io.image import Image
from medsr.web.limits import (
    Limits,
    UploadRejected,
    check_nifti_header,
    classify_upload,
    copy_limited,
    extract_zip,
)

__all__ = ["UploadReader", "problem", "read_status"]

_UPLOAD_NAMES = {
    "dicom": "input.dcm",
    "png": "input.png",
    "jpeg": "input.jpg",
    "tiff": "input.tif",
}


class UploadReader:
    """Checks, stores and reads uploads under ``limits``; de-identifies DICOM uploads on
    arrival when ``deid_state`` (a :class:`medsr.io.deidentify.DeidentificationState`) is
    given."""

    def __init__(self, limits: Limits, deid_state=None) -> None:
        self.limits = limits
        self.deid_state = deid_state

    @property
    def deidentifies(self) -> bool:
        return self.deid_state is not None

    def accept(
        self,
        source: BinaryIO,
        filename: str,
        upload: Path,
        *,
        scale: int,
        growth: Callable[[Image], float] | None = None,
    ) -> tuple[str, Image]:
        """Store the upload read from ``source`` in the folder ``upload`` (``input.<ext>``,
        or ``series/`` for a zipped series) and read it; returns (kind, image). The result's
        size, the image's pixels times ``scale**2`` (in-plane SR) or ``growth(image)`` when
        given (through-plane: the growth of one axis), is checked against the output cap
        (``scale=1``: no result is made from it, e.g. a reference image)."""
        limits = self.limits
        if self.deid_state is None:
            raw = upload / "received"
            copy_limited(source, raw, limits.max_upload_bytes)
            with open(raw, "rb") as received:
                path, kind = self._store(filename, received, upload)
            raw.unlink(missing_ok=True)
        else:
            # The original bytes (with the patient's identifiers) get no name on disk: an
            # anonymous temporary file vanishes when closed, or when the process dies.
            with tempfile.TemporaryFile(dir=upload) as received:
                copy_limited(source, received, limits.max_upload_bytes)
                path, kind = self._store(filename, received, upload)
        image = read(path, max_pixels=limits.max_pixels)
        bad = image.nonfinite_count()
        if bad:
            raise UploadRejected(
                400,
                f"the image has {bad} NaN or infinite values (of {image.array.size}); no model "
                "can upscale them: replace them with numbers and upload it again",
            )
        factor = scale * scale if growth is None else growth(image)
        pixels = int(np.prod(image.spatial_shape) * factor)
        if pixels > limits.max_output_pixels:
            raise UploadRejected(
                413,
                f"the result would have {pixels} pixels at x{scale}, over the limit of "
                f"{limits.max_output_pixels}; upload a smaller image or choose a lower scale",
            )
        return kind, image

    def read_stored(self, upload: Path, kind: str) -> Image:
        """Read an upload that :meth:`accept` stored in ``upload`` (of this ``kind``)."""
        if kind == "dicom-zip":
            path = upload / "series"
        else:
            files = [p for p in upload.iterdir() if p.name.startswith("input")]
            if len(files) != 1:
                raise UploadRejected(400, "the upload is missing")
            path = files[0]
        if kind == "nifti":
            check_nifti_header(path, self.limits)
        return read(path, max_pixels=self.limits.max_pixels)

    def _store(self, name: str, received: BinaryIO, upload: Path) -> tuple[Path, str]:
        """Classify the received bytes and store them (de-identified DICOM when the server
        de-identifies); returns (stored path, kind)."""
        limits = self.limits
        kind = classify_upload(name, received)
        if kind == "dicom-zip":
            series = upload / "series"
            if self.deid_state is None:
                extract_zip(received, series, limits)
            else:

                def deidentify_member(member: BinaryIO, target: Path, k: int) -> None:
                    self._deidentify(member, target, f"file {k} of the zip archive")

                extract_zip(received, series, limits, convert=deidentify_member)
            check_one_series(series, limits)
            return series, kind
        if kind == "dicom" and self.deid_state is not None:
            path = upload / _UPLOAD_NAMES["dicom"]
            self._deidentify(received, path, "the DICOM file")
            return path, kind
        if kind == "nifti":
            gz = received.read(2) == b"\x1f\x8b"
            received.seek(0)
            path = upload / ("input.nii.gz" if gz else "input.nii")
        else:
            path = upload / _UPLOAD_NAMES[kind]
        with open(path, "wb") as out:
            shutil.copyfileobj(received, out, 1 << 20)
        if kind == "nifti":
            check_nifti_header(path, limits)
        return path, kind

    def _deidentify(self, src: BinaryIO, dst: Path, label: str) -> None:
        from medsr.io.deflate import check_deflated
        from medsr.io.deidentify import deidentify_file

        try:
            check_deflated(src, max_pixels=self.limits.max_pixels, label=label)  # before pydicom
            deidentify_file(src, dst, self.deid_state, label=label)
        except ImageTooLargeError as error:
            raise UploadRejected(413, f"{label}: {error.problem}") from None
        except FileError as error:
            raise UploadRejected(
                400, f"{label} could not be de-identified: {error.problem}"
            ) from None


def check_one_series(folder: Path, limits: Limits) -> None:
    """Refuse a zip of several series with a count (the reader's own message lists their
    UIDs, which are identifiers)."""
    from medsr.io.dicom import list_series

    groups = list_series(sorted(folder.iterdir()), max_pixels=limits.max_pixels)
    if len(groups) > 1:
        sizes = ", ".join(str(len(m)) for m in groups.values())
        raise UploadRejected(
            400,
            f"the zip archive holds {len(groups)} DICOM series ({sizes} files); "
            "zip one series at a time",
        )


def read_status(error: MedsrError) -> int:
    """The HTTP status for an upload that failed to read."""
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, UnsupportedFormatError | MissingCodecError):
        return 415
    return 400


def problem(error: MedsrError) -> str:
    """An error for the page: file errors without their (server-side) path."""
    return error.problem if isinstance(error, FileError) else str(error)
