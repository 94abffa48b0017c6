"""Find the volumes (and their masks) under the sources given to ``medsr prepare``.

What is a volume:

* a **DICOM series**: every folder holding DICOM files (``.dcm``/``.dicom``/``.ima``, or any
  file with the ``DICM`` preamble) gives one volume per SeriesInstanceUID (non-image objects
  such as SEG, RTSTRUCT, SR or presentation states are skipped);
* every other **image file** that ``medsr.io.read`` knows by its suffix (NIfTI, NPY/NPZ,
  MAT, PNG/JPEG, TIFF), unless its name says it is a mask.

Datasets: a folder given as a source is a dataset named after the folder; a file given as a
source, or a source folder that is itself one DICOM series, belongs to the dataset named after
its parent folder.

Masks (rule, applied per folder): a file whose name (without suffix, case-insensitive)
contains ``mask``, ``seg`` or ``label`` (e.g. ``brainmask.nii.gz``, ``case1_seg.nii.gz``,
``img_label.png``) is a mask, never an image. It is attached to

1. the image of the same folder whose name it equals once the mask word and the separators
   next to it are removed (``case1_mask.png`` -> ``case1.png``), else
2. when the folder holds exactly one such unmatched mask, to every image of that folder
   (BraTS ``pat0003/brainmask.nii.gz`` -> the FLAIR and the T1c of ``pat0003``).

Other masks are listed as unattached in the report. Masks stored inside a file (the npz
``mask`` array, the figshare MAT ``cjdata.tumorMask``) come with the image from
``medsr.io.read``. A mask must have the image's shape; it is read as ``mask > 0``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from medsr.errors import ConfigError, MedsrError
from medsr.io.read import SUFFIX_FORMATS, suffix_of

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = frozenset(s for s, f in SUFFIX_FORMATS.items() if f == "dicom")
IMAGE_SUFFIXES = frozenset(s for s, f in SUFFIX_FORMATS.items() if f != "dicom")
MASK_WORDS = ("mask", "seg", "label")
_MASK_WORD = re.compile(r"[-_. ]*(?:mask|seg(?:mentation)?|labels?)[-_. ]*", re.IGNORECASE)
# DICOM objects with Rows/Columns that are not images to super-resolve.
NON_IMAGE_MODALITIES = frozenset({"SEG", "RTSTRUCT", "RTDOSE", "RTPLAN", "PR", "SR", "KO", "REG"})

DEFAULT_SLICE_AXIS: dict[str, int] = {"npz": 2, "npy": 2}
"""Slice axis by source format when none is given. ``npz``/``npy`` arrays are usually
``(H, W, S)`` dumps with the slices last; every other reader already returns ``(Z, Y, X)``
(DICOM slice order, NIfTI third voxel axis, TIFF pages, MAT third dimension)."""


@dataclass(frozen=True)
class VolumeEntry:
    """One volume to prepare: a file, or a DICOM folder plus the series to read from it."""

    path: Path
    root: Path
    dataset: str
    format: str
    series_uid: str | None = None
    series_number: int = 0
    mask_path: Path | None = None

    @property
    def relative(self) -> str:
        """The path under the source root, POSIX style (``.`` for the root itself)."""
        return self.path.relative_to(self.root).as_posix() if self.path != self.root else "."

    @property
    def volume_id(self) -> str:
        """``dataset/relative-path-without-suffix`` (``#n`` for the n-th series of a folder)."""
        rel = self.relative
        if self.path.is_file():
            rel = rel[: len(rel) - len(suffix_of(self.path))]
        base = self.dataset if rel == "." else f"{self.dataset}/{rel}"
        return f"{base}#{self.series_number}" if self.series_number else base


@dataclass
class ScanResult:
    volumes: list[VolumeEntry] = field(default_factory=list)
    unattached_masks: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def stem(path: Path) -> str:
    """File name without its suffix (``.nii.gz`` counts as one)."""
    return path.name[: len(path.name) - len(suffix_of(path))]


def is_mask_name(path: Path) -> bool:
    name = stem(path).lower()
    return any(word in name for word in MASK_WORDS)


def _is_dicom(path: Path) -> bool:
    suffix = suffix_of(path)
    if suffix in DICOM_SUFFIXES:
        return True
    if suffix in IMAGE_SUFFIXES:
        return False
    from medsr.io import dicom  # pydicom loads with the first DICOM candidate

    return dicom.has_dicom_preamble(path)


def _walk(root: Path) -> list[tuple[Path, list[Path]]]:
    """(folder, its visible files), sorted, for ``root`` and every visible subfolder."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = sorted(f for f in files if not f.startswith("."))
        out.append((Path(folder), [Path(folder) / n for n in names]))
    return out


def _dicom_series(
    folder: Path, files: list[Path], root: Path, dataset: str, result: ScanResult
) -> None:
    from medsr.io import dicom

    try:
        groups = dicom.list_series(files)
    except MedsrError as error:
        result.skipped.append({"path": str(folder), "error": str(error)})
        return
    images = {
        uid: members
        for uid, members in groups.items()
        if str(members[0][1].get("Modality", "")).upper() not in NON_IMAGE_MODALITIES
    }
    for uid in sorted(set(groups) - set(images)):
        modality = groups[uid][0][1].get("Modality", "")
        result.skipped.append(
            {"path": str(folder), "error": f"a {modality} series (not an image) was skipped"}
        )
    several = len(images) > 1
    for number, uid in enumerate(sorted(images), start=1):
        result.volumes.append(
            VolumeEntry(
                path=folder,
                root=root,
                dataset=dataset,
                format="dicom",
                series_uid=uid if several else None,
                series_number=number if several else 0,
            )
        )


def _attach_masks(images: list[Path], masks: list[Path]) -> tuple[dict[Path, Path], list[Path]]:
    by_stem = {stem(p).lower(): p for p in images}
    attached: dict[Path, Path] = {}
    unmatched = []
    for mask in masks:
        bare = _MASK_WORD.sub("", stem(mask)).lower()
        if bare in by_stem:
            attached[by_stem[bare]] = mask
        else:
            unmatched.append(mask)
    if len(unmatched) == 1:
        for image in images:
            attached.setdefault(image, unmatched[0])
        return attached, []
    return attached, unmatched


def scan(sources: list[Path]) -> ScanResult:
    """The volumes under ``sources`` (files or folders), in a deterministic order."""
    result = ScanResult()
    for source in sources:
        source = Path(source)
        if not source.exists():
            raise ConfigError(f"source {source} does not exist")
        resolved = source.resolve()
        if source.is_file():
            if is_mask_name(source):
                result.unattached_masks.append(str(source))
                continue
            fmt = SUFFIX_FORMATS.get(suffix_of(source))
            if fmt is None and not _is_dicom(source):
                raise ConfigError(
                    f"source {source} is not an image medsr reads by its suffix "
                    f"({', '.join(sorted(SUFFIX_FORMATS))}) nor a DICOM file"
                )
            result.volumes.append(
                VolumeEntry(
                    path=resolved,
                    root=resolved.parent,
                    dataset=resolved.parent.name,
                    format=fmt or "dicom",
                )
            )
            continue
        walked = _walk(resolved)
        root_is_series = any(_is_dicom(f) for f in walked[0][1])
        dataset = resolved.parent.name if root_is_series else resolved.name
        root = resolved.parent if root_is_series else resolved
        for folder, files in walked:
            dicom_files = [f for f in files if _is_dicom(f)]
            if dicom_files:
                _dicom_series(folder, dicom_files, root, dataset, result)
            others = [f for f in files if suffix_of(f) in IMAGE_SUFFIXES]
            masks = [f for f in others if is_mask_name(f)]
            images = [f for f in others if not is_mask_name(f)]
            attached, unattached = _attach_masks(images, masks)
            result.unattached_masks.extend(str(m) for m in unattached)
            for image in images:
                result.volumes.append(
                    VolumeEntry(
                        path=image,
                        root=root,
                        dataset=dataset,
                        format=SUFFIX_FORMATS[suffix_of(image)],
                        mask_path=attached.get(image),
                    )
                )
    seen: set[tuple[Path, str | None]] = set()
    unique = []
    for entry in result.volumes:  # a file reached through two sources is prepared once
        if (entry.path, entry.series_uid) not in seen:
            seen.add((entry.path, entry.series_uid))
            unique.append(entry)
    result.volumes = unique
    for mask in result.unattached_masks:
        logger.warning("mask %s matches no image (see the mask rule in medsr prepare --help)", mask)
    return result


__all__ = ["MASK_WORDS", "ScanResult", "VolumeEntry", "is_mask_name", "scan", "stem"]
