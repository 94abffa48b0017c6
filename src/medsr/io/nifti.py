"""NIfTI-1/2 reading and writing with the affine.

nibabel's array axes are (i, j, k) with a RAS+ affine; medsr's are (Z, Y, X) = (k, j, i) in LPS.
The header is checked before any voxel is read, so a header declaring an absurd size fails fast.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

from medsr.errors import CorruptFileError, ImageTooLargeError, UnsupportedFormatError, WriteError
from medsr.io.image import Image, Source

log = logging.getLogger(__name__)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def read(path: Path, *, max_pixels: int) -> Image:
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except (nib.filebasedimages.ImageFileError, ValueError, EOFError, OSError) as error:
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
    _check_size_on_disk(path, header, count * dtype.itemsize)
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


def _check_size_on_disk(path: Path, header, data_bytes: int) -> None:
    """For uncompressed files, the file must hold the declared voxels (truncation check)."""
    if path.name.lower().endswith(".gz"):
        return
    offset = int(header.get("vox_offset", 352) or 352)
    size = path.stat().st_size
    if size < offset + data_bytes:
        raise CorruptFileError(
            path, f"file has {size} bytes but the header declares {offset + data_bytes} (truncated)"
        )


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
