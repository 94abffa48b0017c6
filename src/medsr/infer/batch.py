"""Archive-scale batch inference: sharded over processes, resumable, with a results manifest.

:func:`run_batch` runs a *processor* (``process(item, staging) -> ItemResult``: read one
input, super-resolve it, write its output under ``staging``) over many inputs:

- **Sharding**: the pending inputs, sorted by :attr:`BatchItem.key`, are dealt round-robin to
  the ``world_size`` processes (``pending[rank::world_size]``): deterministic, and balanced
  when sizes cluster by folder. Under ``torchrun`` the process group comes from
  :func:`medsr.distributed.setup` (gloo on the CPU, NCCL with one GPU per process).
- **Atomic outputs**: each output is written under a staging folder inside ``out`` (same file
  system) and renamed into the mirrored tree only when complete.
- **Manifest**: one CSV row per input attempt outcome (:data:`MANIFEST_COLUMNS`), appended,
  flushed and fsynced to a per-process part file as soon as the input is done; at the end
  rank 0 merges the parts and any earlier manifest into ``manifest.csv`` (one row per input,
  sorted; ``manifest.parquet`` too when pyarrow is installed).
- **Resume**: a re-run skips inputs whose manifest row says ``ok`` (same settings) and whose
  output exists, so a kill loses at most the inputs in flight. An output in place is only
  ever replaced when medsr wrote it (listed in ``OUT/.medsr-outputs``, see
  :mod:`medsr.infer.outputs`, or in an earlier manifest) and no earlier manifest gives it to
  another input. Failed inputs are retried once
  at the end of the pass, then recorded as ``failed``; they never stop the others, and a
  re-run tries them again.
- **Throughput**: :class:`BatchReport` holds inputs/s and slices/s per process and overall.

See docs/batch.md.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr.errors import ConfigError, MedsrError, WriteError
from medsr.infer.outputs import OutputLedger, not_an_output

if TYPE_CHECKING:
    from medsr.distributed import DistInfo

__all__ = [
    "MANIFEST_COLUMNS",
    "WORK_DIR",
    "BatchItem",
    "BatchReport",
    "ItemResult",
    "RankStats",
    "common_root",
    "has_previous_run",
    "read_list_file",
    "read_manifest",
    "run_batch",
    "shard",
]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "input",
    "series_uid",
    "output",
    "status",
    "error",
    "attempts",
    "input_shape",
    "output_shape",
    "input_spacing",
    "output_spacing",
    "slices",
    "model",
    "settings",
    "fidelity_psnr",
    "seconds",
    "rank",
    "finished",
)
"""Columns of the manifest. ``input``: the absolute input path; ``output``: relative to the
output folder; shapes and spacings as ``AxBxC``; ``fidelity_psnr`` in dB (``inf`` when
exact); ``seconds``: the successful (or last) attempt; ``finished``: UTC ISO time. The last
column doubles as the completeness check of a row cut short by a kill."""

WORK_DIR = ".medsr-batch"
"""Folder inside the output folder that holds the part manifests and the staging folders."""

STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class BatchItem:
    """One input: a file or a DICOM series folder (``series_uid`` picks one series of a folder
    holding several), and ``stem``, its output path relative to the output folder without
    the format's suffix."""

    path: Path
    stem: Path
    series_uid: str | None = None

    @property
    def key(self) -> str:
        """Identity of the input across runs: its absolute path (and series UID)."""
        text = str(Path(os.path.abspath(self.path)))
        return f"{text}#{self.series_uid}" if self.series_uid else text


@dataclass(frozen=True)
class ItemResult:
    """What a processor made of one input. ``output``: the written file or folder, under the
    ``staging`` folder it was given (or None on failure, with ``error`` set). Shapes and
    spacings in array order; ``slices``: planes of the input (1 for a 2D image)."""

    output: Path | None = None
    error: str | None = None
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    input_spacing: tuple[float, ...] = ()
    output_spacing: tuple[float, ...] = ()
    slices: int = 1
    model: str = ""
    fidelity_psnr: float = math.nan


Processor = Callable[[BatchItem, Path], ItemResult]
"""``process(item, staging) -> ItemResult``: write the output under ``staging`` (a fresh,
empty folder) at ``staging / item.stem`` plus the format's suffix. An exception counts as a
failed attempt."""


@dataclass(frozen=True)
class RankStats:
    """One process's share: inputs done (ok + failed), slices of the ok ones, wall seconds
    of its loop."""

    rank: int
    ok: int
    failed: int
    slices: int
    seconds: float

    @property
    def inputs_per_s(self) -> float:
        return (self.ok + self.failed) / self.seconds if self.seconds > 0 else 0.0

    @property
    def slices_per_s(self) -> float:
        return self.slices / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchReport:
    """The whole run (filled on every rank; ``ranks`` and ``failures`` cover all ranks).

    ``total``: inputs found; ``skipped``: already done by an earlier run; ``failures``:
    ``(input, error)`` of the inputs that failed twice in this run.
    """

    total: int
    skipped: int
    ok: int
    failed: int
    seconds: float
    ranks: list[RankStats] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def inputs_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0

    @property
    def slices_per_s(self) -> float:
        slices = sum(r.slices for r in self.ranks)
        return slices / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """Human-readable throughput report."""
        out = [
            f"throughput: {self.inputs_per_s:.2f} inputs/s, {self.slices_per_s:.2f} slices/s "
            f"over {self.seconds:.1f} s with {len(self.ranks)} process(es)"
        ]
        for r in self.ranks:
            n = r.ok + r.failed
            out.append(
                f"  rank {r.rank}: {n} input{'' if n == 1 else 's'} ({r.failed} failed), "
                f"{r.slices} slices in {r.seconds:.1f} s: {r.inputs_per_s:.2f} inputs/s, "
                f"{r.slices_per_s:.2f} slices/s"
            )
        return out


# -- inputs --------------------------------------------------------------------------------------
def read_list_file(path: str | Path) -> list[Path]:
    """The inputs named in a list file: one path a line; blank lines and lines starting with
    ``#`` are ignored; relative paths are relative to the list file's folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the list file {path}: {error.strerror}") from None
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = Path(line).expanduser()
        entries.append(entry if entry.is_absolute() else path.parent / entry)
    if not entries:
        raise ConfigError(f"the list file {path} names no inputs")
    return entries


def common_root(paths: Sequence[Path]) -> Path:
    """The deepest folder holding all ``paths`` (the root of the mirrored output tree)."""
    parents = [os.path.abspath(p if p.is_dir() else p.parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else Path.cwd()


def shard(items: Sequence[BatchItem], rank: int, world_size: int) -> list[BatchItem]:
    """This rank's inputs: every ``world_size``-th of ``items`` sorted by key, from ``rank``."""
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is outside 0..{world_size - 1}")
    return sorted(items, key=lambda item: item.key)[rank::world_size]


# -- manifest ------------------------------------------------------------------------------------
def _fmt_tuple(values: tuple[Any, ...], digits: bool = False) -> str:
    return "x".join(f"{v:.6g}" if digits else str(v) for v in values)


def _row(item: BatchItem, result: ItemResult | None, **extra: Any) -> dict[str, str]:
    r = result or ItemResult()
    output = ""
    if r.output is not None:
        output = str(r.output)
    row = {
        "input": os.path.abspath(item.path),
        "series_uid": item.series_uid or "",
        "output": output,
        "input_shape": _fmt_tuple(r.input_shape),
        "output_shape": _fmt_tuple(r.output_shape),
        "input_spacing": _fmt_tuple(r.input_spacing, digits=True),
        "output_spacing": _fmt_tuple(r.output_spacing, digits=True),
        "slices": str(r.slices) if r.input_shape else "",
        "model": r.model,
        "fidelity_psnr": "" if math.isnan(r.fidelity_psnr) else f"{r.fidelity_psnr:.4f}",
        "finished": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    row.update({k: str(v) for k, v in extra.items()})
    # one physical line per row, so a row cut short by a kill is recognisable (no newline)
    return {name: " ".join(row.get(name, "").splitlines()) for name in MANIFEST_COLUMNS}


def _row_key(row: dict[str, str]) -> str:
    return f"{row['input']}#{row['series_uid']}" if row["series_uid"] else row["input"]


def _complete(row: dict[str, Any]) -> bool:
    if any(row.get(name) is None for name in MANIFEST_COLUMNS) or None in row:
        return False
    if row["status"] not in STATUSES:
        return False
    try:
        return datetime.fromisoformat(row["finished"]).tzinfo is not None
    except ValueError:
        return False


def read_manifest(path: str | Path) -> list[dict[str, str]]:
    """The complete rows of a manifest (or part) CSV; a row cut short by a kill is dropped."""
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):  # the last row was being written when the process died
        text = text[: text.rfind("\n") + 1]
    if not text:
        return []
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise ConfigError(
                f"{path} is not a medsr batch manifest (columns {reader.fieldnames}); "
                "choose another output folder or --manifest"
            )
        return [row for row in reader if _complete(row)]


class _PartWriter:
    """Appends rows to this rank's part manifest, flushed and fsynced one by one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = path.open("a", newline="", encoding="utf-8")
        self._write_line(MANIFEST_COLUMNS)

    def _write_line(self, values: Sequence[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._file.write(buffer.getvalue())  # one write per row: a kill cuts at most one
        self._file.flush()
        os.fsync(self._file.fileno())

    def write(self, row: dict[str, str]) -> None:
        self._write_line([row[name] for name in MANIFEST_COLUMNS])

    def close(self) -> None:
        self._file.close()


def _write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.table({name: [row[name] for row in rows] for name in MANIFEST_COLUMNS})
    parquet = path.with_suffix(".parquet")
    tmp = parquet.with_name(f".{parquet.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, parquet)


# -- outputs -------------------------------------------------------------------------------------
def _exists(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _check_replace(target: Path, item: BatchItem, plan: _Plan, ledger: OutputLedger) -> None:
    """Refuse to put ``item``'s output at ``target`` over something that is there, unless it
    may be replaced: this run replaces (a resume, or --overwrite), and ``target`` is an
    earlier output of this very input (manifest) or one medsr listed in ``ledger``, and no
    earlier manifest says it is another input's output."""
    if not (target.is_symlink() or _exists(target)):
        return
    if not plan.replace:
        raise WriteError(target, "already exists (pass --overwrite to replace it)")
    owner = plan.owners.get(Path(os.path.relpath(target, ledger.root)).as_posix())
    if owner is not None and owner != item.key:
        raise WriteError(
            target,
            f"is the output of another input ({owner.split('#')[0]}) in this folder's "
            "manifest; not replaced",
        )
    if owner is None and not ledger.lists(target):
        raise WriteError(target, not_an_output(ledger))


def _promote(staged: Path, target: Path) -> None:
    """Move a finished output into place (a rename within one file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        # a leftover from a run killed before its manifest row was written: redone, replaced
        shutil.rmtree(target)
    os.replace(staged, target)


# -- the run -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    pending: list[BatchItem]
    skipped: int
    run_id: str
    replace: bool = False  # outputs already in place are leftovers (or --overwrite)
    total: int = 0
    error: str | None = None
    # the outputs earlier runs' manifests list as done, and the input each belongs to
    owners: dict[str, str] = field(default_factory=dict)


def _plan(
    items: Sequence[BatchItem] | Callable[[], Sequence[BatchItem]],
    out: Path,
    manifest: Path,
    settings: str,
    overwrite: bool,
) -> _Plan:
    if callable(items):
        items = items()
    fresh = not has_previous_run(out, manifest)
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("tmp-*"):  # staging of killed runs
        shutil.rmtree(stale, ignore_errors=True)
    parts = sorted(work.glob("part-*.csv"))
    earlier = [row for path in [manifest, *parts] for row in read_manifest(path)]
    if overwrite:
        for part in parts:
            part.unlink()
        manifest.unlink(missing_ok=True)
    unique: dict[str, BatchItem] = {}
    for item in items:
        if item.key in unique:
            logger.warning("%s is given twice; it is done once", item.key)
        unique.setdefault(item.key, item)
    done: dict[str, dict[str, str]] = {}
    for row in earlier:
        if row["status"] != "ok":
            done.pop(_row_key(row), None)
            continue
        if row["settings"] != settings and not overwrite:
            raise ConfigError(
                f"{manifest.parent} holds outputs made with other settings "
                f"({row['settings']!r}, this run: {settings!r}); choose another output "
                "folder, or pass --overwrite to redo them all"
            )
        done[_row_key(row)] = row
    owners: dict[str, str] = {}
    shared: set[str] = set()  # one output listed for two inputs (older medsr): trust neither
    for key, row in done.items():
        if owners.setdefault(row["output"], key) != key:
            shared.add(row["output"])
    pending, skipped = [], 0
    for key in sorted(unique):
        item = unique[key]
        row = None if overwrite else done.get(key)
        if row is not None and row["output"] not in shared and _exists(out / row["output"]):
            skipped += 1
        else:
            pending.append(item)
    run_id = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    return _Plan(
        pending=pending,
        skipped=skipped,
        run_id=run_id,
        replace=overwrite or not fresh,
        total=len(unique),
        owners={name: key for name, key in owners.items() if name not in shared},
    )


def has_previous_run(out: str | Path, manifest: str | Path | None = None) -> bool:
    """Whether ``out`` holds the manifest or part manifests of an earlier batch run."""
    out = Path(out)
    manifest = Path(manifest) if manifest is not None else out / "manifest.csv"
    return manifest.is_file() or any((out / WORK_DIR).glob("part-*.csv"))


def run_batch(
    items: Sequence[BatchItem] | Callable[[], Sequence[BatchItem]],
    process: Processor,
    *,
    out: str | Path,
    settings: str,
    manifest: str | Path | None = None,
    dist_info: DistInfo | None = None,
    retries: int = 1,
    overwrite: bool = False,
    on_result: Callable[[BatchItem, dict[str, str], ItemResult | None], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
) -> BatchReport:
    """Run ``process`` over ``items``, sharded over the process group, resumable.

    Args:
        items: the inputs (any order), or a function returning them: only rank 0 uses
            them (it makes the plan and broadcasts it), so discovery can run there alone and
            its errors reach every rank.
        process: see :data:`Processor`.
        out: the output folder (outputs mirror ``item.stem`` under it).
        settings: a text naming everything that changes the outputs (model, scale, axis,
            format...); rows made with other settings make the run fail instead of mixing.
        manifest: the merged manifest CSV (default ``out/manifest.csv``).
        dist_info: a :class:`medsr.distributed.DistInfo` (default: one process).
        retries: extra attempts for a failed input, made after the rest of the shard.
        overwrite: forget earlier runs (their manifest rows) and redo every input.
        on_result: called on the processing rank with each input's final row and result.
        on_plan: called on every rank with ``(pending, skipped)`` before processing.

    An output that already exists is replaced when an earlier run's manifest is there (it is
    a leftover of a killed run) or with ``overwrite``, and then only if medsr wrote it (it is
    listed in ``out/.medsr-outputs`` or an earlier manifest) and it is not another input's
    output; otherwise, and always in a fresh run, it is an error for that input. A run never
    replaces files it did not make.
    """
    from medsr.distributed import DistInfo, barrier, broadcast_object, gather_objects

    info = dist_info if dist_info is not None else DistInfo()
    out = Path(out)
    manifest_path = Path(manifest) if manifest is not None else out / "manifest.csv"
    if manifest_path.suffix.lower() != ".csv":
        raise ConfigError(
            f"manifest {manifest_path}: give a .csv path (a .parquet copy is written beside it "
            "when pyarrow is installed)"
        )
    if retries < 0:
        raise ConfigError(f"retries {retries}: give 0 or more")
    plan: _Plan | None = None
    if info.is_main:
        try:
            plan = _plan(items, out, manifest_path, settings, overwrite)
        except MedsrError as error:
            plan = _Plan([], 0, "", error=str(error))
    plan = broadcast_object(plan, info)
    assert plan is not None
    if plan.error is not None:
        raise ConfigError(plan.error)
    if on_plan is not None:
        on_plan(len(plan.pending), plan.skipped)
    mine = plan.pending[info.rank :: info.world_size]

    work = out / WORK_DIR
    ledger = OutputLedger(out)
    staging_root = work / f"tmp-{plan.run_id}-rank{info.rank:04d}"
    writer = _PartWriter(work / f"part-{plan.run_id}-rank{info.rank:04d}.csv")
    ok = failed = slices = 0
    failures: list[tuple[str, str]] = []
    start = time.perf_counter()
    counter = 0

    def attempt(item: BatchItem) -> tuple[ItemResult | None, str | None, float]:
        nonlocal counter
        counter += 1
        staging = staging_root / str(counter)
        staging.mkdir(parents=True)
        t0 = time.perf_counter()
        result: ItemResult | None = None
        try:
            result = process(item, staging)
            error = result.error
            if error is None:
                if result.output is None:
                    error = "the processor returned no output"
                else:
                    relative = result.output.relative_to(staging)
                    _check_replace(out / relative, item, plan, ledger)
                    ledger.record(out / relative)  # before the rename: a kill leaves it listed
                    _promote(result.output, out / relative)
                    result = replace(result, output=relative)
        except MedsrError as exc:
            error = str(exc)
        except Exception as exc:  # a bug or a broken file: recorded, the others go on
            logger.debug("unexpected error on %s", item.path, exc_info=True)
            error = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return result, error, time.perf_counter() - t0

    def record(
        item: BatchItem, result: ItemResult | None, error: str | None, seconds: float, attempts: int
    ) -> None:
        nonlocal ok, failed, slices
        status = "ok" if error is None else "failed"
        row = _row(
            item,
            result if error is None else _failed(result),
            status=status,
            error=error or "",
            attempts=attempts,
            settings=settings,
            seconds=f"{seconds:.3f}",
            rank=info.rank,
        )
        if error is None:
            ok += 1
            slices += result.slices if result is not None else 0
        else:
            failed += 1
            failures.append((row["input"], error))
        writer.write(row)
        if on_result is not None:
            on_result(item, row, result)

    try:
        retry: list[BatchItem] = []
        for item in mine:
            result, error, seconds = attempt(item)
            if error is not None and retries > 0:
                logger.warning("%s failed (%s); it is retried after the others", item.path, error)
                retry.append(item)
            else:
                record(item, result, error, seconds, 1)
        for item in retry:
            attempts = 1
            for _ in range(retries):
                attempts += 1
                result, error, seconds = attempt(item)
                if error is None:
                    break
            record(item, result, error, seconds, attempts)
    finally:
        writer.close()
        shutil.rmtree(staging_root, ignore_errors=True)
    seconds = time.perf_counter() - start

    stats = RankStats(rank=info.rank, ok=ok, failed=failed, slices=slices, seconds=seconds)
    gathered = gather_objects((stats, failures), info)
    all_stats = [g[0] for g in gathered]
    all_failures = sorted(f for g in gathered for f in g[1])
    if info.is_main:
        _merge(out, manifest_path)
    barrier(info)
    return BatchReport(
        total=plan.total,
        skipped=plan.skipped,
        ok=sum(s.ok for s in all_stats),
        failed=sum(s.failed for s in all_stats),
        seconds=max(s.seconds for s in all_stats),
        ranks=all_stats,
        failures=all_failures,
        manifest=manifest_path,
    )


def _failed(result: ItemResult | None) -> ItemResult | None:
    return None if result is None else replace(result, output=None)


def _merge(out: Path, manifest: Path) -> None:
    """Fold the part manifests into ``manifest``: the latest row of each input, sorted."""
    work = out / WORK_DIR
    parts = sorted(work.glob("part-*.csv"))
    rows: dict[str, dict[str, str]] = {}
    for path in [manifest, *parts]:
        for row in read_manifest(path):
            rows[_row_key(row)] = row
    manifest.parent.mkdir(parents=True, exist_ok=True)
    _write_manifest([rows[k] for k in sorted(rows)], manifest)
    for part in parts:
        part.unlink()
    with contextlib.suppress(OSError):  # not empty: another run's files
        work.rmdir()


# the process group's timeout bounds how long ranks wait for each other at the end
DIST_TIMEOUT = timedelta(hours=24)
