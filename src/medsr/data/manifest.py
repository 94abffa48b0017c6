"""``prepare``: sources -> slice store + manifest (one row per kept slice) + cleaning report.

Output folder layout::

    DIR/manifest.csv        one row per kept slice (columns: :data:`COLUMNS`)
    DIR/manifest.parquet    the same table, with ``format="parquet"`` (needs pyarrow)
    DIR/report.json         what was found, removed, transformed and split
    DIR/store/00000.npy     every slice of volume 0, shape (N, height, width), physical units,
    DIR/store/00000-mask.npy    and its mask (bool), when it has one

The store keeps *all* slices of a volume (blank and duplicate ones too), so 2.5D inputs can
take their neighbours from it; the manifest lists only the kept ones, and ``slice_index``
is the index along the slice axis in both the source volume and the store. Values are the
source's physical units (HU, scanner units, stored X-ray values), stored as the smallest
integer dtype that holds them exactly or as float32, and read back with
``numpy.load(path, mmap_mode="r")``.

Processing of each volume: read -> colour to grey (ITU-R 601 luma) -> slice axis moved first
-> normaliser fitted on the whole volume (``fit_normaliser(...).to_dict()`` stored per row)
-> per-slice statistics of the source slices, foreground (normalised value above
``foreground_threshold``) -> crop / pad / resize (:mod:`medsr.data.clean`) -> content hash
of each stored slice -> blank slices (source foreground fraction below ``min_foreground``,
or normalised standard deviation below ``min_std``) and exact duplicates (same content hash
as an earlier kept slice, in volume-id order) removed -> subject-level split
(:mod:`medsr.data.splits`, stratified by dataset). Statistics and cleaning decisions are
made on the source slices so that they do not depend on the crop / pad / resize options.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
import shutil
import time
import typing
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medsr import __version__
from medsr.data import clean, splits
from medsr.data.scan import DEFAULT_SLICE_AXIS, VolumeEntry, scan
from medsr.data.subjects import (
    Subject,
    compile_subject_regex,
    new_salt,
    subject_from_path,
    subject_of,
)
from medsr.errors import ConfigError, MedsrError
from medsr.io import read
from medsr.io.image import Image
from medsr.transforms.intensity import METHODS, Normaliser, fit_normaliser, normaliser_from_dict

logger = logging.getLogger(__name__)

MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"
REPORT_JSON = "report.json"
STORE = "store"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# -- the manifest row ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SliceRecord:
    """One kept slice. Lengths in mm, values in the source's physical units."""

    subject_id: str  # see medsr.data.subjects (DICOM/MAT identifiers are salted hashes)
    volume_id: str  # dataset/relative path without suffix (#n: n-th series of a folder)
    dataset: str  # name of the source folder
    split: str  # train, val or test
    source_path: str  # the file or DICOM folder read
    source_format: str  # dicom, nifti, npz, npy, mat, png, jpeg, tiff
    modality: str  # DICOM modality code (CT, MR, DX, ...; OT when unknown)
    slice_axis: int  # axis of the array as medsr.io.read returns it that was sliced
    slice_index: int  # index along slice_axis, in the source and in the store
    num_slices: int  # slices of the volume (the store's first axis)
    source_shape: str  # spatial shape as read, e.g. "221x221x67"
    source_height: int  # in-plane size of a source slice
    source_width: int
    crop_top: int  # crop box in source pixels (the whole slice when not cropped)
    crop_left: int
    crop_height: int
    crop_width: int
    pad_top: int  # padding added after cropping (pixels)
    pad_bottom: int
    pad_left: int
    pad_right: int
    height: int  # stored slice size (after crop, pad and resize)
    width: int
    spacing_y: float  # stored in-plane spacing (mm)
    spacing_x: float
    slice_spacing: float  # spacing along the slice axis (mm)
    store_path: str  # relative to the manifest's folder
    store_dtype: str
    mask_path: str  # relative to the manifest's folder; "" without a mask
    has_mask: bool
    mask_fraction: float  # fraction of the source slice inside the mask (0 without one)
    value_min: float  # statistics of the source slice (before crop/pad/resize), physical units
    value_max: float
    value_mean: float
    value_std: float
    value_p01: float
    value_p50: float
    value_p99: float
    foreground_fraction: float  # of the source slice: normalised value > foreground_threshold
    content_hash: str  # BLAKE2b-128 of dtype, shape and bytes of the stored slice
    normaliser: str  # JSON of fit_normaliser(volume).to_dict()

    def plane_transform(self) -> clean.PlaneTransform:
        """The crop / pad / resize that maps the source slice to the stored one."""
        return clean.PlaneTransform(
            *(getattr(self, f.name) for f in dataclasses.fields(clean.PlaneTransform))
        )

    def normaliser_dict(self) -> dict[str, Any]:
        return json.loads(self.normaliser)

    def load_normaliser(self) -> Normaliser:
        return normaliser_from_dict(self.normaliser_dict())


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SliceRecord))
_TYPES: dict[str, type] = {name: typing.get_type_hints(SliceRecord)[name] for name in COLUMNS}


def _parse(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if kind is bool:
        if isinstance(value, bool | np.bool_):
            return bool(value)
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise ConfigError(f"manifest column {name}: {value!r} is not true/false")
        return text in ("true", "1")
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    return "" if value is None else str(value)


def write_manifest(records: Sequence[SliceRecord], path: str | Path) -> Path:
    """Write a CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow) manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [dataclasses.asdict(r) for r in records]
    if path.suffix == ".parquet":
        pa, pq = _pyarrow()
        table = pa.table(
            {c: pa.array([r[c] for r in rows], type=_ARROW[_TYPES[c]](pa)) for c in COLUMNS}
        )
        pq.write_table(table, path)
        return path
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: ("true" if v else "false") if isinstance(v, bool) else v
                    for k, v in row.items()
                }
            )
    return path


_ARROW = {
    str: lambda pa: pa.string(),
    int: lambda pa: pa.int64(),
    float: lambda pa: pa.float64(),
    bool: lambda pa: pa.bool_(),
}


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ConfigError(
            "Parquet manifests need pyarrow (`pip install 'medsr[parquet]'`); "
            "or use the CSV manifest"
        ) from error
    return pa, pq


def manifest_path(path: str | Path) -> Path:
    """The manifest file: ``path`` itself, or ``manifest.csv`` (else ``.parquet``) in a folder."""
    path = Path(path)
    if path.is_dir():
        for name in (MANIFEST_CSV, MANIFEST_PARQUET):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"{path} holds no {MANIFEST_CSV} or {MANIFEST_PARQUET}")
    if not path.is_file():
        raise ConfigError(f"manifest {path} does not exist")
    return path


def read_manifest(path: str | Path) -> list[SliceRecord]:
    """Rows of a manifest file (CSV or Parquet) or of the manifest in a prepare folder."""
    path = manifest_path(path)
    if path.suffix == ".parquet":
        _, pq = _pyarrow()
        table = pq.read_table(path).to_pylist()
        columns = list(table[0]) if table else list(COLUMNS)
        rows: list[dict[str, Any]] = table
    else:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or [])
            rows = list(reader)
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS]
    if missing or unknown:
        raise ConfigError(
            f"{path}: not a medsr manifest (missing columns {missing}, unknown {unknown}); "
            f"expected: {', '.join(COLUMNS)}"
        )
    return [SliceRecord(**{c: _parse(c, row[c]) for c in COLUMNS}) for row in rows]


# -- options ------------------------------------------------------------------------------------

_MODALITY_WORDS = {
    "MR": {"mr", "mri", "mrt"},
    "CT": {"ct"},
    "DX": {"xray", "cxr", "radiograph", "radiographs", "radiography", "dx", "cr"},
}


def modality_from_name(name: str) -> str | None:
    """Modality guessed from a dataset folder name's words (``spine-mri`` -> MR,
    ``chest-ct`` -> CT, ``chest-xray`` -> DX), or None."""
    lowered = name.lower().replace("x-ray", "xray").replace("x_ray", "xray")
    words = set(re.split(r"[^a-z0-9]+", lowered))
    found = [code for code, keys in _MODALITY_WORDS.items() if words & keys]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class PrepareOptions:
    """Options of :func:`prepare` (see ``medsr prepare --help``).

    ``slice_axis`` and ``modality`` map a dataset name to a value; the key ``""`` applies to
    every dataset. A per-dataset modality forces it; the ``""`` one only fills in for files
    that carry none (everything but DICOM), before the guess from the dataset's name.
    """

    slice_axis: Mapping[str, int] = field(default_factory=dict)
    modality: Mapping[str, str] = field(default_factory=dict)
    subject_regex: str | None = None
    salt: str | None = None
    fractions: tuple[float, float, float] = splits.DEFAULT_FRACTIONS
    seed: int = 0
    foreground_threshold: float = 0.05
    min_foreground: float = 0.01
    min_std: float = 1e-3
    remove_blank: bool = True
    remove_duplicates: bool = True
    crop_border: bool = False
    crop_margin: int = 8
    pad_to: int | None = None
    pad_multiple: int | None = None
    resize: tuple[int, int] | None = None
    normaliser: str = "auto"
    ct_window: str | tuple[float, float] = "wide"
    percentiles: tuple[float, float] = (0.5, 99.5)
    clip: bool = True
    format: Literal["csv", "parquet"] = "csv"

    def __post_init__(self) -> None:
        splits.check_fractions(self.fractions)
        if self.normaliser not in METHODS:
            raise ConfigError(
                f"unknown normaliser {self.normaliser!r}; valid: {', '.join(METHODS)}"
            )
        if self.format not in ("csv", "parquet"):
            raise ConfigError(f"unknown manifest format {self.format!r}; valid: csv, parquet")
        if not 0.0 <= self.foreground_threshold < 1.0:
            raise ConfigError(
                f"foreground_threshold is a normalised value in [0, 1), got "
                f"{self.foreground_threshold}"
            )
        if not 0.0 <= self.min_foreground <= 1.0:
            raise ConfigError(f"min_foreground is a fraction in [0, 1], got {self.min_foreground}")
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
        if self.min_std < 0:
            raise ConfigError(f"min_std must be >= 0, got {self.min_std}")
        for dataset, axis in self.slice_axis.items():
            if axis not in (0, 1, 2):
                raise ConfigError(
                    f"slice axis {axis} for {dataset or 'all datasets'!r}; valid: 0, 1, 2"
                )
        # Checked here so a bad value fails before anything is read.
        clean.plan_transform(
            np.zeros((1, 1, 1), bool),
            crop_margin=self.crop_margin,
            pad_to=self.pad_to,
            pad_multiple=self.pad_multiple,
            resize=self.resize,
        )

    def axis_for(self, entry: VolumeEntry) -> int:
        if entry.dataset in self.slice_axis:
            return self.slice_axis[entry.dataset]
        return self.slice_axis.get("", DEFAULT_SLICE_AXIS.get(entry.format, 0))

    def modality_for(self, entry: VolumeEntry, image: Image) -> str:
        if entry.dataset in self.modality:
            return self.modality[entry.dataset].upper()
        if image.modality and image.modality != "OT":
            return image.modality
        if "" in self.modality:
            return self.modality[""].upper()
        return modality_from_name(entry.dataset) or "OT"

    def public(self) -> dict[str, Any]:
        """The options for the report (without the salt)."""
        out = dataclasses.asdict(self)
        out.pop("salt")
        out["slice_axis"], out["modality"] = dict(self.slice_axis), dict(self.modality)
        return out


# -- one volume -----------------------------------------------------------------------------------
@dataclass
class _Volume:
    """A prepared volume: its rows (all slices, split not yet known) and facts for the report."""

    entry: VolumeEntry
    subject: Subject
    rows: list[dict[str, Any]]
    blank: list[int]
    facts: dict[str, Any]


def _load(entry: VolumeEntry, warnings: list[str]) -> tuple[Image, np.ndarray | None, str | None]:
    """The image, its mask (``> 0``) and where the mask came from (a path, ``embedded``)."""
    image = read(entry.path, series_uid=entry.series_uid)
    mask, origin = image.mask, "embedded" if image.mask is not None else None
    if entry.mask_path is None:
        return image, mask, origin
    try:
        mask_image = read(entry.mask_path)
    except MedsrError as error:
        problem = f"mask {entry.mask_path} cannot be read ({error}); not attached"
    else:
        if mask_image.spatial_shape == image.spatial_shape:
            return image, mask_image.array > 0, str(entry.mask_path)
        problem = (
            f"mask {entry.mask_path} has shape {mask_image.spatial_shape}, not the shape "
            f"{image.spatial_shape} of {entry.path}; not attached"
        )
    logger.warning(problem)
    warnings.append(problem)
    return image, mask, origin


def _prepare_volume(
    entry: VolumeEntry,
    number: int,
    out: Path,
    options: PrepareOptions,
    *,
    salt: str,
    regex: re.Pattern[str] | None,
    warnings: list[str],
) -> _Volume:
    image, mask, mask_origin = _load(entry, warnings)
    subject = subject_of(entry, image, salt=salt, regex=regex)
    modality = options.modality_for(entry, image)
    array = image.array @ LUMA if image.color else image.array
    if image.is_volume:
        axis = options.axis_for(entry)
        volume = np.moveaxis(array, axis, 0)
        mask = None if mask is None else np.moveaxis(mask, axis, 0)
        slice_spacing = image.spacing[axis]
        spacing_y, spacing_x = (s for i, s in enumerate(image.spacing) if i != axis)
    else:
        axis = 0
        volume, mask = array[None], None if mask is None else mask[None]
        slice_spacing = image.spacing_3d()[0]
        spacing_y, spacing_x = image.spacing
    source = image.source
    normaliser = fit_normaliser(
        volume,
        modality=modality,
        bits_stored=source.bits_stored if source is not None else None,
        method=options.normaliser,  # type: ignore[arg-type]
        window=options.ct_window,
        percentiles=options.percentiles,
        signed=bool(source.signed) if source is not None else False,
        clip=options.clip,
    )
    # Cleaning decisions and statistics describe the source slices, so they do not depend on
    # the crop / pad / resize options.
    per_slice = clean.slice_facts(volume, normaliser.forward, options.foreground_threshold)
    foreground, unit_std, stats = per_slice.foreground, per_slice.unit_std, per_slice.stats
    mask_fraction = (
        mask.reshape(len(volume), -1).mean(axis=1) if mask is not None else np.zeros(len(volume))
    )
    transform = clean.plan_transform(
        per_slice.union,
        crop_border=options.crop_border,
        crop_margin=options.crop_margin,
        pad_to=options.pad_to,
        pad_multiple=options.pad_multiple,
        resize=options.resize,
    )
    stored = transform.apply(volume, fill=float(volume.min()))
    dtype = clean.store_dtype(stored)
    stored = stored.astype(dtype)
    store_path = f"{STORE}/{number:05d}.npy"
    np.save(out / store_path, stored)
    mask_path = ""
    if mask is not None:
        mask_path = f"{STORE}/{number:05d}-mask.npy"
        np.save(out / mask_path, transform.apply(mask, fill=0, mask=True))
    sy, sx = transform.spacing(spacing_y, spacing_x)
    norm_json = json.dumps(normaliser.to_dict(), sort_keys=True)
    common = {
        "subject_id": subject.id,
        "volume_id": entry.volume_id,
        "dataset": entry.dataset,
        "split": "",
        "source_path": str(entry.path),
        "source_format": entry.format,
        "modality": modality,
        "slice_axis": axis,
        "num_slices": len(stored),
        "source_shape": "x".join(str(n) for n in image.spatial_shape),
        **{f.name: getattr(transform, f.name) for f in dataclasses.fields(transform)},
        "spacing_y": float(sy),
        "spacing_x": float(sx),
        "slice_spacing": float(slice_spacing),
        "store_path": store_path,
        "store_dtype": str(dtype),
        "mask_path": mask_path,
        "has_mask": mask is not None,
        "normaliser": norm_json,
    }
    rows, blank = [], []
    for k in range(len(stored)):
        if foreground[k] < options.min_foreground or unit_std[k] < options.min_std:
            blank.append(k)
        rows.append(
            {
                **common,
                "slice_index": k,
                "mask_fraction": float(mask_fraction[k]),
                **{f"value_{name}": float(values[k]) for name, values in stats.items()},
                "foreground_fraction": float(foreground[k]),
                "content_hash": clean.content_hash(stored[k]),
            }
        )
    facts = {
        "volume_id": entry.volume_id,
        "dataset": entry.dataset,
        "subject_id": subject.id,
        "subject_rule": subject.rule,
        "format": entry.format,
        "modality": modality,
        "source_shape": list(image.spatial_shape),
        "slice_axis": axis,
        "slices": len(stored),
        "stored_shape": list(stored.shape),
        "store_dtype": str(dtype),
        "normaliser": normaliser.to_dict(),
        "colour_to_grey": bool(image.color),
        "cropped": transform.cropped,
        "padded": transform.padded,
        "resized": transform.resized,
        "mask": mask_origin,
    }
    return _Volume(entry=entry, subject=subject, rows=rows, blank=blank, facts=facts)


# -- the whole run ---------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    records: list[SliceRecord]
    report: dict[str, Any]
    manifest: Path
    report_path: Path


def _clear_outputs(out: Path, overwrite: bool) -> None:
    ours = [out / MANIFEST_CSV, out / MANIFEST_PARQUET, out / REPORT_JSON, out / STORE]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{out} already holds a prepared dataset ({existing[0].name}); pass overwrite "
            "(--overwrite) to replace it"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _count(rows: Sequence[SliceRecord], key: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name in splits.SPLITS:
        chosen = [r for r in rows if getattr(r, key) == name]
        out[name] = {
            "subjects": len({r.subject_id for r in chosen}),
            "volumes": len({r.volume_id for r in chosen}),
            "slices": len(chosen),
        }
    return out


def prepare(
    sources: Sequence[str | Path],
    out: str | Path,
    options: PrepareOptions | None = None,
    *,
    overwrite: bool = False,
) -> PrepareResult:
    """Scan ``sources``, write the slice store, the manifest and the report under ``out``."""
    options = options or PrepareOptions()
    started = time.monotonic()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a folder")
    regex = compile_subject_regex(options.subject_regex)
    salt = options.salt or new_salt()
    found = scan([Path(s) for s in sources])
    if not found.volumes:
        raise ConfigError(
            f"no image found under {', '.join(str(s) for s in sources)} (looked for DICOM "
            "series and NIfTI, NPY/NPZ, MAT, PNG, JPEG and TIFF files)"
        )
    entries = sorted(found.volumes, key=lambda e: (e.dataset, e.volume_id))
    if regex is not None:  # every path must give a subject id: fail before any work
        for entry in entries:
            subject_from_path(regex, entry.relative)
    if options.format == "parquet":
        _pyarrow()
    out.mkdir(parents=True, exist_ok=True)
    _clear_outputs(out, overwrite)
    (out / STORE).mkdir()
    warnings: list[str] = []
    skipped = list(found.skipped)
    volumes: list[_Volume] = []
    for entry in entries:
        try:
            volume = _prepare_volume(
                entry, len(volumes), out, options, salt=salt, regex=regex, warnings=warnings
            )
        except MedsrError as error:
            logger.warning("skipped %s: %s", entry.path, error)
            skipped.append({"path": str(entry.path), "error": str(error)})
            continue
        logger.info("%s: %d slices", entry.volume_id, len(volume.rows))
        volumes.append(volume)

    # cleaning: blank slices per volume, then exact duplicates across everything kept so far
    seen: dict[str, tuple[str, int]] = {}
    kept: list[tuple[_Volume, dict[str, Any]]] = []
    removed: dict[str, dict[str, Any]] = {}
    for volume in volumes:
        blank = set(volume.blank) if options.remove_blank else set()
        duplicates = []
        for row in volume.rows:
            k = row["slice_index"]
            if k in blank:
                continue
            first = seen.get(row["content_hash"])
            if first is not None and options.remove_duplicates:
                duplicates.append({"slice": k, "same_as": f"{first[0]}:{first[1]}"})
                continue
            seen.setdefault(row["content_hash"], (volume.entry.volume_id, k))
            kept.append((volume, row))
        volume.facts.update(
            blank_removed=len(blank),
            duplicate_removed=len(duplicates),
            kept=len(volume.rows) - len(blank) - len(duplicates),
        )
        if blank or duplicates:
            removed[volume.entry.volume_id] = {"blank": sorted(blank), "duplicate": duplicates}

    # subject-level split, stratified by the first dataset (in name order) of each subject
    strata: dict[str, str] = {}
    public: dict[str, str] = {}
    for volume, _ in kept:
        strata.setdefault(volume.subject.key, volume.entry.dataset)
        public[volume.subject.key] = volume.subject.id
    result = splits.assign_splits(strata, fractions=options.fractions, seed=options.seed)
    warnings.extend(result.warnings)
    records = [
        SliceRecord(**{**row, "split": result.assignment[volume.subject.key]})
        for volume, row in kept
    ]
    records.sort(key=lambda r: (r.dataset, r.volume_id, r.slice_index))

    manifest = write_manifest(records, out / MANIFEST_CSV)
    if options.format == "parquet":
        write_manifest(records, out / MANIFEST_PARQUET)
    report = _report(sources, options, volumes, records, removed, found, skipped, warnings)
    report["seconds"] = round(time.monotonic() - started, 2)
    report_path = out / REPORT_JSON
    report_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return PrepareResult(records=records, report=report, manifest=manifest, report_path=report_path)


def _report(
    sources: Sequence[str | Path],
    options: PrepareOptions,
    volumes: list[_Volume],
    records: list[SliceRecord],
    removed: dict[str, dict[str, Any]],
    found: Any,
    skipped: list[dict[str, str]],
    warnings: list[str],
) -> dict[str, Any]:
    by_dataset: dict[str, Counter] = defaultdict(Counter)
    for volume in volumes:
        c = by_dataset[volume.entry.dataset]
        c["volumes"] += 1
        c["slices"] += len(volume.rows)
        c["blank_removed"] += volume.facts["blank_removed"]
        c["duplicate_removed"] += volume.facts["duplicate_removed"]
        c["kept"] += volume.facts["kept"]
    for name in by_dataset:
        chosen = [r for r in records if r.dataset == name]
        by_dataset[name]["subjects"] = len({r.subject_id for r in chosen})
    totals: Counter = Counter()
    for c in by_dataset.values():
        totals.update(c)
    totals["subjects"] = len({r.subject_id for r in records})
    return {
        "medsr_version": __version__,
        "sources": [str(s) for s in sources],
        "options": options.public(),
        "totals": dict(totals),
        "by_dataset": {k: dict(v) for k, v in sorted(by_dataset.items())},
        "splits": _count(records, "split"),
        "splits_by_dataset": {
            name: _count([r for r in records if r.dataset == name], "split")
            for name in sorted(by_dataset)
        },
        "transforms": {
            key: sum(bool(v.facts[key]) for v in volumes)
            for key in ("colour_to_grey", "cropped", "padded", "resized")
        },
        "removed": removed,
        "volumes": [v.facts for v in volumes],
        "unattached_masks": list(found.unattached_masks),
        "skipped": skipped,
        "warnings": warnings,
    }


__all__ = [
    "COLUMNS",
    "DEFAULT_SLICE_AXIS",
    "MANIFEST_CSV",
    "MANIFEST_PARQUET",
    "REPORT_JSON",
    "STORE",
    "PrepareOptions",
    "PrepareResult",
    "SliceRecord",
    "manifest_path",
    "modality_from_name",
    "prepare",
    "read_manifest",
    "write_manifest",
]
