"""The evaluation loop: every selected slice of a prepared manifest, every method, one row each.

For each slice (``SRDataset(mode="eval")``: the whole slice cropped to a multiple of the
scale, normalised with its volume's normaliser, degraded into the LR input with a seed of
its own), each method super-resolves the LR, and the row records:

* identification: ``method``, ``split``, ``dataset``, ``modality``, ``subject_id``,
  ``volume_id``, ``slice_index``, HR and LR size, ``scale``;
* ``data_low``, ``data_high``, ``data_range``: the volume normaliser's window in physical
  units; ``data_range = data_high - data_low`` is the data range of every metric;
* every metric of :data:`medsr.metrics.METRICS` asked for, in physical units
  (``normaliser.inverse`` of SR and HR), after cropping ``border`` pixels;
* ``nrmse_mean_unit`` (with ``nrmse_mean``): the NRMSE by the ground truth's mean on the
  images scaled by the window, ``(x - data_low) / data_range``: the BraTS work's NRMSE on
  [0, 1] images. ``nrmse_mean`` itself depends on where zero lies in physical units (its
  ground-truth mean is negative for CT in HU and for the z-scored BraTS volumes);
* ``consistency_psnr``: the SR output degraded again by the noise-free evaluation
  degradation against the LR input (dB, same data range);
* for each region: ``{region}_fraction`` of the HR slice inside it, and
  ``{region}_{metric}_inside`` / ``_outside`` / ``_difference``;
* ``runtime_s``: seconds of the method's call on this slice; ``notes``: why values are NaN.

SR outputs are clamped to the normaliser's window (``[0, 1]`` in normalised units) when the
normaliser clips, since the ground truth then lies in that window too (``clamp=False`` turns
this off). See docs/evaluation.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from medsr.data.datasets import SRDataset
from medsr.data.manifest import SliceRecord, manifest_path
from medsr.errors import ConfigError
from medsr.eval.methods import Method
from medsr.eval.regions import Region, VolumeStats
from medsr.eval.results import KEY_COLUMNS, ResultsFile, row_key
from medsr.metrics import (
    DEFAULT_METRICS,
    METRICS,
    compute_metrics,
    consistency_psnr,
    nrmse_mean,
    region_metrics,
)
from medsr.metrics.table import check_names
from medsr.transforms.degrade import Degradation
from medsr.transforms.intensity import Normaliser

__all__ = [
    "DEFAULT_REGION_METRICS",
    "KEY_COLUMNS",
    "EvalSettings",
    "Evaluator",
    "Sample",
    "result_columns",
    "row_key",
    "run_evaluation",
    "select_rows",
    "settings_json",
]

logger = logging.getLogger(__name__)

DEFAULT_REGION_METRICS: tuple[str, ...] = ("psnr", "ssim", "mae")
"""Region metrics by default: each is computed twice per region, so keep the list short."""

ID_COLUMNS: tuple[str, ...] = (
    "method",
    "split",
    "dataset",
    "modality",
    "subject_id",
    "volume_id",
    "slice_index",
    "height",
    "width",
    "lr_height",
    "lr_width",
    "scale",
    "data_low",
    "data_high",
    "data_range",
)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class EvalSettings:
    """What the rows depend on (besides the methods).

    Attributes:
        manifest: manifest file or ``medsr prepare`` output folder.
        degradation: makes the LR input from the normalised HR slice.
        splits: manifest splits to evaluate.
        datasets: only these datasets (``None``: all).
        every: every N-th kept slice of each volume, starting at slice ``N // 2`` of it
            (a volume with fewer slices keeps its middle one).
        max_slices_per_volume: at most this many of those, evenly spaced (``None``: all).
        metrics: names from :data:`medsr.metrics.METRICS`.
        regions: regions of interest (:mod:`medsr.eval.regions`).
        region_metrics: metrics computed inside and outside each region.
        border: pixels cropped from each side before the metrics.
        clamp: clamp SR to the normaliser's window when the normaliser clips.
        seed: seed of the degradation's noise (each slice draws from its own generator).
    """

    manifest: Path
    degradation: Degradation
    splits: tuple[str, ...] = ("test",)
    datasets: tuple[str, ...] | None = None
    every: int = 1
    max_slices_per_volume: int | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    regions: tuple[Region, ...] = ()
    region_metrics: tuple[str, ...] = DEFAULT_REGION_METRICS
    border: int = 0
    clamp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", manifest_path(self.manifest))
        if not isinstance(self.degradation, Degradation):
            raise ConfigError(
                "degradation must be a medsr.transforms.degrade.Degradation, got "
                f"{type(self.degradation).__name__}"
            )
        self.degradation.scale  # noqa: B018 - raises ConfigError for anisotropic pipelines
        if not self.splits:
            raise ConfigError("name at least one split (train, val, test)")
        bad = [s for s in self.splits if s not in ("train", "val", "test")]
        if bad:
            raise ConfigError(f"unknown split(s) {bad}; choose from train, val, test")
        if self.every < 1:
            raise ConfigError(f"every must be >= 1 (every N-th slice), got {self.every}")
        if self.max_slices_per_volume is not None and self.max_slices_per_volume < 1:
            raise ConfigError(
                f"max_slices_per_volume must be >= 1, got {self.max_slices_per_volume}"
            )
        if self.border < 0:
            raise ConfigError(f"border must be >= 0 pixels, got {self.border}")
        check_names(self.metrics)
        if not self.metrics:
            raise ConfigError(f"name at least one metric; choose from {sorted(METRICS)}")
        check_names(self.region_metrics)
        no_mask = [m for m in self.region_metrics if not METRICS[m].supports_mask]
        if no_mask:
            raise ConfigError(f"metric(s) {no_mask} cannot be computed inside a region")
        names = [r.name for r in self.regions]
        if len(set(names)) != len(names):
            raise ConfigError(f"region names must be unique, got {names}")
        for dup in ("metrics", "region_metrics", "splits"):
            values = getattr(self, dup)
            if len(set(values)) != len(values):
                raise ConfigError(f"{dup} lists a name twice: {list(values)}")

    @property
    def scale(self) -> int:
        return self.degradation.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON form, for the results file's settings record."""
        return {
            "manifest": str(self.manifest),
            "degradation": self.degradation.to_config(),
            "splits": list(self.splits),
            "datasets": None if self.datasets is None else list(self.datasets),
            "every": self.every,
            "max_slices_per_volume": self.max_slices_per_volume,
            "metrics": list(self.metrics),
            "regions": [
                {
                    "spec": r.spec(),
                    "datasets": None if r.datasets is None else list(r.datasets),
                    "volumes": r.volumes,
                    "min_pixels": r.min_pixels,
                }
                for r in self.regions
            ],
            "region_metrics": list(self.region_metrics),
            "border": self.border,
            "clamp": self.clamp,
            "seed": self.seed,
        }


def result_columns(settings: EvalSettings) -> list[str]:
    """The CSV columns a run with ``settings`` writes, in order."""
    columns = list(ID_COLUMNS) + list(settings.metrics)
    if "nrmse_mean" in settings.metrics:
        columns.append("nrmse_mean_unit")
    columns.append("consistency_psnr")
    for region in settings.regions:
        columns.append(f"{region.name}_fraction")
        for metric in settings.region_metrics:
            for side in ("inside", "outside", "difference"):
                columns.append(f"{region.name}_{metric}_{side}")
    columns += ["runtime_s", "notes"]
    return columns


def select_rows(
    rows: Sequence[SliceRecord],
    *,
    splits: Sequence[str],
    datasets: Sequence[str] | None = None,
    every: int = 1,
    max_slices_per_volume: int | None = None,
) -> list[int]:
    """Indices into ``rows`` of the slices to evaluate (see :class:`EvalSettings`), in
    manifest order."""
    by_volume: dict[tuple[str, str], list[int]] = {}
    for i, row in enumerate(rows):
        if row.split in splits and (datasets is None or row.dataset in datasets):
            by_volume.setdefault((row.split, row.volume_id), []).append(i)
    chosen: list[int] = []
    for indices in by_volume.values():
        indices = sorted(indices, key=lambda i: rows[i].slice_index)
        picked = indices[every // 2 :: every] or [indices[len(indices) // 2]]
        if max_slices_per_volume is not None and len(picked) > max_slices_per_volume:
            spots = np.linspace(0, len(picked) - 1, max_slices_per_volume)
            picked = [picked[round(float(s))] for s in spots]
        chosen.extend(picked)
    return sorted(chosen)


@dataclass
class Sample:
    """One slice ready for the methods.

    ``lr``: ``(2k + 1, h, w)`` normalised LR planes (centre at ``k``); ``hr``: ``(1, H, W)``
    normalised; ``file_mask``: the mask attached by ``medsr prepare`` (``None`` without
    one); ``hr_physical`` and ``raw``: ``(H, W)`` float64 in physical units (the
    normalised HR mapped back, i.e. clipped to the window when the normaliser clips, and the
    stored values as they are); ``masks``: each region's mask, or ``None``.
    """

    index: int
    row: SliceRecord
    lr: Tensor
    hr: Tensor
    hr_physical: np.ndarray
    raw: np.ndarray
    normaliser: Normaliser
    file_mask: np.ndarray | None = None
    masks: dict[str, np.ndarray | None] = field(default_factory=dict)

    @property
    def window(self) -> tuple[float, float]:
        low, high = self.normaliser.bounds
        return float(low), float(high)


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a logger's warnings for a moment: region notes go to the row's ``notes``
    instead of one warning per slice."""
    target = logging.getLogger(logger_name)

    def drop(record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING

    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


class Evaluator:
    """Prepares slices and scores methods on them under one :class:`EvalSettings`.

    ``neighbours``: LR planes on each side of the slice (the largest a 2.5D method needs).
    """

    def __init__(self, settings: EvalSettings, *, neighbours: int = 0) -> None:
        self.settings = settings
        self.dataset = SRDataset(
            settings.manifest,
            degradation=settings.degradation,
            split=None,
            mode="eval",
            neighbours=neighbours,
            seed=settings.seed,
            return_mask=True,
        )
        self.neighbours = neighbours
        rows = self.dataset.rows
        if settings.datasets is not None:
            unknown = sorted(set(settings.datasets) - {r.dataset for r in rows})
            if unknown:
                raise ConfigError(
                    f"no dataset(s) {unknown} in {settings.manifest}; it holds "
                    f"{sorted({r.dataset for r in rows})}"
                )
        self.indices = select_rows(
            rows,
            splits=settings.splits,
            datasets=settings.datasets,
            every=settings.every,
            max_slices_per_volume=settings.max_slices_per_volume,
        )
        if not self.indices:
            raise ConfigError(
                f"{settings.manifest} has no slices in split(s) {list(settings.splits)}"
                + ("" if settings.datasets is None else f" of dataset(s) {settings.datasets}")
            )
        self.consistency = settings.degradation.downsample_only()
        self.columns = result_columns(settings)
        self._stats: dict[str, VolumeStats] = {}
        self._unavailable: dict[str, str] = {}
        for name in settings.metrics:
            reason = METRICS[name].unavailable_reason()
            if reason is not None:
                logger.warning("metric %s is skipped (NaN): %s", name, reason)
                self._unavailable[name] = reason

    # -- inputs ---------------------------------------------------------------------------------
    def missing_splits(self) -> dict[str, list[str]]:
        """``{dataset: [splits it has no slice in]}`` among the evaluated splits and datasets."""
        present: dict[str, set[str]] = {}
        for row in self.dataset.rows:
            if self.settings.datasets is None or row.dataset in self.settings.datasets:
                present.setdefault(row.dataset, set()).add(row.split)
        return {
            d: [s for s in self.settings.splits if s not in splits]
            for d, splits in sorted(present.items())
            if any(s not in splits for s in self.settings.splits)
        }

    def _volume_stats(self, row: SliceRecord) -> VolumeStats:
        stats = self._stats.get(row.store_path)
        if stats is None:
            root = self.dataset.root
            volume = np.load(root / row.store_path, mmap_mode="r")
            mask = np.load(root / row.mask_path, mmap_mode="r").astype(bool)
            values = np.asarray(volume[mask], dtype=np.float64)
            stats = VolumeStats(
                float(values.mean()) if values.size else math.nan,
                float(values.std()) if values.size else math.nan,
            )
            self._stats[row.store_path] = stats
        return stats

    def sample(self, index: int) -> Sample:
        """Slice ``index`` (an index into the dataset's rows) with its LR and masks."""
        item = self.dataset[index]
        row = self.dataset.rows[index]
        normaliser = self.dataset.normaliser(index)
        hr = item["hr"]
        h, w = hr.shape[-2:]
        hr_physical = np.asarray(normaliser.inverse(hr[0].double().numpy()), dtype=np.float64)
        stored = np.load(self.dataset.root / row.store_path, mmap_mode="r")
        raw = np.asarray(stored[row.slice_index, :h, :w], dtype=np.float64)
        file_mask = item["mask"][0].numpy() if row.has_mask else None
        masks: dict[str, np.ndarray | None] = {}
        for region in self.settings.regions:
            if not region.applies_to(row.dataset, row.volume_id):
                masks[region.name] = None
                continue
            stats = (
                self._volume_stats(row)
                if region.kind == "zscore" and file_mask is not None
                else None
            )
            masks[region.name] = region.mask(raw, file_mask, stats)
        return Sample(
            index=index,
            row=row,
            lr=item["lr"],
            hr=hr,
            hr_physical=hr_physical,
            raw=raw,
            normaliser=normaliser,
            file_mask=file_mask,
            masks=masks,
        )

    # -- scoring --------------------------------------------------------------------------------
    def super_resolve(self, method: Method, sample: Sample) -> tuple[Tensor, float]:
        """``(sr, seconds)``: the method's normalised output ``(1, H, W)`` (clamped as the
        settings say) and the time its call took."""
        if method.scale != self.settings.scale:
            raise ConfigError(
                f"method {method.name!r} is x{method.scale} but the degradation is "
                f"x{self.settings.scale}"
            )
        k, c = self.neighbours, method.in_channels // 2
        if c > k:
            raise ConfigError(
                f"method {method.name!r} takes {method.in_channels} planes; the evaluator was "
                f"built with neighbours={k}"
            )
        lr = sample.lr[k - c : k + c + 1].contiguous()
        start = time.perf_counter()
        sr = method(lr, sample.normaliser)
        seconds = time.perf_counter() - start
        if tuple(sr.shape) != tuple(sample.hr.shape):
            raise ConfigError(
                f"method {method.name!r} returned {tuple(sr.shape)} for an HR slice of "
                f"{tuple(sample.hr.shape)}"
            )
        sr = sr.detach().to(torch.float64)
        if self.settings.clamp and sample.normaliser.clip:
            sr = sr.clamp(0.0, 1.0)
        return sr, seconds

    def score(self, method: Method, sample: Sample) -> tuple[dict[str, Any], np.ndarray]:
        """``(row, sr_physical)``: the row of ``method`` on ``sample`` and its SR output
        ``(H, W)`` in physical units."""
        sr, seconds = self.super_resolve(method, sample)
        return self.score_output(method.name, sample, sr, seconds)

    def score_output(
        self, name: str, sample: Sample, sr: Tensor, seconds: float
    ) -> tuple[dict[str, Any], np.ndarray]:
        """The row for a normalised SR output ``sr`` ``(1, H, W)`` of method ``name``."""
        settings = self.settings
        row = sample.row
        low, high = sample.window
        data_range = high - low
        sr_physical = np.asarray(sample.normaliser.inverse(sr[0].numpy()), dtype=np.float64)
        hr_physical = sample.hr_physical
        h, w = hr_physical.shape
        notes: list[str] = []
        out: dict[str, Any] = {
            "method": name,
            "split": row.split,
            "dataset": row.dataset,
            "modality": row.modality,
            "subject_id": row.subject_id,
            "volume_id": row.volume_id,
            "slice_index": row.slice_index,
            "height": h,
            "width": w,
            "lr_height": int(sample.lr.shape[-2]),
            "lr_width": int(sample.lr.shape[-1]),
            "scale": settings.scale,
            "data_low": low,
            "data_high": high,
            "data_range": data_range,
        }
        size = min(h, w) - 2 * settings.border
        feasible = []
        for name_m in settings.metrics:
            spec = METRICS[name_m]
            if name_m in self._unavailable:
                out[name_m] = math.nan
            elif size < spec.min_size:
                out[name_m] = math.nan
                notes.append(f"{name_m}: image smaller than {spec.min_size} px")
            else:
                feasible.append(name_m)
        values = compute_metrics(
            sr_physical,
            hr_physical,
            data_range=data_range,
            metrics=feasible,
            border=settings.border,
        )
        for name_m, value in values.items():
            out[name_m] = float(value[0])
        if "nrmse_mean" in settings.metrics:
            b = settings.border
            crop = (slice(b, h - b), slice(b, w - b))
            out["nrmse_mean_unit"] = float(
                nrmse_mean(sr_physical[crop] - low, hr_physical[crop] - low)[0]
            )
        centre = sample.lr[self.neighbours : self.neighbours + 1].to(torch.float64)
        out["consistency_psnr"] = float(
            consistency_psnr(sr[None], centre[None], degrade=self.consistency, data_range=1.0)[0]
        )
        for region in settings.regions:
            self._score_region(region, sample, sr_physical, data_range, out, notes)
        out["runtime_s"] = seconds
        out["notes"] = "; ".join(notes)
        return {c: out[c] for c in self.columns}, sr_physical

    def _score_region(
        self,
        region: Region,
        sample: Sample,
        sr_physical: np.ndarray,
        data_range: float,
        out: dict[str, Any],
        notes: list[str],
    ) -> None:
        settings = self.settings
        mask = sample.masks.get(region.name)
        nan_columns = {
            f"{region.name}_{m}_{side}": math.nan
            for m in settings.region_metrics
            for side in ("inside", "outside", "difference")
        }
        if mask is None:
            out[f"{region.name}_fraction"] = math.nan
            out.update(nan_columns)
            return
        b = settings.border
        inner = mask[b : mask.shape[0] - b, b : mask.shape[1] - b]
        out[f"{region.name}_fraction"] = float(inner.mean()) if inner.size else math.nan
        inside = int(inner.sum())
        outside = int(inner.size - inside)
        if min(inside, outside) < region.min_pixels:
            out.update(nan_columns)
            if inside == 0:
                notes.append(f"{region.name}: region is empty")
            elif outside == 0:
                notes.append(f"{region.name}: region is the whole image")
            else:
                side = "inside" if inside < outside else "outside"
                notes.append(
                    f"{region.name}: {min(inside, outside)} px {side}, fewer than "
                    f"min_pixels={region.min_pixels}"
                )
            return
        with _quiet("medsr.metrics.roi"):
            results = region_metrics(
                sr_physical,
                sample.hr_physical,
                mask=mask,
                data_range=data_range,
                metrics=settings.region_metrics,
                border=b,
            )
        for metric, values in results.items():
            out[f"{region.name}_{metric}_inside"] = float(values.inside[0])
            out[f"{region.name}_{metric}_outside"] = float(values.outside[0])
            out[f"{region.name}_{metric}_difference"] = float(values.difference[0])
            if values.note:
                notes.append(f"{region.name}: {values.note}")


def run_evaluation(
    methods: Sequence[Method],
    settings: EvalSettings,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    progress: Progress | None = None,
    evaluator: Evaluator | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every method on every selected slice; the rows (earlier ones included).

    With ``out`` the rows go to that CSV one at a time (flushed); with ``resume`` rows already
    there are kept and not computed again (see :class:`~medsr.eval.results.ResultsFile`).
    ``progress(done, total)`` is called after each row, counting only the rows this call
    computes. Slices are the outer loop, so every method sees the same LR.
    """
    if not methods:
        raise ConfigError("name at least one method to evaluate")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"method names must be unique, got {names}")
    if evaluator is None:
        neighbours = max(m.in_channels // 2 for m in methods)
        evaluator = Evaluator(settings, neighbours=neighbours)
    columns = result_columns(settings)
    results: ResultsFile | None = None
    done: set = set()
    rows: list[dict[str, Any]] = []
    if out is not None:
        results = ResultsFile(
            out,
            columns=columns,
            settings=settings.to_dict(),
            methods={m.name: m.spec for m in methods},
            resume=resume,
        )
        done = set(results.done)
        wanted = set(names)
        rows = [r for r in results.rows if r["method"] in wanted]
    dataset_rows = evaluator.dataset.rows
    todo = []
    for index in evaluator.indices:
        row = dataset_rows[index]
        pending = [
            m for m in methods if (m.name, row.split, row.volume_id, row.slice_index) not in done
        ]
        if pending:
            todo.append((index, pending))
    total = sum(len(p) for _, p in todo)
    if out is not None and done:
        logger.info("resuming %s: %d rows kept, %d to compute", out, len(rows), total)
    count = 0
    try:
        for index, pending in todo:
            sample = evaluator.sample(index)
            for method in pending:
                row_out, _ = evaluator.score(method, sample)
                if results is not None:
                    results.write(row_out)
                rows.append(row_out)
                count += 1
                if progress is not None:
                    progress(count, total)
    finally:
        if results is not None:
            results.close()
    order = {m: i for i, m in enumerate(names)}
    rows.sort(key=lambda r: (r["split"], r["volume_id"], r["slice_index"], order[r["method"]]))
    return rows


def settings_json(settings: EvalSettings) -> str:
    """The settings as indented JSON (for reports)."""
    return json.dumps(settings.to_dict(), indent=2)
