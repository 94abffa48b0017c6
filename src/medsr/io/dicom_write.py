"""Derived DICOM output that a PACS accepts.

A super-resolved image is written as a new series of the same study: new SeriesInstanceUID and
SOPInstanceUIDs, the same StudyInstanceUID and FrameOfReferenceUID, ImageType DERIVED\\SECONDARY,
a DerivationDescription and a SourceImageSequence pointing at the source slices, and a
SeriesDescription that says the images are super-resolved and not for primary diagnosis.
Geometry attributes are rewritten for the new grid; pixels are stored in the source bit depth
with its RescaleSlope/Intercept. Every file is written with pydicom's validation set to raise,
then read back.

What is never carried over from the source: its 128-byte preamble (every file gets a zeroed
one: a preamble can hold a TIFF header or an executable, CVE-2019-11687), private elements,
and binary elements over :data:`MAX_COPIED_BYTES` that are not pixel data. A series is
written into a staging folder beside its target and moved into place only when every slice
is written, so a full disk never leaves a partial series.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from medsr import __version__
from medsr.errors import WriteError
from medsr.io.image import Image
from medsr.tempfiles import create_temp

log = logging.getLogger(__name__)

# Called on each finished dataset just before it is written (e.g. de-identification).
Finalize = Callable[[Dataset], object]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
NOT_FOR_DIAGNOSIS = "not for primary diagnosis"
# Every derived series (a slice folder, a single file, a multi-frame file) gets the source's
# SeriesNumber plus this, so a PACS never shows the source and its derived series under one
# number.
SERIES_NUMBER_OFFSET = 1000
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Binary (OB, OW, UN...) elements larger than this that are not pixel data are not copied into
# derived files (e.g. a 1 GiB zero OB element hidden in a small deflated file). LUTData may hold
# 2^16 16-bit entries, so it gets twice as much.
MAX_COPIED_BYTES = 64 * 1024
BINARY_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW"})
# Enhanced (functional-group) image storage SOP classes: ImageType value 2 may not be SECONDARY.
ENHANCED_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
        "1.2.840.10008.5.1.4.1.1.4.3",  # Enhanced MR Color
        "1.2.840.10008.5.1.4.1.1.128.1",  # Legacy Converted Enhanced PET
        "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET
        "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA
        "1.2.840.10008.5.1.4.1.1.12.2.1",  # Enhanced XRF
        "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
    }
)
# MR Pulse Sequence module attributes: Type 1C, required for ORIGINAL or MIXED images and not
# allowed (dciodvfy) for DERIVED ones. They describe the source's acquisition, which the
# SourceImageSequence still references.
MR_PULSE_SEQUENCE_KEYWORDS = (
    "PulseSequenceName",
    "MRAcquisitionType",
    "EchoPulseSequence",
    "MultiPlanarExcitation",
    "PhaseContrast",
    "TimeOfFlightContrast",
    "SteadyStatePulseSequence",
    "EchoPlanarPulseSequence",
    "SaturationRecovery",
    "SpectrallySelectedSuppression",
    "OversamplingPhase",
    "GeometryOfKSpaceTraversal",
    "RectilinearPhaseEncodeReordering",
    "SegmentedKSpaceTraversal",
    "CoverageOfKSpace",
    "NumberOfKSpaceTrajectories",
    "BulkMotionCompensationTechnique",
)
# A medsr label at the start of a SeriesDescription ("[SR x4, not for primary diagnosis] ",
# "[medsr] "), removed before the new one is added so that repeated runs never stack them.
_LABEL_RE = re.compile(r"^\s*\[(?:SR x[^\]]*|medsr[^\]]*)\]\s*")
# "5mm", "5 mm", "2.5mm", "1,25 mm" in a SeriesDescription.
_THICKNESS_RE = re.compile(r"(?<![\d.,])(\d+(?:[.,]\d+)?)(\s?mm)\b", re.IGNORECASE)
IMPLEMENTATION_VERSION = f"MEDSR_{__version__}"[:16]
# Attributes that describe the old pixel grid or old pixel values and would be wrong after SR.
STALE_KEYWORDS = (
    "IconImageSequence",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)
# A PALETTE COLOR source is written as RGB, so its palette goes (a supplemental palette of a grey
# image stays).
PALETTE_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
)


@contextlib.contextmanager
def strict_writing() -> Iterator[None]:
    """pydicom raises on any invalid value we assign (e.g. a DS longer than 16 characters)."""
    settings = pydicom.config.settings
    before = settings.writing_validation_mode
    settings.writing_validation_mode = pydicom.config.RAISE
    try:
        yield
    finally:
        settings.writing_validation_mode = before


def ds_values(values) -> list[str]:
    """Decimal strings of at most 16 characters (DICOM DS)."""
    return [format_number_as_ds(float(v)) for v in values]


def stored_integer_range(ds: Dataset) -> tuple[int, int, np.dtype]:
    """``(low, high, dtype)``: the stored integers ``ds``'s pixel module allows (BitsStored,
    PixelRepresentation) and the numpy type that holds them (BitsAllocated)."""
    allocated = int(ds.get("BitsAllocated", 16))
    stored = int(ds.get("BitsStored", allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if signed:
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
    else:
        low, high = 0, (1 << stored) - 1
    size = 8 if allocated <= 8 else 16 if allocated <= 16 else 32
    return low, high, np.dtype(f"{'int' if signed else 'uint'}{size}")


def rescale(ds: Dataset) -> tuple[float, float]:
    """``(slope, intercept)`` from stored integers to physical values (the shared functional
    group's of an enhanced multi-frame object, else RescaleSlope/Intercept; 1, 0 if none)."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and "PixelValueTransformationSequence" in shared[0]:
        item = shared[0].PixelValueTransformationSequence[0]
        return float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def quantise(values: np.ndarray, template: Dataset) -> tuple[np.ndarray, int]:
    """Physical values -> stored integers of the template's bit depth, and how many were clipped.

    Super-resolution can overshoot the stored range (e.g. below -1024 HU next to air); those
    pixels are clipped to the range, counted, and reported once per write.
    """
    slope, intercept = rescale(template)
    low, high, dtype = stored_integer_range(template)
    stored = np.rint((values.astype(np.float64) - intercept) / slope)
    clipped = int(np.count_nonzero((stored < low) | (stored > high)))
    return np.clip(stored, low, high).astype(dtype), clipped


def stored_values(image: Image, template: Dataset, array: np.ndarray | None = None) -> np.ndarray:
    """Stored integers for ``array`` (default: the whole image); clipping is logged."""
    stored, clipped = quantise(image.array if array is None else array, template)
    _report_clipped(clipped, template)
    return stored


def _report_clipped(clipped: int, template: Dataset) -> None:
    if clipped:
        low, high, _ = stored_integer_range(template)
        log.warning(
            "%d pixel(s) outside the stored range %d..%d of the source bit depth were clipped",
            clipped,
            low,
            high,
        )


# -- building datasets ----------------------------------------------------------------------
def _now() -> tuple[str, str]:
    now = datetime.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _source_reference(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = DicomSequence(
        [_code("121322", "DCM", "Source image for image processing operation")]
    )
    return item


def _remove_stale(ds: Dataset) -> None:
    palette = str(ds.get("PhotometricInterpretation", "")) == "PALETTE COLOR"
    for keyword in STALE_KEYWORDS + (PALETTE_KEYWORDS if palette else ()):
        if keyword in ds:
            del ds[keyword]
    for elem in list(ds):
        group = elem.tag.group
        # Overlays (60xx) are drawn on the old pixel grid; curves (50xx, retired) likewise.
        if (0x6000 <= group <= 0x60FF or 0x5000 <= group <= 0x50FF) and group % 2 == 0:
            del ds[elem.tag]


def derived_series(template: Dataset) -> dict:
    """A new series identity: a fresh UID and the source's SeriesNumber plus
    :data:`SERIES_NUMBER_OFFSET` (kept absent when the source has none)."""
    series: dict = {"uid": generate_uid()}
    with contextlib.suppress(TypeError, ValueError):
        number = template.get("SeriesNumber")
        if number not in (None, ""):
            series["number"] = (int(number) + SERIES_NUMBER_OFFSET) % 2**31
    return series


def _format_mm(value: float) -> str:
    return f"{round(value, 2):g}"


def series_description(
    original: str, label: str, thickness: tuple[float, float] | None = None
) -> str:
    """The derived SeriesDescription (at most 64 characters, the LO limit).

    An earlier medsr label at the start of ``original`` is removed first, so repeated runs never
    stack labels. ``thickness`` ``(old, new)`` mm (after through-plane SR) rewrites the
    ``<old> mm`` wording of ``original``. The label carries the not-for-diagnosis warning when
    it names a super-resolution and the original text still fits beside it; otherwise the short
    label is used (the warning stays in DerivationDescription), and only text that still does not
    fit is cut, ending in ``...``.
    """
    text = original
    while (match := _LABEL_RE.match(text)) is not None:
        text = text[match.end() :]
    text = text.strip()
    if thickness is not None:
        old, new = thickness

        def swap(match: re.Match) -> str:
            value = float(match.group(1).replace(",", "."))
            if abs(value - old) <= 0.05 * old:
                return _format_mm(new) + match.group(2)
            return match.group(0)

        text = _THICKNESS_RE.sub(swap, text)
    tags = [f"[{label}, {NOT_FOR_DIAGNOSIS}]"] if label.startswith("SR") else []
    tags.append(f"[{label}]")
    for tag in tags:
        if len(f"{tag} {text}".strip()) <= 64:
            return f"{tag} {text}".strip()
    room = 64 - len(tag) - 1
    return f"{tag} {text[: room - 3].rstrip()}..." if room > 3 else tag[:64]


def _mark_derived(
    ds: Dataset,
    series: dict,
    label: str,
    description: str,
    thickness: tuple[float, float] | None = None,
) -> None:
    """ImageType, series identity and the derivation texts of a derived instance.

    ``label`` is short (e.g. ``SR x4``) and goes in front of the SeriesDescription; when it
    names a super-resolution the texts also say the images are not for primary diagnosis.
    """
    image_type = list(ds.get("ImageType", []) or [])
    # Enhanced (functional-group) IODs only allow PRIMARY as value 2.
    enhanced = is_enhanced(ds)
    second = (image_type[1:2] or ["PRIMARY"])[0] if enhanced else "SECONDARY"
    ds.ImageType = ["DERIVED", second, *image_type[2:]]
    if enhanced and str(ds.get("Modality", "")) == "MR":
        for keyword in MR_PULSE_SEQUENCE_KEYWORDS:
            if keyword in ds:
                del ds[keyword]
    ds.SeriesInstanceUID = series["uid"]
    if "number" in series:
        ds.SeriesNumber = series["number"]
    warning = f", {NOT_FOR_DIAGNOSIS}" if label.startswith("SR") else ""
    original = str(ds.get("SeriesDescription", "") or "")
    ds.SeriesDescription = series_description(original, label, thickness)
    text = f"{label} by medsr {__version__}" + (f" ({description})" if description else "")
    ds.DerivationDescription = (text + (f"; {NOT_FOR_DIAGNOSIS}" if warning else ""))[:1024]
    date, time = _now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ContentDate, ds.ContentTime = date, time


def is_enhanced(ds: Dataset) -> bool:
    """A functional-group (enhanced) instance, also one whose groups are missing."""
    return (
        "SharedFunctionalGroupsSequence" in ds
        or "PerFrameFunctionalGroupsSequence" in ds
        or str(ds.get("SOPClassUID", "")) in ENHANCED_SOP_CLASSES
    )


def _derivation_into_groups(ds: Dataset, template: Dataset) -> None:
    """Enhanced IODs carry the derivation in the Derivation Image functional group (shared),
    not at the top level, and then list the source in SourceImageEvidenceSequence."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if not shared:
        return
    reference = Dataset()
    reference.ReferencedSOPClassUID = template.SOPClassUID
    reference.ReferencedSOPInstanceUID = template.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = template.get("SeriesInstanceUID", "")
    series.ReferencedSOPSequence = DicomSequence([reference])
    study = Dataset()
    study.StudyInstanceUID = template.get("StudyInstanceUID", "")
    study.ReferencedSeriesSequence = DicomSequence([series])
    ds.SourceImageEvidenceSequence = DicomSequence([study])
    item = Dataset()
    if "DerivationDescription" in ds:
        item.DerivationDescription = ds.DerivationDescription
        del ds["DerivationDescription"]
    item.DerivationCodeSequence = DicomSequence([_code("113085", "DCM", "Spatial resampling")])
    item.SourceImageSequence = ds.get("SourceImageSequence", DicomSequence())
    if "SourceImageSequence" in ds:
        del ds["SourceImageSequence"]
    for frame in ds.get("PerFrameFunctionalGroupsSequence") or []:
        if "DerivationImageSequence" in frame:
            del frame["DerivationImageSequence"]
    shared[0].DerivationImageSequence = DicomSequence([item])


def derivation_label(image: Image, template_shape: tuple[int, ...]) -> str:
    """``SR x4`` (or ``SR x1/x4`` for unequal factors) when the grid changed, else ``medsr``."""
    factors = [n / m for n, m in zip(image.spatial_shape, template_shape, strict=True)]
    parts = sorted({f"x{f:g}" for f in factors if abs(f - 1) > 1e-9})
    return f"SR {'/'.join(parts)}" if parts else "medsr"


def _set_pixels(ds: Dataset, values: np.ndarray, *, color: bool) -> None:
    if color:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        data = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        data = values
        if str(ds.get("PhotometricInterpretation", "")) != "MONOCHROME2":
            ds.PhotometricInterpretation = "MONOCHROME2"
        for keyword in ("PlanarConfiguration",):
            if keyword in ds:
                del ds[keyword]
    if data.dtype.kind == "f":
        ds.FloatPixelData = np.ascontiguousarray(data, dtype="<f4").tobytes()
    else:
        ds.PixelData = np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()
        ds["PixelData"].VR = "OW" if data.dtype.itemsize > 1 else "OB"
    frames = data.shape[0] if data.ndim == (4 if color else 3) else 1
    shape = data.shape[-3:-1] if color else data.shape[-2:]
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    if frames > 1 or "NumberOfFrames" in ds:
        ds.NumberOfFrames = frames


def _set_in_plane_spacing(ds: Dataset, image: Image, template_rows: int) -> None:
    """Scale every in-plane spacing attribute by the same factor as the pixel grid."""
    row_spacing, col_spacing = image.spacing[-2], image.spacing[-1]
    if "PixelSpacing" in ds:
        old = [float(v) for v in ds.PixelSpacing] if ds.PixelSpacing else []
        if len(old) == 2 and all(v > 0 for v in old):
            ds.PixelSpacing = ds_values([row_spacing, col_spacing])
    factor = template_rows / image.spatial_shape[-2]
    for keyword in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if keyword in ds and ds[keyword].value:
            old = [float(v) for v in ds[keyword].value]
            if len(old) == 2 and all(v > 0 for v in old):
                ds[keyword].value = ds_values([v * factor for v in old])


def _slice_positions(image: Image) -> np.ndarray:
    """LPS position of the first pixel of every slice, shape (Z, 3)."""
    if not image.is_volume:
        return np.asarray([image.origin])
    steps = np.arange(image.spatial_shape[0])[:, None] * image.spacing[0]
    return np.asarray(image.origin)[None, :] + steps * image.direction[:, 0][None, :]


def _orientation_values(image: Image) -> list[str]:
    row_dir, col_dir = image.direction[:, -1], image.direction[:, -2]
    return ds_values(list(row_dir) + list(col_dir))


# -- writers ---------------------------------------------------------------------------------
def write_series(
    image: Image,
    folder: Path,
    *,
    templates: tuple[Dataset, ...],
    description: str = "",
    overwrite: bool = False,
    finalize: Finalize | None = None,
) -> list[Path]:
    """Legacy single-frame instances, one file per slice, into ``folder`` (staged: see
    :func:`staged_folder`)."""
    with staged_folder(folder, overwrite) as staging:
        names = _write_series_into(image, staging, templates, description, finalize)
    return [folder / name for name in names]


def _write_series_into(
    image: Image,
    staging: Path,
    templates: tuple[Dataset, ...],
    description: str,
    finalize: Finalize | None,
) -> list[str]:
    positions = _slice_positions(image)
    template_positions = np.asarray(
        [[float(v) for v in t.get("ImagePositionPatient", [0, 0, 0])] for t in templates]
    )
    normal = image.normal
    series = derived_series(templates[0])
    label = derivation_label(
        image, (len(templates), int(templates[0].Rows), int(templates[0].Columns))[-image.ndim :]
    )
    z_changed = image.is_volume and len(templates) != len(positions)
    thickness = _thickness_change(templates[0], image) if z_changed else None
    names = []
    clipped = 0
    for k, position in enumerate(positions):
        distances = np.abs((template_positions - position) @ normal)
        nearest = np.argsort(distances, kind="stable")[
            : 1 if len(templates) == len(positions) else 2
        ]
        template = templates[int(nearest[0])]
        ds = _derived_instance(template, image, series, label, description, thickness)
        ds.SourceImageSequence = DicomSequence(
            [_source_reference(templates[int(i)]) for i in nearest]
        )
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ds_values(position)
        ds.ImageOrientationPatient = _orientation_values(image)
        if "SliceLocation" in template and template.SliceLocation not in (None, ""):
            shift = float((position - template_positions[int(nearest[0])]) @ normal)
            ds.SliceLocation = format_number_as_ds(float(template.SliceLocation) + shift)
        if z_changed:
            ds.SliceThickness = format_number_as_ds(image.spacing[0])
            ds.SpacingBetweenSlices = format_number_as_ds(image.spacing[0])
        elif image.is_volume and "SpacingBetweenSlices" in template:
            ds.SpacingBetweenSlices = format_number_as_ds(image.spacing[0])
        values = image.array[k] if image.is_volume else image.array
        pixels, n = (values, 0) if image.color else _pixels_for(image, template, values)
        clipped += n
        _set_pixels(ds, pixels, color=image.color)
        name = f"IM{k + 1:05d}.dcm"
        _save(ds, staging / name, finalize)
        names.append(name)
    _report_clipped(clipped, templates[0])
    return names


def _thickness_change(template: Dataset, image: Image) -> tuple[float, float] | None:
    """(old, new) slice thickness in mm after through-plane SR, for the SeriesDescription."""
    old = template.get("SliceThickness")
    with contextlib.suppress(TypeError, ValueError):
        if old not in (None, "") and float(old) > 0:
            return float(old), float(image.spacing[0])
    return None


def write_single(
    image: Image,
    path: Path,
    *,
    template: Dataset,
    description: str = "",
    finalize: Finalize | None = None,
) -> list[Path]:
    """One legacy single-frame instance (a 2D image)."""
    if image.is_volume:
        raise WriteError(path, "a volume needs a folder (one file per slice), not a single file")
    series = derived_series(template)
    label = derivation_label(image, (int(template.Rows), int(template.Columns)))
    ds = _derived_instance(template, image, series, label, description)
    ds.SourceImageSequence = DicomSequence([_source_reference(template)])
    if "ImagePositionPatient" in template:
        ds.ImagePositionPatient = ds_values(image.origin)
    if "ImageOrientationPatient" in template:
        ds.ImageOrientationPatient = _orientation_values(image)
    pixels, clipped = (image.array, 0) if image.color else _pixels_for(image, template, image.array)
    _report_clipped(clipped, template)
    _set_pixels(ds, pixels, color=image.color)
    _save(ds, path, finalize)
    return [path]


def write_multiframe(
    image: Image,
    path: Path,
    *,
    template: Dataset,
    frame_order: tuple[int, ...],
    description: str = "",
    finalize: Finalize | None = None,
) -> list[Path]:
    """An enhanced multi-frame instance, functional groups rewritten for the new grid."""
    volume = image.array if image.is_volume else image.array[None]
    series = derived_series(template)
    n_old = len(frame_order)
    label = derivation_label(
        image, ((n_old,) if image.is_volume else ()) + (int(template.Rows), int(template.Columns))
    )
    z_changed = image.is_volume and image.spatial_shape[0] != n_old
    thickness = None
    if z_changed:
        old = _frame_thickness(template)
        thickness = (old, float(image.spacing[0])) if old else None
    ds = _derived_instance(template, image, series, label, description, thickness)
    ds.SourceImageSequence = DicomSequence([_source_reference(template)])
    old_frames = template.get("PerFrameFunctionalGroupsSequence")
    positions = _slice_positions(image) if image.is_volume else np.asarray([image.origin])
    new_frames = []
    if old_frames is not None:
        for k, position in enumerate(positions):
            old_index = frame_order[min(round(k * n_old / len(positions)), n_old - 1)]
            item = copy.deepcopy(old_frames[old_index])
            if "PlanePositionSequence" in item:
                item.PlanePositionSequence[0].ImagePositionPatient = ds_values(position)
            _derive_frame_groups(item, image, len(positions) != n_old)
            new_frames.append(item)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(new_frames)
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        _derive_frame_groups(shared[0], image, len(positions) != n_old)
    _set_in_plane_spacing(ds, image, int(template.Rows))
    if image.color:
        pixels = volume
    else:
        parts = [_pixels_for(image, template, volume[k]) for k in range(volume.shape[0])]
        pixels = np.stack([p for p, _ in parts])
        _report_clipped(sum(n for _, n in parts), template)
    _set_pixels(ds, pixels, color=image.color)
    ds.NumberOfFrames = pixels.shape[0]
    _derivation_into_groups(ds, template)
    _save(ds, path, finalize)
    return [path]


def _frame_thickness(template: Dataset) -> float | None:
    for groups in (
        list(template.get("SharedFunctionalGroupsSequence") or [])
        + list(template.get("PerFrameFunctionalGroupsSequence") or [])[:1]
    ):
        measures = groups.get("PixelMeasuresSequence")
        if measures and measures[0].get("SliceThickness") not in (None, ""):
            return float(measures[0].SliceThickness) or None
    value = template.get("SliceThickness")
    return float(value) if value not in (None, "") and float(value) > 0 else None


def _derive_frame_groups(item: Dataset, image: Image, z_changed: bool) -> None:
    if "PixelMeasuresSequence" in item:
        measures = item.PixelMeasuresSequence[0]
        if "PixelSpacing" in measures:
            measures.PixelSpacing = ds_values(image.spacing[-2:])
        if z_changed and image.is_volume:
            for keyword in ("SliceThickness", "SpacingBetweenSlices"):
                if keyword in measures:
                    measures[keyword].value = format_number_as_ds(image.spacing[0])
    for element in item:
        if element.keyword.endswith("FrameTypeSequence") and element.value:
            frame_type = list(element.value[0].get("FrameType", []))
            if frame_type:
                element.value[0].FrameType = ["DERIVED", *frame_type[1:]]


def _pixels_for(image: Image, template: Dataset, values: np.ndarray) -> tuple[np.ndarray, int]:
    """Pixel values to store for one slice, and the number clipped to the stored range."""
    if "FloatPixelData" in template or "DoubleFloatPixelData" in template:
        return values.astype(np.float32), 0
    return quantise(values, template)


def _derived_instance(
    template: Dataset,
    image: Image,
    series: dict,
    label: str,
    description: str,
    thickness: tuple[float, float] | None = None,
) -> Dataset:
    if int(template.get("BitsAllocated", 16) or 16) == 1:
        raise WriteError(
            Path(str(template.get("SOPInstanceUID", "?"))),
            "1-bit (binary segmentation) sources cannot be written back as DICOM; "
            "write NIfTI or TIFF instead",
        )
    if "ModalityLUTSequence" in template:
        raise WriteError(
            Path(str(template.get("SOPInstanceUID", "?"))),
            "sources with a non-linear Modality LUT cannot be written back as DICOM yet; "
            "write NIfTI or TIFF instead",
        )
    # A plain Dataset built element by element: no preamble, no original (possibly big endian)
    # encoding, and nothing unsafe is ever deep-copied.
    ds = Dataset()
    for tag in list(template.keys()):
        if tag.is_private:
            continue
        element = template[tag]
        if element.keyword in PIXEL_KEYWORDS or _oversized(element):
            continue
        ds.add(copy.deepcopy(element))
    _drop_unsafe(ds)
    if template.original_encoding[1] is False:
        _swap_binary(ds)
    _remove_stale(ds)
    ds.SOPInstanceUID = generate_uid()
    _mark_derived(ds, series, label, description, thickness)
    _set_in_plane_spacing(ds, image, int(template.Rows))
    ds.file_meta = _file_meta(ds)
    return ds


def _oversized(element) -> bool:
    """A binary element that is not pixel data and larger than :data:`MAX_COPIED_BYTES`."""
    if element.VR not in BINARY_VRS or element.keyword in PIXEL_KEYWORDS:
        return False
    value = element.value
    size = len(value) if isinstance(value, bytes | bytearray) else 0
    limit = 2 * MAX_COPIED_BYTES if element.keyword == "LUTData" else MAX_COPIED_BYTES
    if size > limit:
        log.info(
            "not copying %s %s (%d bytes) into the derived file", element.tag, element.VR, size
        )
        return True
    return False


def _drop_unsafe(ds: Dataset) -> None:
    """Remove private and oversized binary elements at every nesting level."""
    for tag in list(ds.keys()):
        if tag.is_private:
            del ds[tag]
            continue
        element = ds[tag]
        if element.VR == "SQ":
            for item in element.value or []:
                _drop_unsafe(item)
        elif _oversized(element):
            del ds[tag]


_SWAP_WIDTH = {"OW": 2, "US or OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap_binary(ds: Dataset) -> None:
    """Raw word values of a big-endian source, byte-swapped for little-endian output (parsed
    values such as US or FL need nothing)."""
    for element in ds.iterall():
        width = _SWAP_WIDTH.get(element.VR)
        if width and isinstance(element.value, bytes) and len(element.value) % width == 0:
            swapped = np.frombuffer(element.value, dtype=f">u{width}").astype(f"<u{width}")
            element.value = swapped.tobytes()


def _check_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise WriteError(
            folder, "exists and is not a folder; a DICOM series is written into a folder"
        )
    existing = (
        [p for p in folder.iterdir() if p.suffix.lower() == ".dcm"] if folder.exists() else []
    )
    if existing and not overwrite:
        raise WriteError(
            folder,
            f"already holds {len(existing)} DICOM files; choose an empty folder (or overwrite)",
        )


@contextlib.contextmanager
def staged_folder(folder: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh hidden folder beside ``folder`` to write a series into.

    When the block ends without an error its files move into ``folder`` (same file system: a
    rename writes no data, so a full disk fails before anything is moved), replacing
    same-named files; earlier ``.dcm`` files the new series does not replace are then removed
    (``overwrite``). On an error the staging folder goes and ``folder`` is left as it was.
    """
    _check_folder(folder, overwrite)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.medsr-", dir=folder.parent))
    try:
        yield staging
        folder.mkdir(exist_ok=True)
        _check_folder(folder, overwrite)
        staged = sorted(p for p in staging.iterdir() if not p.name.startswith("."))
        names = {p.name for p in staged}
        stale = [p for p in folder.iterdir() if p.suffix.lower() == ".dcm" and p.name not in names]
        for p in staged:
            os.replace(p, folder / p.name)
        for p in stale:
            p.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _save(ds: Dataset, path: Path, finalize: Finalize | None = None) -> None:
    """Write atomically (temp file, fsync, rename), then read back and check the pixels.

    ``finalize`` runs on the finished dataset just before writing (e.g. de-identification).
    """
    if finalize is not None:
        finalize(ds)
    # Never the source's preamble (it can be a TIFF header or an executable: CVE-2019-11687).
    ds.preamble = b"\x00" * 128
    tmp = create_temp(path, prefix=".medsr-", suffix=".dcm")  # umask mode; WriteError
    try:
        with open(tmp, "wb") as f:
            ds.save_as(f, enforce_file_format=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise WriteError(path, f"could not write DICOM ({error})") from error
    back = pydicom.dcmread(path)
    frames = int(back.get("NumberOfFrames", 1) or 1)
    if (int(back.Rows), int(back.Columns)) != (int(ds.Rows), int(ds.Columns)):
        raise WriteError(path, "read-back size differs from what was written")
    expected = int(ds.Rows) * int(ds.Columns) * frames * int(ds.get("SamplesPerPixel", 1))
    if np.asarray(back.pixel_array).size != expected:
        raise WriteError(path, "read-back pixel count differs from what was written")


# -- DICOM from images that had no DICOM source ---------------------------------------------
def scratch_template(image: Image, *, study: dict | None = None) -> Dataset:
    """A Secondary Capture template for an image that did not come from DICOM.

    Grey values are stored as 16-bit integers with a RescaleSlope/Intercept that maps the
    image's value range (so physical units survive); colour as 8-bit RGB.
    """
    ds = Dataset()
    date, time = _now()
    study = study or {"uid": generate_uid()}
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = ""
    ds.PatientID = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study["uid"]
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.Modality = image.modality if image.modality else "OT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = ds_values(image.origin)
    ds.ImageOrientationPatient = _orientation_values(image)
    ds.PixelSpacing = ds_values(image.spacing[-2:])
    if image.is_volume:
        ds.SliceThickness = format_number_as_ds(image.spacing[0])
    shape = image.spatial_shape[-2:]
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    if image.color:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        return ds
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    src = image.source
    bits = src.bits_stored if src is not None and src.bits_stored else None
    finite = image.array[np.isfinite(image.array)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    integral = bool(np.allclose(finite, np.rint(finite))) if finite.size else True
    if bits is not None and bits <= 16 and integral and lo >= 0 and hi < (1 << bits):
        ds.BitsAllocated = 16 if bits > 8 else 8
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        slope = (hi - lo) / 65535 if hi > lo else 1.0
        ds.RescaleSlope = format_number_as_ds(slope)
        ds.RescaleIntercept = format_number_as_ds(lo)
    ds.RescaleType = "US"
    return ds


def write_scratch(
    image: Image,
    path: Path,
    *,
    as_series: bool,
    overwrite: bool = False,
    finalize: Finalize | None = None,
) -> list[Path]:
    """Secondary Capture instances for an image with no DICOM source (one file, or a series)."""
    template = scratch_template(image)
    if not as_series:
        if image.is_volume:
            raise WriteError(
                path, "a volume needs a folder (one file per slice), not a single file"
            )
        ds = copy.deepcopy(template)
        _set_pixels(
            ds, image.array if image.color else stored_values(image, template), color=image.color
        )
        ds.file_meta = _file_meta(ds)
        _save(ds, path, finalize)
        return [path]
    with staged_folder(path, overwrite) as staging:
        names = _write_scratch_into(image, template, staging, finalize)
    return [path / name for name in names]


def _write_scratch_into(
    image: Image, template: Dataset, staging: Path, finalize: Finalize | None
) -> list[str]:
    names = []
    volume = image.array if image.is_volume else image.array[None]
    for k, position in enumerate(_slice_positions(image)):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ds_values(position)
        values = volume[k]
        _set_pixels(
            ds, values if image.color else stored_values(image, template, values), color=image.color
        )
        ds.file_meta = _file_meta(ds)
        name = f"IM{k + 1:05d}.dcm"
        _save(ds, staging / name, finalize)
        names.append(name)
    return names
