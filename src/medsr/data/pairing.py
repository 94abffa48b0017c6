"""Pair the slices of a real LR series with those of an HR series of the same patient space.

Each slice's ImagePositionPatient (the centre of its first pixel, mm) is projected on the
common slice normal (the mean of the two series' normals); every LR slice is paired with
the HR slice nearest along that normal (ties go to the HR slice with the lower position).
Both series must share the FrameOfReferenceUID (otherwise their positions are not in the same
space) and the orientation (row and column direction cosines within ``angle_tolerance``
degrees). LR slices whose nearest HR slice is farther than ``tolerance`` (default: half the
HR slice spacing) are listed as unmatched.

Only headers are read for a folder of single-frame files; a multi-frame file is read with
``medsr.io.read`` and its frame positions taken from the resulting geometry.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsr.errors import ConfigError, GeometryError, MixedSeriesError, ReadError
from medsr.io import dicom, read


@dataclass(frozen=True)
class SeriesSlices:
    """Positions of the slices of one series, sorted along the slice normal."""

    path: Path
    frame_of_reference: str | None
    row_direction: np.ndarray  # (3,) unit vector: ImageOrientationPatient[:3]
    column_direction: np.ndarray  # (3,) unit vector: ImageOrientationPatient[3:]
    positions: np.ndarray  # (N, 3) ImagePositionPatient, mm, LPS
    names: tuple[str, ...]  # file name of each slice ("name#frame" for multi-frame files)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.row_direction, self.column_direction)
        return n / np.linalg.norm(n)

    def __len__(self) -> int:
        return len(self.positions)


def _unit(values: list[float], where: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm < 1e-6:
        raise GeometryError(f"{where}: invalid ImageOrientationPatient {values}")
    return v / norm


def _header_floats(ds, keyword: str, n: int, where: str) -> list[float]:
    value = ds.get(keyword)
    try:
        floats = [float(x) for x in value]
    except (TypeError, ValueError):
        floats = []
    if len(floats) != n or not all(math.isfinite(x) for x in floats):
        raise GeometryError(f"{where}: missing or invalid {keyword}; cannot place the slice")
    return floats


def series_slices(path: str | Path, *, series_uid: str | None = None) -> SeriesSlices:
    """Slice positions of a DICOM series folder (one series, or ``series_uid``) or file."""
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "no such file or folder")
    if path.is_file():
        return _file_slices(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    groups = dicom.list_series(files)
    if not groups:
        raise ReadError(path, "no DICOM image files in this folder")
    if series_uid is not None:
        if series_uid not in groups:
            raise MixedSeriesError(
                path, f"no series with that SeriesInstanceUID; {dicom.series_choices(groups)}"
            )
        members = groups[series_uid]
    elif len(groups) > 1:
        raise MixedSeriesError(
            path,
            f"{dicom.series_choices(groups)}; put each series in its own folder or name one "
            "with --lr-series-uid / --hr-series-uid",
        )
    else:
        members = next(iter(groups.values()))
    if len(members) == 1 and int(members[0][1].get("NumberOfFrames", 1) or 1) > 1:
        return _file_slices(members[0][0])
    frames = {str(ds.get("FrameOfReferenceUID", "") or "") for _, ds in members}
    if len(frames) > 1:
        raise MixedSeriesError(path, "slices of the series have different FrameOfReferenceUIDs")
    orientations = [
        _header_floats(ds, "ImageOrientationPatient", 6, f"{path}/{p.name}") for p, ds in members
    ]
    if any(not np.allclose(o, orientations[0], atol=1e-4) for o in orientations):
        raise MixedSeriesError(path, "slices of the series have different orientations")
    positions = np.asarray(
        [_header_floats(ds, "ImagePositionPatient", 3, f"{path}/{p.name}") for p, ds in members]
    )
    row, col = _unit(orientations[0][:3], str(path)), _unit(orientations[0][3:], str(path))
    normal = np.cross(row, col)
    order = np.argsort(positions @ normal, kind="stable")
    return SeriesSlices(
        path=path,
        frame_of_reference=frames.pop() or None,
        row_direction=row,
        column_direction=col,
        positions=positions[order],
        names=tuple(members[i][0].name for i in order),
    )


def _file_slices(path: Path) -> SeriesSlices:
    image = read(path)
    source = image.source
    if source is None or source.format != "dicom":
        raise ReadError(path, "pairing needs DICOM series (ImagePositionPatient)")
    header = source.datasets[0]
    frame = str(header.get("FrameOfReferenceUID", "") or "") or None
    if image.is_volume:
        steps = np.arange(image.spatial_shape[0])[:, None] * image.spacing[0]
        positions = np.asarray(image.origin)[None, :] + steps * image.direction[:, 0][None, :]
        order = source.frame_order or tuple(range(len(positions)))
        names = tuple(f"{path.name}#{k + 1}" for k in order)
    else:
        positions, names = np.asarray([image.origin]), (path.name,)
    row, col = image.direction[:, -1], image.direction[:, -2]
    normal = np.cross(row, col)
    sort = np.argsort(positions @ normal, kind="stable")
    return SeriesSlices(
        path=path,
        frame_of_reference=frame,
        row_direction=np.asarray(row, float),
        column_direction=np.asarray(col, float),
        positions=positions[sort],
        names=tuple(names[i] for i in sort),
    )


@dataclass(frozen=True)
class SlicePair:
    """One LR slice and its nearest HR slice; positions along the common normal (mm)."""

    lr_index: int
    lr_name: str
    lr_position: float
    hr_index: int
    hr_name: str
    hr_position: float
    distance: float  # |lr_position - hr_position|, mm
    in_plane_offset: float  # distance between the two IPPs within the slice plane, mm
    matched: bool  # distance <= tolerance


@dataclass(frozen=True)
class Pairing:
    pairs: tuple[SlicePair, ...]
    tolerance: float
    normal: tuple[float, float, float]

    @property
    def unmatched(self) -> list[SlicePair]:
        return [p for p in self.pairs if not p.matched]


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(a, b), -1.0, 1.0))))


def pair_series(
    lr: SeriesSlices,
    hr: SeriesSlices,
    *,
    tolerance: float | None = None,
    angle_tolerance: float = 0.5,
) -> Pairing:
    """Pair every LR slice with the nearest HR slice (see the module docstring)."""
    if lr.frame_of_reference is None or hr.frame_of_reference is None:
        missing = lr.path if lr.frame_of_reference is None else hr.path
        raise GeometryError(
            f"{missing}: no FrameOfReferenceUID, so its positions cannot be compared with the "
            "other series"
        )
    if lr.frame_of_reference != hr.frame_of_reference:
        raise GeometryError(
            f"the series have different FrameOfReferenceUIDs ({lr.path}: "
            f"{lr.frame_of_reference}, {hr.path}: {hr.frame_of_reference}); their positions "
            "are in different patient spaces and cannot be paired"
        )
    for what, a, b in (
        ("row", lr.row_direction, hr.row_direction),
        ("column", lr.column_direction, hr.column_direction),
    ):
        angle = _angle(a, b)
        if angle > angle_tolerance:
            raise GeometryError(
                f"the series have different orientations: the {what} directions of {lr.path} "
                f"{np.round(a, 4).tolist()} and {hr.path} {np.round(b, 4).tolist()} differ by "
                f"{angle:.2f} degrees (allowed {angle_tolerance}); reformat one of them first"
            )
    normal = lr.normal + hr.normal
    normal /= np.linalg.norm(normal)
    lr_along, hr_along = lr.positions @ normal, hr.positions @ normal
    if tolerance is None:
        if len(hr) < 2:
            raise ConfigError("the HR series has one slice: give the tolerance (mm) explicitly")
        tolerance = float(np.median(np.diff(np.sort(hr_along)))) / 2.0
    if not tolerance >= 0:
        raise ConfigError(f"tolerance must be >= 0 mm, got {tolerance}")
    pairs = []
    for i, s in enumerate(lr_along):
        gaps = np.abs(hr_along - s)
        # Ties (a thick slice centred between two thin ones) go to the lower position.
        j = int(np.lexsort((hr_along, np.round(gaps, 6)))[0])
        offset = lr.positions[i] - hr.positions[j]
        offset -= (offset @ normal) * normal
        distance = float(abs(s - hr_along[j]))
        pairs.append(
            SlicePair(
                lr_index=i,
                lr_name=lr.names[i],
                lr_position=float(s),
                hr_index=j,
                hr_name=hr.names[j],
                hr_position=float(hr_along[j]),
                distance=distance,
                in_plane_offset=float(np.linalg.norm(offset)),
                matched=distance <= tolerance + 1e-6,
            )
        )
    return Pairing(pairs=tuple(pairs), tolerance=float(tolerance), normal=tuple(normal.tolist()))


PAIR_COLUMNS = (
    "lr_index",
    "lr_file",
    "lr_position_mm",
    "hr_index",
    "hr_file",
    "hr_position_mm",
    "distance_mm",
    "in_plane_offset_mm",
    "within_tolerance",
)


def write_pairs(pairing: Pairing, path: str | Path) -> Path:
    """The pairs as CSV (columns :data:`PAIR_COLUMNS`; indices in position order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        for p in pairing.pairs:
            writer.writerow(
                [
                    p.lr_index,
                    p.lr_name,
                    f"{p.lr_position:.4f}",
                    p.hr_index,
                    p.hr_name,
                    f"{p.hr_position:.4f}",
                    f"{p.distance:.4f}",
                    f"{p.in_plane_offset:.4f}",
                    "true" if p.matched else "false",
                ]
            )
    return path


__all__ = [
    "PAIR_COLUMNS",
    "Pairing",
    "SeriesSlices",
    "SlicePair",
    "pair_series",
    "series_slices",
    "write_pairs",
]
