"""``run_benchmark(config)``: several methods on one split and degradation, with a report.

Writes into the output folder:

* ``results.csv`` (+ ``results.csv.json``): one row per method and image, written as they
  are computed; an interrupted run resumes where it stopped;
* ``report.md`` and ``report.html`` (self-contained: inline CSS, figures embedded unless
  ``figures.embed`` is false): the tables;
* ``figures/*.png``: the figure grids;
* ``config.json``: the resolved configuration.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr.document import Figure, to_html, to_markdown
from medsr.errors import ConfigError
from medsr.eval.config import BenchmarkConfig, FigureItem
from medsr.eval.evaluate import EvalSettings, Evaluator, run_evaluation
from medsr.eval.figures import detail_box, figure_grid
from medsr.eval.methods import Method, load_method
from medsr.eval.report import MethodInfo, build_report
from medsr.eval.results import read_results, row_key

__all__ = [
    "BenchmarkOutput",
    "choose_figure_slices",
    "eval_settings",
    "load_methods",
    "make_figures",
    "run_benchmark",
]

logger = logging.getLogger(__name__)

RESULTS_NAME = "results.csv"
MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
FIGURES_DIR = "figures"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BenchmarkOutput:
    """What a run wrote, and its rows."""

    folder: Path
    results: Path
    markdown: Path
    html: Path
    figures: tuple[Path, ...]
    rows: list[dict[str, Any]] = field(repr=False)


def eval_settings(config: BenchmarkConfig) -> EvalSettings:
    """The :class:`EvalSettings` of a benchmark config."""
    return EvalSettings(
        manifest=config.manifest,
        degradation=config.degradation,
        splits=config.splits,
        datasets=config.datasets,
        every=config.every,
        max_slices_per_volume=config.max_slices_per_volume,
        metrics=config.metrics,
        regions=config.regions,
        region_metrics=config.region_metrics,
        border=config.border,
        clamp=config.clamp,
        seed=config.seed,
    )


def load_methods(config: BenchmarkConfig) -> list[Method]:
    """Every configured method, resolved by :func:`medsr.eval.methods.load_method`."""
    scale = config.degradation.scale
    methods = []
    for m in config.methods:
        try:
            method = load_method(
                m.model,
                scale=scale,
                name=m.name,
                tile=m.tile,
                overlap=m.overlap,
                device=config.device,
                threads=config.threads,
            )
        except ConfigError as error:
            raise ConfigError(f"method {m.name!r}: {error}") from error
        methods.append(method)
    return methods


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def choose_figure_slices(
    evaluator: Evaluator, config: BenchmarkConfig
) -> list[tuple[int, tuple[int, int, int] | None]]:
    """``(dataset index, inset or None)`` of each slice to draw: the listed items, or per
    dataset the ``per_dataset`` evaluated slices with the largest foreground fraction."""
    figures = config.figures
    if figures is None:
        return []
    default_split = figures.split or config.splits[0]
    rows = evaluator.dataset.rows
    chosen: list[tuple[int, tuple[int, int, int] | None]] = []
    selected = set(evaluator.indices)
    for item in figures.items:
        chosen.append((_find_item(evaluator, item, default_split, selected), item.inset))
    if figures.per_dataset:
        by_dataset: dict[str, list[int]] = {}
        for index in evaluator.indices:
            if rows[index].split == default_split:
                by_dataset.setdefault(rows[index].dataset, []).append(index)
        taken = {i for i, _ in chosen}
        for _dataset, indices in sorted(by_dataset.items()):
            ranked = sorted(indices, key=lambda i: (-rows[i].foreground_fraction, i))
            picks = [i for i in ranked if i not in taken][: figures.per_dataset]
            chosen += [(i, None) for i in picks]
    return chosen


def _find_item(evaluator: Evaluator, item: FigureItem, split: str, selected: set[int]) -> int:
    split = item.split or split
    for index in selected:
        row = evaluator.dataset.rows[index]
        if (
            row.volume_id == item.volume_id
            and row.slice_index == item.slice_index
            and row.split == split
        ):
            return index
    raise ConfigError(
        f"figure item {item.volume_id} slice {item.slice_index} ({split}) is not among the "
        "evaluated slices (check the split, every and max_slices_per_volume)"
    )


def _units(modality: str) -> str:
    return "(HU)" if modality == "CT" else "(stored units)"


def make_figures(
    evaluator: Evaluator,
    methods: Sequence[Method],
    config: BenchmarkConfig,
    rows: Sequence[dict[str, Any]],
    folder: Path,
) -> list[Figure]:
    """Draw the figure grids into ``folder/figures`` and return their report blocks."""
    figures_config = config.figures
    if figures_config is None:
        return []
    shown = [
        m for m in methods if figures_config.methods is None or m.name in figures_config.methods
    ]
    by_key = {row_key(r): r for r in rows}
    out_dir = folder / FIGURES_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    blocks = []
    scale = config.degradation.scale
    for index, inset in choose_figure_slices(evaluator, config):
        sample = evaluator.sample(index)
        row = sample.row
        outputs = []
        labels = {}
        for method in shown:
            sr, _ = evaluator.super_resolve(method, sample)
            sr_physical = np.asarray(sample.normaliser.inverse(sr[0].numpy()), dtype=np.float64)
            outputs.append((method.name, sr_physical))
            scored = by_key.get((method.name, row.split, row.volume_id, row.slice_index))
            if scored is not None:
                labels[method.name] = (
                    f"{scored['psnr']:.2f} dB / {scored['ssim']:.4f}"
                    if ("psnr" in scored and "ssim" in scored)
                    else ""
                )
        hr = sample.hr_physical
        h, w = hr.shape
        if inset is None:
            size = figures_config.inset_size or max(4 * scale, (min(h, w) // 5) // scale * scale)
            size = min(size, min(h, w))
            # the attached mask (BraTS brain), else the normalised foreground
            foreground = (
                sample.file_mask if sample.file_mask is not None else sample.hr[0].numpy() > 0.1
            )
            inset = detail_box(hr, size=size, foreground=foreground, multiple=scale)
            how = "found automatically: highest HR gradient energy inside the foreground"
        else:
            how = "chosen in the config"
        lr = sample.lr[evaluator.neighbours].double().numpy()
        lr_physical = np.asarray(sample.normaliser.inverse(lr), dtype=np.float64)
        low, high = sample.window
        title = (
            f"{row.dataset} · {row.volume_id.split('/', 1)[-1]} · slice {row.slice_index} "
            f"({row.split}) · x{scale}"
        )
        labels["LR (input)"] = f"{lr.shape[0]}x{lr.shape[1]}"
        labels["HR (ground truth)"] = f"{h}x{w}"
        grid = figure_grid(
            lr=lr_physical,
            outputs=outputs,
            hr=hr,
            window=(low, high),
            box=inset,
            title=title,
            labels=labels,
            units=_units(row.modality),
        )
        name = f"{_slug(row.volume_id)}_{row.slice_index:03d}_{row.split}.png"
        path = out_dir / name
        path.write_bytes(grid.png)
        caption = (
            f"{row.dataset}, {row.volume_id}, slice {row.slice_index} ({row.split} split): "
            f"LR input ({lr.shape[0]}x{lr.shape[1]}), each method, HR ground truth "
            f"({h}x{w}); titles give PSNR / SSIM of the slice. Row 2: the "
            f"{inset[2]}x{inset[2]} px inset at (top {inset[0]}, left {inset[1]}), {how}. "
            f"Row 3: |SR − HR| on one colour scale from 0 to {grid.error_max:.3g} "
            f"{_units(row.modality)} (the 99.5th percentile of all methods' errors). Display "
            f"window {low:.4g} to {high:.4g}."
        )
        blocks.append(
            Figure(
                path=f"{FIGURES_DIR}/{name}",
                alt=f"{row.volume_id} slice {row.slice_index}",
                caption=caption,
                png=grid.png if figures_config.embed else None,
            )
        )
    return blocks


def run_benchmark(
    config: BenchmarkConfig,
    *,
    out: str | Path | None = None,
    resume: bool = True,
    evaluate: bool = True,
    figures: bool = True,
    progress: Progress | None = None,
    notes: Sequence[str] = (),
    methods: Sequence[Method] | None = None,
) -> BenchmarkOutput:
    """Evaluate (or, with ``evaluate=False``, only re-report) a benchmark.

    ``out``: the output folder (default ``config.output``, else ``benchmark-results``).
    ``resume``: keep the rows an earlier run wrote there. ``notes``: extra lines for the
    report's notes. ``methods``: already built methods (in-memory models), used instead of
    loading ``config.methods``.
    """
    folder = Path(out) if out is not None else (config.output or Path("benchmark-results"))
    folder.mkdir(parents=True, exist_ok=True)
    settings = eval_settings(config)
    methods = list(methods) if methods is not None else load_methods(config)
    names = [m.name for m in methods]
    if config.reference is not None and config.reference not in names:
        raise ConfigError(f"reference {config.reference!r} is not one of the methods {names}")
    neighbours = max(m.in_channels // 2 for m in methods)
    evaluator = Evaluator(settings, neighbours=neighbours)
    results_path = folder / RESULTS_NAME
    if evaluate:
        rows = run_evaluation(
            methods,
            settings,
            out=results_path,
            resume=resume,
            progress=progress,
            evaluator=evaluator,
        )
    else:
        if not results_path.exists():
            raise ConfigError(f"{results_path} does not exist: run the benchmark first")
        rows = [r for r in read_results(results_path) if r["method"] in set(names)]
    missing = sorted({m for m in names} - {r["method"] for r in rows})
    if missing:
        raise ConfigError(f"{results_path} has no rows for method(s) {missing}")
    figure_blocks = make_figures(evaluator, methods, config, rows, folder) if figures else []
    infos = [MethodInfo(m.name, m.spec, m.description, m.trained) for m in methods]
    blocks = build_report(
        rows,
        config,
        methods=infos,
        settings=settings.to_dict(),
        missing_splits=evaluator.missing_splits(),
        figures=figure_blocks,
        notes=notes,
        date=_dt.date.today().isoformat(),
    )
    markdown = folder / MARKDOWN_NAME
    html_path = folder / HTML_NAME
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    html_path.write_text(to_html(blocks, title=config.title), encoding="utf-8")
    (folder / "config.json").write_text(
        json.dumps(
            {
                "title": config.title,
                "methods": [{"name": m.name, "model": m.spec} for m in methods],
                "reference": config.reference,
                "settings": settings.to_dict(),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return BenchmarkOutput(
        folder=folder,
        results=results_path,
        markdown=markdown,
        html=html_path,
        figures=tuple(folder / f.path for f in figure_blocks),
        rows=rows,
    )
