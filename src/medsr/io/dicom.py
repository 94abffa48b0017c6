"""DICOM reading: single files, enhanced multi-frame files and series in a folder.

Pixels become physical values (Modality LUT / RescaleSlope and RescaleIntercept applied, so CT
is in HU); MONOCHROME1 is inverted in stored-value space so that brighter always means a
larger value, and its display window goes with it (:func:`invert_voi`); the bit depth
(BitsStored) and signedness are kept for writing back. PixelPaddingValue (and
PixelPaddingRangeLimit) become ``metadata["padding"]``, the physical ``(low, high)`` range of
padding values, so that super-resolution can leave padding out (see
:func:`medsr.infer.upscale.upscale_image`). Slices of a series are sorted by
ImagePositionPatient projected on the slice normal, and the slice spacing comes from those
positions, never from SliceThickness.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import format_number_as_ds

from medsr.errors import (
    CorruptFileError,
    GeometryError,
    ImageTooLargeError,
    MissingCodecError,
    MixedSeriesError,
    NoPixelDataError,
    ReadError,
    UnsupportedFormatError,
)
from medsr.io.deflate import check_deflated
from medsr.io.image import MAX_PIXELS, Image, Source

log = logging.getLogger(__name__)

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Relative tolerance on slice spacing before a series is called irregular.
SPACING_TOLERANCE = 0.02
CODEC_HINT = (
    "install the decoders with `pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg "
    "pylibjpeg-rle` or `pip install python-gdcm` (medsr[gdcm])"
)


# -- opening files ------------------------------------------------------------------------------
def has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def dcmread(
    path: Path, *, stop_before_pixels: bool = False, max_pixels: int = MAX_PIXELS
) -> Dataset:
    """Read a DICOM file, also one without the 128-byte preamble (e.g. Siemens ``.ima``).

    Files without a preamble are read with ``force=True`` and accepted only if they carry the
    attributes every image has, so arbitrary bytes are never taken for DICOM. pydicom's warning
    that the file ended early becomes a ``CorruptFileError``. A deflated file is first checked
    to inflate to no more than its image needs (``max_pixels``; see ``medsr.io.deflate``).
    """
    check_deflated(path, max_pixels=max_pixels)
    force = not has_dicom_preamble(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels, force=force)
    except InvalidDicomError as error:
        raise UnsupportedFormatError(path, f"not a DICOM file ({error})") from error
    except (EOFError, OSError, ValueError, KeyError, TypeError, OverflowError) as error:
        if force:
            raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble)") from error
        raise CorruptFileError(path, f"truncated or malformed DICOM ({error})") from error
    for warning in caught:
        text = str(warning.message)
        if "End of file reached" in text or "truncated" in text.lower():
            if force:
                raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble)")
            raise CorruptFileError(path, f"file is truncated ({text.split(' in file')[0]})")
        log.debug("%s: %s", path.name, text)
    if force:
        try:
            plausible = "SOPClassUID" in ds or ("Rows" in ds and "Columns" in ds)
        except Exception:  # garbage parsed as elements can fail in any way on access
            plausible = False
        if not plausible:
            raise UnsupportedFormatError(path, "not a DICOM file (no DICM preamble, no SOP class)")
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a TransferSyntaxUID in their meta (old or preamble-less) get the one they
    were actually read with, so the pixel decoder knows the encoding."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit is None or little is None:
        implicit, little = True, True
    uid = (
        pydicom.uid.ImplicitVRLittleEndian
        if implicit
        else pydicom.uid.ExplicitVRLittleEndian
        if little
        else pydicom.uid.ExplicitVRBigEndian
    )
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = uid


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in PIXEL_KEYWORDS)


# -- values -----------------------------------------------------------------------------------
def _float_list(value: object, n: int) -> list[float] | None:
    """A numeric multi-value as floats, or None when absent, wrong length or not finite/positive."""
    if value is None:
        return None
    try:
        values = [float(v) for v in (value if isinstance(value, Sequence) else [value])]
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(np.isfinite(values)):
        return None
    return values


def pixel_spacing(ds: Dataset, path: Path) -> tuple[float, float]:
    """(row spacing, column spacing) in mm: PixelSpacing, else ImagerPixelSpacing, else 1 mm."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        values = _float_list(ds.get(keyword), 2)
        if values is not None and all(v > 0 for v in values):
            if keyword != "PixelSpacing":
                log.info("%s: no valid PixelSpacing; using %s", path.name, keyword)
            return values[0], values[1]
    if any(k in ds for k in ("PixelSpacing", "ImagerPixelSpacing")):
        log.warning("%s: pixel spacing in the header is invalid; assuming 1 mm", path.name)
    else:
        log.info("%s: no pixel spacing in the header; assuming 1 mm", path.name)
    return 1.0, 1.0


def _orientation(value: object, path: Path) -> np.ndarray | None:
    """ImageOrientationPatient as a (3, 2) direction matrix [column dir (Y), row dir (X)]."""
    values = _float_list(value, 6)
    if values is None:
        return None
    row, col = np.asarray(values[:3]), np.asarray(values[3:])
    if not (
        np.isclose(np.linalg.norm(row), 1, atol=1e-2)
        and np.isclose(np.linalg.norm(col), 1, atol=1e-2)
    ):
        raise GeometryError(f"{path}: ImageOrientationPatient {values} is not two unit vectors")
    if abs(float(row @ col)) > 1e-2:
        raise GeometryError(f"{path}: ImageOrientationPatient {values} is not orthogonal")
    return np.column_stack([col / np.linalg.norm(col), row / np.linalg.norm(row)])


def _bits(ds: Dataset) -> tuple[int | None, bool, str]:
    """(bits stored or None for float data, signed, numpy dtype name of the stored values)."""
    if "FloatPixelData" in ds:
        return None, True, "float32"
    if "DoubleFloatPixelData" in ds:
        return None, True, "float64"
    allocated = int(ds.get("BitsAllocated", 16))
    stored = int(ds.get("BitsStored", allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    size = 8 if allocated <= 8 else 16 if allocated <= 16 else 32
    return stored, signed, f"{'int' if signed else 'uint'}{size}"


def _decode(ds: Dataset, path: Path, max_pixels: int) -> np.ndarray:
    """Stored pixel values, shape (frames, rows, cols[, 3]), with every failure named."""
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise CorruptFileError(path, f"invalid image size Rows={rows} Columns={cols}")
    if rows * cols * frames > max_pixels:
        raise ImageTooLargeError(
            path,
            f"{frames} x {rows} x {cols} = {rows * cols * frames} pixels exceeds the cap of "
            f"{max_pixels} (raise max_pixels if the file is trusted)",
        )
    if samples not in (1, 3):
        raise UnsupportedFormatError(path, f"SamplesPerPixel={samples} is not supported (1 or 3)")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        text = str(error)
        name = getattr(syntax, "name", str(syntax))
        if "exceptions were raised by all" in text:
            detail = "; ".join(line.strip() for line in text.splitlines()[1:4])
            raise CorruptFileError(
                path, f"no installed decoder could decode the {name} pixel data ({detail})"
            ) from error
        if "plugin" in text or "decod" in text.lower() or isinstance(error, NotImplementedError):
            raise MissingCodecError(
                path, f"cannot decode pixel data with transfer syntax {name}: {CODEC_HINT}"
            ) from error
        raise CorruptFileError(path, f"pixel data could not be decoded ({error})") from error
    except (ValueError, EOFError, OSError, IndexError, TypeError) as error:
        raise CorruptFileError(path, f"pixel data is truncated or malformed ({error})") from error
    arr = np.asarray(arr)
    color = samples == 3 or str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR"
    if str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        entry_bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        if entry_bits == 16:  # 16-bit palette entries: keep the 8 significant display bits
            arr = (arr >> 8).astype(np.uint8)
    expected_ndim = 2 + (frames > 1) + color
    if arr.ndim != expected_ndim:
        raise CorruptFileError(
            path, f"decoded pixel array has shape {arr.shape}, expected {expected_ndim} axes"
        )
    if frames == 1:
        arr = arr[None]
    return arr


def _frame_rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """RescaleSlope/Intercept of one frame (enhanced per-frame or shared groups, else top level)."""
    for groups in (
        (ds.get("PerFrameFunctionalGroupsSequence") or [None] * (frame + 1))[frame],
        (ds.get("SharedFunctionalGroupsSequence") or [None])[0],
    ):
        if groups is not None and "PixelValueTransformationSequence" in groups:
            item = groups.PixelValueTransformationSequence[0]
            return float(item.get("RescaleSlope", 1) or 1), float(
                item.get("RescaleIntercept", 0) or 0
            )
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def _stored_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def to_physical(ds: Dataset, stored: np.ndarray, path: Path) -> tuple[np.ndarray, bool]:
    """Physical values (float32) of stored values ``(frames, rows, cols[, 3])``.

    Returns the values and whether MONOCHROME1 was inverted.
    """
    bits_stored, signed, _ = _bits(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if stored.ndim == 4:  # colour: no modality LUT applies
        return stored.astype(np.float32), False
    inverted = False
    if photometric == "MONOCHROME1" and bits_stored is not None:
        low, high = _stored_range(bits_stored, signed)
        stored = (low + high) - stored.astype(np.int64)
        inverted = True
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut

        out = np.stack([apply_modality_lut(f, ds) for f in stored]).astype(np.float32)
        return out, inverted
    out = np.empty(stored.shape, dtype=np.float32)
    for k in range(stored.shape[0]):
        slope, intercept = _frame_rescale(ds, k)
        if slope == 0 or not np.isfinite(slope) or not np.isfinite(intercept):
            raise CorruptFileError(path, f"invalid RescaleSlope/Intercept {slope}/{intercept}")
        out[k] = stored[k].astype(np.float64) * slope + intercept
    return out, inverted


def invert_voi(ds: Dataset, path: Path) -> None:
    """Carry the VOI of a MONOCHROME1 image over to its inverted (MONOCHROME2) values, in place.

    Inversion maps a physical value ``v`` to ``K - v`` with ``K = (low + high) * slope +
    2 * intercept`` (``low..high`` the stored range), so every WindowCenter ``c`` becomes
    ``K - c`` (widths stay), at the top level and in the functional groups, and the image
    displays as before. A VOI LUT (VOILUTSequence) is dropped: medsr does not rebuild LUTs,
    and a viewer then uses the window or its own. PresentationLUTShape INVERSE becomes
    IDENTITY. With a non-linear Modality LUT the windows are dropped too.
    """
    bits_stored, signed, _ = _bits(ds)
    if bits_stored is None:
        return
    low, high = _stored_range(bits_stored, signed)
    slope, intercept = _frame_rescale(ds, 0)
    linear = "ModalityLUTSequence" not in ds
    k = (low + high) * slope + 2 * intercept

    def fix(item: Dataset) -> None:
        if "WindowCenter" in item:
            if not linear:
                for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
                    if keyword in item:
                        del item[keyword]
                return
            value = item.WindowCenter
            centres = (
                list(value)
                if isinstance(value, Sequence) and not isinstance(value, str)
                else [value]
            )
            new = [format_number_as_ds(k - float(c)) for c in centres if c not in (None, "")]
            item.WindowCenter = new if len(new) != 1 else new[0]
        if "VOILUTSequence" in item:
            log.info("%s: MONOCHROME1 inverted; its VOI LUT is dropped", path.name)
            del item["VOILUTSequence"]

    fix(ds)
    for groups in list(ds.get("SharedFunctionalGroupsSequence") or []) + list(
        ds.get("PerFrameFunctionalGroupsSequence") or []
    ):
        for voi in groups.get("FrameVOILUTSequence") or []:
            fix(voi)
    if str(ds.get("PresentationLUTShape", "")) == "INVERSE":
        ds.PresentationLUTShape = "IDENTITY"


# -- geometry of multi-frame files --------------------------------------------------------------
def _frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame) and sequence in per_frame[frame]:
        return per_frame[frame][sequence][0]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0]:
        return shared[0][sequence][0]
    return None


def _frame_geometry(
    ds: Dataset, frame: int, path: Path
) -> tuple[np.ndarray | None, np.ndarray | None, tuple[float, float] | None, float | None]:
    """(position, direction (3,2), pixel spacing, slice thickness) of one frame."""
    position = direction = spacing = None
    thickness = None
    item = _frame_item(ds, frame, "PlanePositionSequence")
    if item is not None:
        values = _float_list(item.get("ImagePositionPatient"), 3)
        position = None if values is None else np.asarray(values)
    item = _frame_item(ds, frame, "PlaneOrientationSequence")
    if item is not None:
        direction = _orientation(item.get("ImageOrientationPatient"), path)
    item = _frame_item(ds, frame, "PixelMeasuresSequence")
    if item is not None:
        values = _float_list(item.get("PixelSpacing"), 2)
        if values is not None and all(v > 0 for v in values):
            spacing = (values[0], values[1])
        t = _float_list(item.get("SliceThickness"), 1)
        thickness = t[0] if t else None
    return position, direction, spacing, thickness


# -- public readers -------------------------------------------------------------------------
def read_file(path: Path, *, max_pixels: int) -> Image:
    """A single DICOM file: one image ``(Y, X)`` or, for a multi-frame file, ``(Z, Y, X)``."""
    try:
        return _read_file(path, max_pixels)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
        raise CorruptFileError(path, f"malformed header value ({error})") from error


def _read_file(path: Path, max_pixels: int) -> Image:
    ds = dcmread(path, max_pixels=max_pixels)
    if not _has_pixels(ds):
        sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "unknown"))
        raise NoPixelDataError(path, f"DICOM file has no pixel data (SOP class {sop})")
    stored = _decode(ds, path, max_pixels)
    values, inverted = to_physical(ds, stored, path)
    if inverted:
        invert_voi(ds, path)
    bits_stored, signed, dtype = _bits(ds)
    color = values.ndim == 4
    modality = str(ds.get("Modality", "OT") or "OT")
    frames = values.shape[0]
    header = ds.copy()
    for keyword in PIXEL_KEYWORDS:
        if keyword in header:
            del header[keyword]
    metadata = _metadata(ds)

    if frames == 1:
        array, spacing, origin, direction = _single_frame_geometry(ds, values, path, metadata)
        frame_order = (0,) if "NumberOfFrames" in ds else None
    else:
        array, spacing, origin, direction, frame_order = _multi_frame_geometry(
            ds, values, path, metadata
        )
    return Image(
        array=array,
        spacing=spacing,
        origin=tuple(origin) if origin is not None else (0.0, 0.0, 0.0),
        direction=direction,
        modality=modality,
        color=color,
        source=Source(
            format="dicom",
            path=path,
            stored_dtype=dtype,
            bits_stored=bits_stored,
            signed=signed,
            datasets=(header,),
            frame_order=frame_order,
            inverted=inverted,
        ),
        metadata=metadata,
    )


def _single_frame_geometry(ds: Dataset, values: np.ndarray, path: Path, metadata: dict):
    """(array, spacing, origin, direction) of a one-frame file (legacy or enhanced)."""
    direction = _orientation(ds.get("ImageOrientationPatient"), path)
    position = _float_list(ds.get("ImagePositionPatient"), 3)
    spacing = pixel_spacing(ds, path)
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        f_pos, f_dir, f_spacing, f_thick = _frame_geometry(ds, 0, path)
        position = position if f_pos is None else list(f_pos)
        direction = direction if f_dir is None else f_dir
        spacing = spacing if f_spacing is None else f_spacing
        if f_thick:
            metadata["slice_thickness"] = f_thick
    return values[0], spacing, position, direction


def _multi_frame_geometry(ds: Dataset, values: np.ndarray, path: Path, metadata: dict):
    """(volume sorted along the slice normal, spacing, origin, direction, frame order)."""
    frames = values.shape[0]
    geometry = [_frame_geometry(ds, k, path) for k in range(frames)]
    positions = [g[0] for g in geometry]
    directions = [g[1] for g in geometry]
    spacings = [g[2] for g in geometry]
    if geometry[0][3]:
        metadata["slice_thickness"] = geometry[0][3]
    in_plane = spacings[0] or pixel_spacing(ds, path)
    if any(s is not None and not np.allclose(s, in_plane, rtol=1e-4) for s in spacings):
        raise GeometryError(f"{path}: frames have different pixel spacings")
    if all(p is not None for p in positions) and directions[0] is not None:
        if any(d is None or not np.allclose(d, directions[0], atol=1e-4) for d in directions):
            raise GeometryError(f"{path}: frames have different orientations")
        order, z_spacing, z_dir = _sort_positions(np.asarray(positions), directions[0], path)
    else:
        # No per-frame positions (cine, secondary capture): keep frame order, nominal spacing.
        order = list(range(frames))
        z_spacing = float(ds.get("SpacingBetweenSlices", 0) or 0) or float(
            metadata.get("slice_thickness") or 1.0
        )
        z_dir = None
        log.info(
            "%s: multi-frame file without frame positions; frames kept in file order", path.name
        )
    direction = directions[0]
    full_direction = None
    if direction is not None:
        normal = np.cross(direction[:, 1], direction[:, 0])
        full_direction = np.column_stack([z_dir if z_dir is not None else normal, direction])
    return (
        values[order],
        (z_spacing, *in_plane),
        positions[order[0]],
        full_direction,
        tuple(order),
    )


def padding_range(ds: Dataset) -> tuple[float, float] | None:
    """Physical ``(low, high)`` of the padding values that PixelPaddingValue (and
    PixelPaddingRangeLimit) declare, after rescale and MONOCHROME1 inversion; None without
    padding or when it cannot be mapped (float pixels, non-linear Modality LUT, frames with
    different rescales, a value outside the stored range)."""
    if "PixelPaddingValue" not in ds or "ModalityLUTSequence" in ds:
        return None
    bits_stored, signed, _ = _bits(ds)
    if bits_stored is None:
        return None
    low, high = _stored_range(bits_stored, signed)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rescales = {_frame_rescale(ds, k) for k in range(frames)}
    if len(rescales) != 1:
        return None
    slope, intercept = rescales.pop()
    keywords = ("PixelPaddingValue", "PixelPaddingRangeLimit")
    physical = []
    for keyword in keywords:
        value = ds.get(keyword)
        if value in (None, ""):
            continue
        stored = int(value[0] if isinstance(value, Sequence) else value)
        if signed and stored > high:  # read as US although the pixels are signed
            stored -= 1 << int(ds.get("BitsAllocated", 16))
        if not low <= stored <= high:
            return None
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            stored = low + high - stored
        physical.append(float(np.float32(stored * slope + intercept)))
    return min(physical), max(physical)


def _metadata(ds: Dataset) -> dict:
    """Non-identifying facts used downstream (windowing, thickness, padding); never patient
    data."""
    meta: dict = {}
    with contextlib.suppress(TypeError, ValueError):
        padding = padding_range(ds)
        if padding is not None:
            meta["padding"] = padding
    thickness = _float_list(ds.get("SliceThickness"), 1)
    if thickness and thickness[0] > 0:
        meta["slice_thickness"] = thickness[0]
    for keyword, key in (("WindowCenter", "window_center"), ("WindowWidth", "window_width")):
        value = ds.get(keyword)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                meta[key] = float(value[0] if isinstance(value, Sequence) else value)
    return meta


def _sort_positions(
    positions: np.ndarray, direction: np.ndarray, where: Path
) -> tuple[list[int], float, np.ndarray]:
    """Order by position along the slice normal; regular spacing and the slice-axis direction.

    Raises GeometryError for duplicate positions or irregular gaps (a missing slice would make
    every position after it wrong on a regular grid).
    """
    normal = np.cross(direction[:, 1], direction[:, 0])
    along = positions @ normal
    order = [int(i) for i in np.argsort(along, kind="stable")]
    if len(order) == 1:
        return order, 1.0, normal
    sorted_along = along[order]
    gaps = np.diff(sorted_along)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise MixedSeriesError(
            where,
            f"two slices share the position {sorted_along[k]:.3f} mm along the normal; the "
            "folder probably holds several acquisitions (split them into one folder each)",
        )
    spacing = float(np.median(gaps))
    bad = np.abs(gaps - spacing) > SPACING_TOLERANCE * spacing + 1e-3
    if np.any(bad):
        listed = ", ".join(f"{g:.3f}" for g in gaps[bad][:5])
        raise GeometryError(
            f"{where}: irregular slice spacing (median {spacing:.3f} mm, but gaps of {listed} mm); "
            "missing slices or a mixed series"
        )
    step = (positions[order[-1]] - positions[order[0]]) / (len(order) - 1)
    step_dir = step / np.linalg.norm(step)
    if np.degrees(np.arccos(np.clip(step_dir @ normal, -1, 1))) > 0.5:
        log.warning(
            "%s: slices are sheared (gantry tilt); the volume keeps the true positions", where
        )
    return order, float(np.linalg.norm(step)), step_dir


def list_series(
    paths: Sequence[Path], *, max_pixels: int = MAX_PIXELS
) -> dict[str, list[tuple[Path, Dataset]]]:
    """Headers of the DICOM image files among ``paths``, grouped by SeriesInstanceUID."""
    groups: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    for path in paths:
        if path.name.upper() == "DICOMDIR":
            continue
        try:
            ds = dcmread(path, stop_before_pixels=True, max_pixels=max_pixels)
        except UnsupportedFormatError:
            log.debug("skipping non-DICOM file %s", path.name)
            continue
        if "Rows" not in ds:  # reports, presentation states, etc.
            log.debug("skipping DICOM file without an image %s", path.name)
            continue
        groups[str(ds.get("SeriesInstanceUID", "unknown"))].append((path, ds))
    return dict(groups)


def series_choices(groups: dict[str, list[tuple[Path, Dataset]]]) -> str:
    """The series of a folder by index, number, modality, size and file count, never by UID
    or description (identifiers and free text: see :mod:`medsr.io.series`)."""
    from medsr.io.series import choices_text, summarise

    infos = summarise(groups)
    return f"the folder holds {len(infos)} series: {choices_text(infos)}"


def read_series(folder: Path, *, max_pixels: int, series_uid: str | None = None) -> Image:
    """All slices of one series in a folder (not recursive) as a volume ``(Z, Y, X)``."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    groups = list_series(files, max_pixels=max_pixels)
    if not groups:
        raise ReadError(folder, "no DICOM image files in this folder")
    if series_uid is not None:
        if series_uid not in groups:
            raise MixedSeriesError(
                folder, f"no series with that SeriesInstanceUID; {series_choices(groups)}"
            )
        members = groups[series_uid]
    elif len(groups) > 1:
        raise MixedSeriesError(
            folder, f"{series_choices(groups)}; choose one with --series N (series=N in Python)"
        )
    else:
        members = next(iter(groups.values()))
    if len(members) == 1:
        return read_file(members[0][0], max_pixels=max_pixels)
    if any(int(ds.get("NumberOfFrames", 1) or 1) > 1 for _, ds in members):
        raise MixedSeriesError(
            folder, "the series mixes multi-frame files; read each file on its own"
        )
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in members}
    if len(shapes) > 1:
        raise MixedSeriesError(
            folder, f"slices of one series have different sizes {sorted(shapes)}"
        )
    rows, cols = shapes.pop()
    if rows * cols * len(members) > max_pixels:
        raise ImageTooLargeError(
            folder, f"{len(members)} x {rows} x {cols} pixels exceeds the cap of {max_pixels}"
        )
    directions = [_orientation(ds.get("ImageOrientationPatient"), p) for p, ds in members]
    positions = [_float_list(ds.get("ImagePositionPatient"), 3) for _, ds in members]
    if any(d is None for d in directions) or any(p is None for p in positions):
        missing = [
            p.name
            for (p, _), d, q in zip(members, directions, positions, strict=True)
            if d is None or q is None
        ]
        raise GeometryError(
            f"{folder}: slices without ImagePositionPatient/ImageOrientationPatient "
            f"({', '.join(missing[:5])}); cannot build a volume"
        )
    if any(not np.allclose(d, directions[0], atol=1e-4) for d in directions):
        raise MixedSeriesError(folder, "slices of the series have different orientations")
    order, z_spacing, z_dir = _sort_positions(np.asarray(positions), directions[0], folder)
    members = [members[i] for i in order]

    volume = np.empty((len(members), rows, cols), dtype=np.float32)
    headers = []
    first_bits = None
    inverted = False
    for k, (path, _) in enumerate(members):
        ds = dcmread(path, max_pixels=max_pixels)
        if not _has_pixels(ds):
            raise NoPixelDataError(path, "DICOM file of the series has no pixel data")
        stored = _decode(ds, path, max_pixels)
        if stored.ndim != 3:
            raise MixedSeriesError(folder, f"{path.name} is a colour image in a grey series")
        values, inverted = to_physical(ds, stored, path)
        if inverted:
            invert_voi(ds, path)
        volume[k] = values[0]
        bits = _bits(ds)
        first_bits = first_bits or bits
        if bits != first_bits:
            raise MixedSeriesError(folder, f"{path.name} has a different bit depth {bits}")
        header = ds.copy()
        for keyword in PIXEL_KEYWORDS:
            if keyword in header:
                del header[keyword]
        headers.append(header)
    first_ds = headers[0]
    spacing = pixel_spacing(first_ds, members[0][0])
    bits_stored, signed, dtype = first_bits
    return Image(
        array=volume,
        spacing=(z_spacing, *spacing),
        origin=tuple(positions[order[0]]),
        direction=np.column_stack([z_dir, directions[0]]),
        modality=str(first_ds.get("Modality", "OT") or "OT"),
        source=Source(
            format="dicom",
            path=folder,
            stored_dtype=dtype,
            bits_stored=bits_stored,
            signed=signed,
            datasets=tuple(headers),
            inverted=inverted,
        ),
        metadata=_metadata(first_ds),
    )
