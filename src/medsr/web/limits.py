"""What an upload may be, checked before any image is decoded.

Every rejection is an :class:`UploadRejected` with the HTTP status the app returns (400,
413 or 415) and a message for the person who uploaded the file. The checks here are cheap
and run on headers only (zip directory, NIfTI header, magic bytes); the pixel cap itself
is passed to :func:`medsr.io.read` too, which checks DICOM/PNG/TIFF headers before decoding.
"""

from __future__ import annotations

import tempfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from medsr.errors import FileError, MedsrError
from medsr.io.read import SUFFIX_FORMATS, sniff, suffix_of

__all__ = [
    "UPLOAD_KINDS",
    "Limits",
    "UploadRejected",
    "check_nifti_header",
    "classify_upload",
    "copy_limited",
    "extract_zip",
]

UPLOAD_KINDS: dict[str, str] = {
    "dicom": "a DICOM file (.dcm)",
    "dicom-zip": "a zipped DICOM series (.zip)",
    "nifti": "a NIfTI volume (.nii, .nii.gz)",
    "png": "a PNG image",
    "jpeg": "a JPEG image",
    "tiff": "a TIFF image",
}
"""The kinds of upload the web app accepts, with how the page names them."""

_SUFFIX_KIND = {suffix: fmt for suffix, fmt in SUFFIX_FORMATS.items() if fmt in UPLOAD_KINDS} | {
    ".zip": "dicom-zip"
}
"""Upload kind by file-name suffix: the readable formats the app accepts, plus zipped series."""


class UploadRejected(MedsrError):
    """An upload the app refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    """Caps on what one upload may hold.

    ``max_upload_bytes``: the request body (413 beyond it). ``max_pixels``: pixels (voxels)
    of the input; the output is ``scale**2`` times larger, so ``max_output_pixels`` caps that
    too. ``max_zip_members``, ``max_zip_bytes`` (total uncompressed) and
    ``max_zip_ratio`` (uncompressed / compressed, per member) stop zip bombs.
    """

    max_upload_bytes: int = 512 * 2**20
    max_pixels: int = 64_000_000
    max_output_pixels: int = 256 * 2**20
    max_zip_members: int = 2000
    max_zip_bytes: int = 1024 * 2**20
    max_zip_ratio: float = 200.0

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_output_pixels", "max_zip_members"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


def _suffix(name: str) -> str:
    return suffix_of(PurePosixPath(name))


def _accepted() -> str:
    return "; ".join(UPLOAD_KINDS.values())


def classify_upload(name: str, path: Path | BinaryIO) -> str:
    """The kind of an uploaded file (a key of :data:`UPLOAD_KINDS`) from its content, which
    must agree with its name's suffix; ``UploadRejected`` (415) for anything else. ``path``
    may be an open binary file (left at its start)."""
    if isinstance(path, Path):
        with open(path, "rb") as f:
            return classify_upload(name, f)
    path.seek(0)
    head = path.read(8)
    path.seek(0)
    if not head:
        raise UploadRejected(400, f"{_safe_label(name)} is empty")
    detected = "dicom-zip" if head[:4] == b"PK\x03\x04" else sniff(path)
    if detected is None and _SUFFIX_KIND.get(_suffix(name)) == "dicom":
        # Old DICOM files start directly with a group 0008 element (little endian).
        detected = "dicom" if len(head) == 8 and head[:2] == b"\x08\x00" else None
    if detected not in UPLOAD_KINDS:
        raise UploadRejected(
            415,
            f"{_safe_label(name)} is not a file type this app accepts (its content is "
            f"{detected or 'not recognised'}); upload {_accepted()}",
        )
    expected = _SUFFIX_KIND.get(_suffix(name))
    if expected is not None and expected != detected:
        raise UploadRejected(
            415,
            f"{_safe_label(name)} is named like {UPLOAD_KINDS[expected]} but its content is "
            f"{UPLOAD_KINDS[detected]}; rename it or upload the right file",
        )
    return detected


def _safe_label(name: str) -> str:
    """A file name fit to quote in a message: the base name, printable, at most 80 chars."""
    base = PurePosixPath(name.replace("\\", "/")).name or "the file"
    text = "".join(c if c.isprintable() else "?" for c in base)
    return text if len(text) <= 80 else text[:77] + "..."


def extract_zip(
    path: Path | BinaryIO,
    dest: Path,
    limits: Limits,
    *,
    convert: Callable[[BinaryIO, Path, int], None] | None = None,
) -> list[Path]:
    """Extract the members of a zipped DICOM series into ``dest`` (flattened, renamed).

    The central directory is checked before anything is extracted: member count, total
    uncompressed size, compression ratio, and names (absolute paths, ``..``, drive letters
    and links are refused, not skipped: such an archive was not made by a scanner's export).
    While extracting, the bytes actually written are counted too, since a zip may lie about
    sizes. Folders, ``__MACOSX`` and hidden files are ignored; other members are kept with
    a neutral name (``0001.dcm``...), so nothing in a member name reaches the disk.

    With ``convert``, a member's bytes never get a name on disk: each is unpacked into an
    anonymous temporary file (gone when closed, or when the process dies) and
    ``convert(file, target, number)`` writes the target (the app de-identifies it there).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UploadRejected(400, f"the zip archive is damaged ({error})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_members:
            raise UploadRejected(
                413,
                f"the zip archive holds {len(infos)} members, over the limit of "
                f"{limits.max_zip_members}",
            )
        members = []
        total = 0
        for info in infos:
            name = info.filename
            pure = PurePosixPath(name.replace("\\", "/"))
            if (
                name.startswith(("/", "\\"))
                or ".." in pure.parts
                or (len(name) > 1 and name[1] == ":")
            ):
                raise UploadRejected(
                    400,
                    f"the zip archive contains an unsafe path ({_safe_label(name)!r} is absolute "
                    "or leaves the archive with '..'); refused",
                )
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise UploadRejected(400, "the zip archive contains a symbolic link; refused")
            if info.is_dir() or pure.parts[0] == "__MACOSX" or pure.name.startswith("."):
                continue
            if info.flag_bits & 0x1:
                raise UploadRejected(400, "the zip archive is encrypted; upload it unencrypted")
            total += info.file_size
            if total > limits.max_zip_bytes:
                raise UploadRejected(
                    413,
                    f"the zip archive unpacks to more than {limits.max_zip_bytes} bytes, over "
                    "the limit",
                )
            if info.file_size > 1024 and info.file_size > limits.max_zip_ratio * max(
                info.compress_size, 1
            ):
                ratio = info.file_size / max(info.compress_size, 1)
                raise UploadRejected(
                    413,
                    f"a member of the zip archive is compressed {ratio:.0f} to 1, over the "
                    f"limit of {limits.max_zip_ratio:.0f} (a zip bomb?)",
                )
            members.append(info)
        if not members:
            raise UploadRejected(400, "the zip archive holds no files")
        dest.mkdir(parents=True, exist_ok=True)
        written_total = 0
        out = []
        for k, info in enumerate(members, start=1):
            target = dest / f"{k:05d}.dcm"
            if convert is None:
                with open(target, "wb") as dst:
                    written_total += _copy_member(archive, info, dst, k, written_total, limits)
            else:
                with tempfile.TemporaryFile(dir=dest) as anonymous:
                    written_total += _copy_member(
                        archive, info, anonymous, k, written_total, limits
                    )
                    anonymous.seek(0)
                    convert(anonymous, target, k)
            out.append(target)
    return out


def _copy_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    dst: BinaryIO,
    k: int,
    before: int,
    limits: Limits,
) -> int:
    """Copy member number ``k`` to ``dst``, counting the bytes actually unpacked (a zip may
    lie about sizes); a damaged member (bad deflate stream, bad CRC) is a 400."""
    written = 0
    try:
        with archive.open(info) as src:
            while chunk := src.read(1 << 20):
                written += len(chunk)
                if written > info.file_size or before + written > limits.max_zip_bytes:
                    raise UploadRejected(
                        413, "the zip archive unpacks to more than it declares; refused"
                    )
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        raise UploadRejected(
            400, f"member {k} of the zip archive is damaged ({_zip_problem(error)}); refused"
        ) from None
    return written


def _zip_problem(error: Exception) -> str:
    text = str(error)
    if "CRC" in text:
        return "its checksum does not match its content"
    if isinstance(error, NotImplementedError):
        return "it uses a compression method this server cannot unpack"
    return "its compressed data is invalid"


def check_nifti_header(path: Path, limits: Limits) -> tuple[int, ...]:
    """The image shape a NIfTI-1/2 header declares, checked against the pixel cap and the
    bytes the file holds (a gzipped file is inflated in chunks to count them, never kept)
    before nibabel reads anything: see :func:`medsr.io.nifti.check_layout`."""
    from medsr.errors import ImageTooLargeError, UnsupportedFormatError
    from medsr.io.nifti import check_layout

    try:
        return check_layout(path, max_pixels=limits.max_pixels)
    except ImageTooLargeError as error:
        raise UploadRejected(413, "the NIfTI " + error.problem.replace("cap", "limit")) from None
    except UnsupportedFormatError as error:
        raise UploadRejected(415, "the NIfTI file is refused: " + error.problem) from None
    except FileError as error:
        raise UploadRejected(400, "the NIfTI file is refused: " + error.problem) from None


def copy_limited(src, dst: Path | BinaryIO, max_bytes: int) -> int:
    """Copy a file-like ``src`` to ``dst`` (a path, or an open binary file), refusing (413)
    more than ``max_bytes``."""
    if isinstance(dst, Path):
        with open(dst, "wb") as out:
            return copy_limited(src, out, max_bytes)
    written = 0
    while chunk := src.read(1 << 20):
        written += len(chunk)
        if written > max_bytes:
            raise UploadRejected(413, f"the upload is larger than the limit of {max_bytes} bytes")
        dst.write(chunk)
    dst.flush()
    return written
