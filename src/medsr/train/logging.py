"""Training logs: a progress bar on stderr, a CSV of metrics, TensorBoard event files.

Only rank 0 logs. ``OUT/metrics.csv`` is long-format, one row per value::

    step,stage,split,name,value,time
    10,pretrain,train,l1,0.0412,2026-11-21T10:00:00
    500,pretrain,val,psnr,31.82,2026-11-21T10:04:10

so that new loss terms never change its columns. On resume, rows after the resumed step
(written by the interrupted run after its last saved state) are dropped first, so the file
reads as one uninterrupted run. TensorBoard (``OUT/tensorboard``) gets the same scalars and
the validation image panels; ``tensorboard`` is an optional dependency (the ``train``
extra): without it a single warning says so and training goes on.
"""

from __future__ import annotations

import csv
import logging
import math
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CSV_COLUMNS", "MetricsCSV", "ProgressBar", "TensorBoard", "read_metrics"]

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("step", "stage", "split", "name", "value", "time")


class MetricsCSV:
    """Append-only long-format CSV of scalars (see the module docstring)."""

    def __init__(self, path: Path, *, resume_step: int | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and path.is_file():
            self._truncate_after(resume_step)
        new = not path.is_file() or path.stat().st_size == 0
        self._handle = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._handle)
        if new:
            self._writer.writerow(CSV_COLUMNS)
            self._handle.flush()

    def _truncate_after(self, step: int) -> None:
        with self.path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows or tuple(rows[0]) != CSV_COLUMNS:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with self.path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(kept)

    def write(self, step: int, stage: str, split: str, values: Mapping[str, float]) -> None:
        stamp = datetime.now().isoformat(timespec="seconds")
        for name, value in values.items():
            self._writer.writerow([step, stage, split, name, f"{value:.8g}", stamp])
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics CSV as dicts (``step`` int, ``value`` float)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["step"] = int(row["step"])
        row["value"] = float(row["value"])
    return rows


class TensorBoard:
    """A ``SummaryWriter`` when tensorboard is installed; otherwise a no-op that warned once."""

    _warned = False

    def __init__(self, folder: Path, *, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if not TensorBoard._warned:
                logger.warning(
                    "tensorboard is not installed: no TensorBoard event files "
                    "(pip install 'medsr[train]'); metrics still go to metrics.csv"
                )
                TensorBoard._warned = True
            return
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge_step)

    def scalars(self, step: int, prefix: str, values: Mapping[str, float]) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def image(self, step: int, tag: str, panel: np.ndarray) -> None:
        """``panel``: (H, W) uint8."""
        if self.writer is not None:
            self.writer.add_image(tag, panel[None], step, dataformats="CHW")

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class ProgressBar:
    """A rich progress bar on stderr: stage, steps, speed and the latest losses.

    Disabled (no output at all) when ``enabled`` is false; on a non-terminal stderr rich
    prints nothing live, so logs stay clean in batch jobs.
    """

    def __init__(self, *, total: int, completed: int, enabled: bool) -> None:
        self.progress = None
        self._start = time.perf_counter()
        self._start_step = completed
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[losses]}"),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=total, completed=completed, speed="", losses=""
        )

    def update(self, *, step: int, stage: str, losses: Mapping[str, float] | None = None) -> None:
        if self.progress is None:
            return
        elapsed = time.perf_counter() - self._start
        done = step - self._start_step
        speed = f"{done / elapsed:.2f} it/s" if elapsed > 0 and done > 0 else ""
        fields: dict[str, Any] = {"speed": speed, "description": stage}
        if losses is not None:
            fields["losses"] = " ".join(f"{k}={v:.4g}" for k, v in losses.items())
        self.progress.update(self.task, completed=step, **fields)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
