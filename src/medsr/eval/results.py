"""Per-image result files: a CSV written row by row, safe to interrupt and resume.

``results.csv`` holds one row per (method, image); ``results.csv.json`` beside it records
the settings that made it (manifest, degradation, metrics, regions, border, slice selection,
and each method's spec). Opening an existing file with :class:`ResultsFile`:

* keeps every complete row and reports their keys as done, so the caller skips them;
* drops a last line cut off by an interruption (a line without its newline);
* refuses (``ConfigError``) when the settings or the columns differ: numbers made under
  other settings must not be mixed into one table. A method may be added to a benchmark
  (its rows are computed), but a method name may not change its spec.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.errors import ConfigError

__all__ = [
    "KEY_COLUMNS",
    "TEXT_COLUMNS",
    "ResultsFile",
    "format_value",
    "read_results",
    "row_key",
]

KEY_COLUMNS: tuple[str, ...] = ("method", "split", "volume_id", "slice_index")
"""The columns that identify a row: one method on one slice."""

TEXT_COLUMNS: frozenset[str] = frozenset(
    {"method", "split", "dataset", "modality", "subject_id", "volume_id", "notes"}
)
"""Columns read back as text; ``slice_index``, sizes and ``scale`` as int; the rest float."""

INT_COLUMNS: frozenset[str] = frozenset(
    {"slice_index", "height", "width", "lr_height", "lr_width", "scale"}
)

FORMAT = "medsr-eval-results"
VERSION = 1

Key = tuple[str, str, str, int]


def row_key(row: Mapping[str, Any]) -> Key:
    """``(method, split, volume_id, slice_index)`` of a row."""
    return (str(row["method"]), str(row["split"]), str(row["volume_id"]), int(row["slice_index"]))


def format_value(value: Any) -> str:
    """A cell: floats at full precision (``repr``), NaN as ``nan``, infinities as ``inf``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value)
    return "" if value is None else str(value)


def _parse(column: str, text: str) -> Any:
    if column in TEXT_COLUMNS:
        return text
    if column in INT_COLUMNS:
        return int(text)
    return float(text) if text != "" else math.nan


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a results CSV, numbers parsed (``nan``, ``inf`` included)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the results ({error})") from error
    text = _complete_lines(text)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in KEY_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(f"{path}: not a medsr results file (no column(s) {missing})")
    return [{k: _parse(k, v) for k, v in row.items()} for row in reader]


def _complete_lines(text: str) -> str:
    """``text`` without a last line that an interruption cut off (no final newline)."""
    if text and not text.endswith("\n"):
        cut = text.rfind("\n")
        return text[: cut + 1] if cut >= 0 else ""
    return text


class ResultsFile:
    """Append rows to ``path`` one at a time (each flushed), resuming an earlier run.

    Args:
        path: the CSV file; its settings go to ``path + ".json"``.
        columns: every column, in order (the key columns among them).
        settings: JSON-serialisable description of what the rows depend on, except the
            methods.
        methods: ``{name: spec}`` of the methods this run evaluates.
        resume: False starts over (an existing file is replaced).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        columns: Sequence[str],
        settings: Mapping[str, Any],
        methods: Mapping[str, str],
        resume: bool = True,
    ) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.columns = list(columns)
        missing = [c for c in KEY_COLUMNS if c not in self.columns]
        if missing:
            raise ConfigError(f"results columns lack the key column(s) {missing}")
        self.settings = json.loads(json.dumps(settings))  # normalise tuples to lists
        self.methods = dict(methods)
        self.done: set[Key] = set()
        self.rows: list[dict[str, Any]] = []
        if resume and self.path.exists() and self.path.stat().st_size > 0:
            self._resume()
        else:
            self._start()
        self._file = self.path.open("a", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.columns, lineterminator="\n")

    # -- opening --------------------------------------------------------------------------------
    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow(self.columns)
        self._write_meta(self.methods)

    def _resume(self) -> None:
        previous_methods: dict[str, str] = {}
        if self.meta_path.exists():
            try:
                meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise ConfigError(f"{self.meta_path}: unreadable ({error})") from error
            if meta.get("format") != FORMAT:
                raise ConfigError(f"{self.meta_path}: not a medsr results settings file")
            if meta.get("settings") != self.settings:
                changed = _changed_keys(meta.get("settings") or {}, self.settings)
                raise ConfigError(
                    f"{self.path} was made with other settings (changed: {', '.join(changed)}); "
                    "write to another file, or start over (--fresh)"
                )
            previous_methods = dict(meta.get("methods") or {})
            for name, spec in self.methods.items():
                if name in previous_methods and previous_methods[name] != spec:
                    raise ConfigError(
                        f"{self.path}: method {name!r} was {previous_methods[name]!r} and is now "
                        f"{spec!r}; give it another name, or start over (--fresh)"
                    )
        text = self.path.read_text(encoding="utf-8")
        complete = _complete_lines(text)
        if complete != text:
            # an interrupted write left half a row: drop it before appending
            with self.path.open("w", encoding="utf-8", newline="") as f:
                f.write(complete)
        header = next(csv.reader(io.StringIO(complete)), None)
        if header != self.columns:
            raise ConfigError(
                f"{self.path} has other columns than this run writes (metrics or regions "
                "changed); write to another file, or start over (--fresh)"
            )
        self.rows = read_results(self.path)
        self.done = {row_key(r) for r in self.rows}
        self._write_meta({**previous_methods, **self.methods})

    def _write_meta(self, methods: Mapping[str, str]) -> None:
        meta = {"format": FORMAT, "version": VERSION, "settings": self.settings, "methods": methods}
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.meta_path)

    # -- writing --------------------------------------------------------------------------------
    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row (missing columns empty) and flush it to disk."""
        unknown = sorted(set(row) - set(self.columns))
        if unknown:
            raise ConfigError(f"row has column(s) {unknown} that the results file lacks")
        self._writer.writerow({c: format_value(row.get(c)) for c in self.columns})
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add(row_key(row))
        self.rows.append(dict(row))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys: Iterable[str] = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)] or ["format"]
