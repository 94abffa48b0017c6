"""Derived DICOM output that a PACS accepts.

A super-resolved image is written as a new series of the same study: new SeriesInstanceUID and
SOPInstanceUIDs, the same StudyInstanceUID and FrameOfReferenceUID, ImageType DERIVED\\SECONDARY,
a DerivationDescription and a SourceImageSequence pointing at the source slices, and a
SeriesDescription that says the images are super-resolved and not for primary diagnosis.
Geometry attributes are rewritten for the new grid; pixels are stored in the source bit depth
with its RescaleSlope/Intercept. Every file is written with pydicom's validation set to raise,
then read back.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import logging
import os
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


def _stored_range(ds: Dataset) -> tuple[int, int, np.dtype]:
    allocated = int(ds.get("BitsAllocated", 16))
    stored = int(ds.get("BitsStored", allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    if signed:
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
    else:
        low, high = 0, (1 << stored) - 1
    size = 8 if allocated <= 8 else 16 if allocated <= 16 else 32
    return low, high, np.dtype(f"{'int' if signed else 'uint'}{size}")


def _rescale(ds: Dataset) -> tuple[float, float]:
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
    slope, intercept = _rescale(template)
    low, high, dtype = _stored_range(template)
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
        low, high, _ = _stored_range(template)
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


def _mark_derived(ds: Dataset, series: dict, label: str, description: str) -> None:
    """ImageType, series identity and the derivation texts of a derived instance.

    ``label`` is short (e.g. ``SR x4``) and goes in front of the SeriesDescription; when it
    names a super-resolution the texts also say the images are not for primary diagnosis.
    """
    image_type = list(ds.get("ImageType", []) or [])
    # Enhanced (functional-group) IODs only allow PRIMARY as value 2.
    enhanced = "SharedFunctionalGroupsSequence" in ds
    second = (image_type[1:2] or ["PRIMARY"])[0] if enhanced else "SECONDARY"
    ds.ImageType = ["DERIVED", second, *image_type[2:]]
    ds.SeriesInstanceUID = series["uid"]
    if "number" in series:
        ds.SeriesNumber = series["number"]
    warning = f", {NOT_FOR_DIAGNOSIS}" if label.startswith("SR") else ""
    original = str(ds.get("SeriesDescription", "") or "")
    ds.SeriesDescription = f"[{label}{warning}] {original}".strip()[:64]
    text = f"{label} by medsr {__version__}" + (f" ({description})" if description else "")
    ds.DerivationDescription = (text + (f"; {NOT_FOR_DIAGNOSIS}" if warning else ""))[:1024]
    date, time = _now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ContentDate, ds.ContentTime = date, time


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
    """Legacy single-frame instances, one file per slice, into ``folder``."""
    _prepare_folder(folder, overwrite)
    positions = _slice_positions(image)
    template_positions = np.asarray(
        [[float(v) for v in t.get("ImagePositionPatient", [0, 0, 0])] for t in templates]
    )
    normal = image.normal
    series = {"uid": generate_uid()}
    number = templates[0].get("SeriesNumber")
    if number not in (None, "") and int(number) + 1000 < 2**31:
        series["number"] = int(number) + 1000
    label = derivation_label(
        image, (len(templates), int(templates[0].Rows), int(templates[0].Columns))[-image.ndim :]
    )
    paths = []
    clipped = 0
    for k, position in enumerate(positions):
        distances = np.abs((template_positions - position) @ normal)
        nearest = np.argsort(distances, kind="stable")[
            : 1 if len(templates) == len(positions) else 2
        ]
        template = templates[int(nearest[0])]
        ds = _derived_instance(template, image, series, label, description)
        ds.SourceImageSequence = DicomSequence(
            [_source_reference(templates[int(i)]) for i in nearest]
        )
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = ds_values(position)
        ds.ImageOrientationPatient = _orientation_values(image)
        if "SliceLocation" in template and template.SliceLocation not in (None, ""):
            shift = float((position - template_positions[int(nearest[0])]) @ normal)
            ds.SliceLocation = format_number_as_ds(float(template.SliceLocation) + shift)
        if image.is_volume and len(templates) != len(positions):
            ds.SliceThickness = format_number_as_ds(image.spacing[0])
            ds.SpacingBetweenSlices = format_number_as_ds(image.spacing[0])
        elif image.is_volume and "SpacingBetweenSlices" in template:
            ds.SpacingBetweenSlices = format_number_as_ds(image.spacing[0])
        values = image.array[k] if image.is_volume else image.array
        pixels, n = (values, 0) if image.color else _pixels_for(image, template, values)
        clipped += n
        _set_pixels(ds, pixels, color=image.color)
        path = folder / f"IM{k + 1:05d}.dcm"
        _save(ds, path, finalize)
        paths.append(path)
    _report_clipped(clipped, templates[0])
    return paths


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
    series = {"uid": generate_uid()}
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
    series = {"uid": generate_uid()}
    n_old = len(frame_order)
    label = derivation_label(
        image, ((n_old,) if image.is_volume else ()) + (int(template.Rows), int(template.Columns))
    )
    ds = _derived_instance(template, image, series, label, description)
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
    _save(ds, path, finalize)
    return [path]


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
    template: Dataset, image: Image, series: dict, label: str, description: str
) -> Dataset:
    ds = copy.deepcopy(template)
    for keyword in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if keyword in ds:
            del ds[keyword]
    _remove_stale(ds)
    if "ModalityLUTSequence" in ds:
        raise WriteError(
            Path(str(template.get("SOPInstanceUID", "?"))),
            "sources with a non-linear Modality LUT cannot be written back as DICOM yet; "
            "write NIfTI or TIFF instead",
        )
    ds.SOPInstanceUID = generate_uid()
    _mark_derived(ds, series, label, description)
    _set_in_plane_spacing(ds, image, int(template.Rows))
    ds.file_meta = _file_meta(ds)
    return ds


def _prepare_folder(folder: Path, overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise WriteError(
            folder, "exists and is not a folder; a DICOM series is written into a folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    existing = [p for p in folder.iterdir() if p.suffix.lower() == ".dcm"]
    if existing and not overwrite:
        raise WriteError(
            folder,
            f"already holds {len(existing)} DICOM files; choose an empty folder (or overwrite)",
        )
    for p in existing:
        p.unlink()


def _save(ds: Dataset, path: Path, finalize: Finalize | None = None) -> None:
    """Write atomically (temp file, fsync, rename), then read back and check the pixels.

    ``finalize`` runs on the finished dataset just before writing (e.g. de-identification).
    """
    if finalize is not None:
        finalize(ds)
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
    _prepare_folder(path, overwrite)
    paths = []
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
        out = path / f"IM{k + 1:05d}.dcm"
        _save(ds, out, finalize)
        paths.append(out)
    return paths
