"""The DICOM series of a folder, listed and chosen without showing any identifier.

A folder can hold several series. medsr lists them by a 1-based index, the SeriesNumber, the
modality, the image size and the file count, and lets the user pick one by that index
(``medsr info/convert --series N``, ``read(folder, series=N)``). It never prints a
SeriesInstanceUID (an identifier under PS3.15) nor header free text such as SeriesDescription,
which often holds names. The order is stable: by SeriesNumber, then modality, size and file
count, then (unseen) UID, so the same folder always gives the same indices.

No pydicom import here: the headers come from :func:`medsr.io.dicom.list_series`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import MixedSeriesError, ReadError

__all__ = ["SeriesInfo", "choices_text", "list_folder", "pick", "summarise"]


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a folder. ``uid`` selects it internally; it is never shown (not in repr)."""

    index: int
    number: int | None
    modality: str
    rows: int
    columns: int
    files: int
    frames: int
    uid: str = field(repr=False)

    @property
    def size(self) -> str:
        return f"{self.rows} x {self.columns}"

    def describe(self) -> str:
        """``#2: number 5, MR, 256 x 256, 24 files``."""
        number = "no number" if self.number is None else f"number {self.number}"
        count = f"{self.files} file" + ("" if self.files == 1 else "s")
        if self.frames > self.files:
            count += f", {self.frames} frames"
        return f"#{self.index}: {number}, {self.modality}, {self.size}, {count}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``medsr info --json``): no UID, no free text."""
        return {
            "index": self.index,
            "number": self.number,
            "modality": self.modality,
            "rows": self.rows,
            "columns": self.columns,
            "files": self.files,
            "frames": self.frames,
        }


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _modality(value: Any) -> str:
    # a defined-term code (CT, MR, ...); anything else is not shown
    text = str(value or "").strip().upper()
    return text if text.isalnum() and len(text) <= 16 else "?"


def summarise(groups: Mapping[str, Sequence[tuple[Path, Any]]]) -> list[SeriesInfo]:
    """``list_series``'s groups (UID -> [(path, header)]) as numbered, identifier-free rows."""
    rows = []
    for uid, members in groups.items():
        first = members[0][1]
        frames = sum(_int(ds.get("NumberOfFrames", 1)) or 1 for _, ds in members)
        rows.append(
            (
                _int(first.get("SeriesNumber")),
                _modality(first.get("Modality")),
                _int(first.get("Rows")) or 0,
                _int(first.get("Columns")) or 0,
                len(members),
                frames,
                uid,
            )
        )
    rows.sort(key=lambda r: (r[0] is None, r[0] or 0, r[1], r[2], r[3], -r[4], r[6]))
    return [SeriesInfo(k, *row) for k, row in enumerate(rows, start=1)]


def choices_text(infos: Sequence[SeriesInfo]) -> str:
    """The series on one line, for error messages."""
    return "; ".join(info.describe() for info in infos)


def list_folder(folder: Path) -> list[SeriesInfo]:
    """The image series directly in ``folder`` (not recursive), numbered."""
    from medsr.io.dicom import list_series

    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    infos = summarise(list_series(files))
    if not infos:
        raise ReadError(folder, "no DICOM image files in this folder")
    return infos


def pick(folder: Path, infos: Sequence[SeriesInfo], index: int) -> SeriesInfo:
    """The series with 1-based ``index``; an error that lists the choices otherwise."""
    for info in infos:
        if info.index == index:
            return info
    raise MixedSeriesError(
        folder,
        f"no series #{index}: the folder holds {len(infos)} series "
        f"({choices_text(infos)}); choose one with --series N (1 to {len(infos)})",
    )
