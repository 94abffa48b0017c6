"""NIfTI-1/2 reading and writing with the affine.

nibabel's array axes are (i, j, k) with a RAS+ affine; medsr's are (Z, Y, X) = (k, j, i) in LPS.
The header is checked before any voxel is read, so a header declaring an absurd size fails fast.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from medsr.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError, WriteError
from medsr.io.image import Image, Source

log = logging.getLogger(__name__)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


# Bytes per voxel of the NIfTI data type codes medsr reads (integers and reals).
NIFTI_VOXEL_BYTES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8}


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def layout(path: Path) -> tuple[tuple[int, ...], int, int]:
    """``(shape, bytes per voxel, offset of the voxels)`` from a NIfTI-1/2 header.

    Only the header is read (for a gzipped file, only its first 540 bytes are inflated), so a
    file declaring an absurd size costs nothing. Raises ``CorruptFileError`` for an invalid
    header (``dim[0]`` outside 1-7, a dimension below 1) and ``UnsupportedFormatError`` for a
    data type medsr does not read.
    """
    try:
        if is_gzip(path):
            with gzip.open(path, "rb") as f:
                head = f.read(540)
        else:
            with open(path, "rb") as f:
                head = f.read(540)
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptFileError(path, f"the NIfTI header cannot be read ({error})") from None
    if len(head) < 348:
        raise CorruptFileError(path, f"the NIfTI header is truncated ({len(head)} of 348 bytes)")
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0]
        if size == 348:
            dim = struct.unpack(endian + "8h", head[40:56])
            datatype = struct.unpack(endian + "h", head[70:72])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if size == 540 and len(head) >= 540:
            dim = struct.unpack(endian + "8q", head[16:80])
            datatype = struct.unpack(endian + "h", head[12:14])[0]
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        raise UnsupportedFormatError(path, "not a NIfTI-1 or NIfTI-2 header")
    ndim = int(dim[0])
    if not 1 <= ndim <= 7:
        raise CorruptFileError(
            path, f"the header declares dim[0] = {ndim} dimensions; NIfTI allows 1 to 7"
        )
    shape = tuple(int(n) for n in dim[1 : ndim + 1])
    if any(n < 1 for n in shape):
        raise CorruptFileError(path, f"the header declares an invalid shape {list(shape)}")
    if datatype not in NIFTI_VOXEL_BYTES:
        raise UnsupportedFormatError(
            path,
            f"NIfTI data type code {datatype} is not supported (integer and real types only: "
            f"codes {', '.join(map(str, sorted(NIFTI_VOXEL_BYTES)))})",
        )
    return shape, NIFTI_VOXEL_BYTES[datatype], max(int(offset), 0)


def check_layout(path: Path, *, max_pixels: int) -> tuple[int, ...]:
    """The shape a NIfTI file declares, checked before any voxel is allocated: against
    ``max_pixels``, and against the bytes the file holds (for a gzipped file, the inflated
    stream is counted in 1 MiB chunks, not kept), so a tiny file declaring a huge volume is
    refused in constant memory."""
    shape, voxel_bytes, offset = layout(path)
    count = math.prod(shape)
    if count > max_pixels:
        raise ImageTooLargeError(
            path,
            f"header declares {'x'.join(map(str, shape))} = {count} voxels, over the cap of "
            f"{max_pixels}",
        )
    needed = offset + count * voxel_bytes
    have = _gzip_length(path, needed) if is_gzip(path) else path.stat().st_size
    if have < needed:
        where = "inflates to" if is_gzip(path) else "has"
        raise CorruptFileError(
            path, f"file {where} {have} bytes but the header declares {needed} (truncated)"
        )
    return shape


def _gzip_length(path: Path, enough: int) -> int:
    """Bytes the gzip stream inflates to, counted up to ``enough`` (then it stops)."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while total < enough and (chunk := f.read(min(1 << 20, enough - total))):
                total += len(chunk)
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptFileError(path, f"the gzip stream is damaged or cut short ({error})") from None
    return total


def read(path: Path, *, max_pixels: int) -> Image:
    import nibabel as nib

    check_layout(path, max_pixels=max_pixels)
    try:
        img = nib.load(str(path))
    except (
        nib.filebasedimages.ImageFileError,
        nib.spatialimages.HeaderDataError,
        ValueError,
        EOFError,
        OSError,
    ) as error:
        raise CorruptFileError(path, f"not a readable NIfTI file ({error})") from error
    header = img.header
    shape = tuple(int(n) for n in img.shape)
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise UnsupportedFormatError(
            path, f"NIfTI with shape {shape}: only 2D/3D images are supported (split the 4D series)"
        )
    shape = ((*shape, 1, 1, 1))[:3]
    if any(n <= 0 for n in shape):
        raise CorruptFileError(path, f"header declares an invalid shape {shape}")
    count = int(np.prod(shape, dtype=np.int64))
    if count > max_pixels:
        raise ImageTooLargeError(
            path, f"header declares {shape} = {count} voxels, over the cap of {max_pixels}"
        )
    dtype = header.get_data_dtype()
    try:
        data = img.get_fdata(dtype=np.float32)
    except (EOFError, OSError, ValueError, gzip.BadGzipFile, MemoryError) as error:
        raise CorruptFileError(path, f"voxel data is truncated or malformed ({error})") from error
    data = data.reshape(shape)
    zooms = [float(z) for z in ((*tuple(header.get_zooms()), 1.0, 1.0, 1.0))[:3]]
    affine = np.asarray(img.affine, dtype=np.float64)
    linear = RAS_TO_LPS @ affine[:3, :3]
    norms = np.linalg.norm(linear, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(linear)):
        raise CorruptFileError(path, f"header has a degenerate affine {affine.tolist()}")
    spacing_ijk = norms
    direction_ijk = linear / norms
    if not np.allclose(spacing_ijk, zooms, rtol=1e-3, atol=1e-4):
        log.info(
            "%s: affine column norms %s differ from pixdim %s; using the affine",
            path.name,
            spacing_ijk.round(4).tolist(),
            zooms,
        )
    origin = RAS_TO_LPS @ affine[:3, 3]
    integer = np.issubdtype(dtype, np.integer)
    slope, inter = header.get_slope_inter() if hasattr(header, "get_slope_inter") else (None, None)
    scaled = slope not in (None, 1.0) or inter not in (None, 0.0)
    source = Source(
        format="nifti",
        path=path,
        stored_dtype=str(dtype),
        bits_stored=int(dtype.itemsize * 8) if integer and not scaled else None,
        signed=bool(integer and np.issubdtype(dtype, np.signedinteger)),
        header=header.copy(),
    )
    array = np.ascontiguousarray(np.transpose(data, (2, 1, 0)))
    spacing = tuple(spacing_ijk[::-1].tolist())
    direction = direction_ijk[:, ::-1]
    metadata = {}
    if array.shape[0] == 1:  # a single slice is a 2D image (so 2D -> NIfTI -> 2D round-trips)
        metadata["slice_thickness"] = spacing[0]
        array, spacing, direction = array[0], spacing[1:], direction[:, 1:]
    return Image(
        array=array,
        spacing=spacing,
        origin=tuple(origin.tolist()),
        direction=direction,
        modality=_modality_from_header(header),
        source=source,
        metadata=metadata,
    )


def _modality_from_header(header) -> str:
    """NIfTI has no modality field; use the description only when it plainly names one."""
    try:
        descrip = bytes(header["descrip"]).decode("ascii", "ignore").upper()
    except (KeyError, TypeError):
        return "OT"
    for modality in ("CT", "MR", "PT"):
        if f"MODALITY={modality}" in descrip:
            return modality
    return "OT"


def write(image: Image, path: Path) -> None:
    """Write NIfTI-1 with the affine of the image grid; integer source types are kept."""
    import nibabel as nib

    if image.color:
        raise WriteError(path, "colour images cannot be written as NIfTI; use PNG or TIFF")
    array = image.array if image.is_volume else image.array[None]
    data = np.transpose(array, (2, 1, 0))
    affine = np.eye(4)
    affine[:3, :3] = RAS_TO_LPS @ (image.direction_3d() * np.asarray(image.spacing_3d()))
    affine[:3, 3] = RAS_TO_LPS @ np.asarray(image.origin)
    affine = affine[:, [2, 1, 0, 3]]
    src = image.source
    out_dtype = np.float32
    if src is not None and src.format == "nifti" and src.bits_stored is not None:
        out_dtype = np.dtype(src.stored_dtype)
    if np.issubdtype(out_dtype, np.integer):
        info = np.iinfo(out_dtype)
        data = np.clip(np.rint(data), info.min, info.max).astype(out_dtype)
    else:
        data = data.astype(np.float32)
    nii = nib.Nifti1Image(data, affine)
    nii.header.set_xyzt_units("mm", "sec")
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    if image.modality != "OT":
        nii.header["descrip"] = f"medsr modality={image.modality}"[:79].encode()
    nib.save(nii, str(path))
