"""The benchmark report: blocks (see :mod:`medsr.document`) from per-image rows.

Sections: setup; per split, a table over all datasets (dimensionless metrics only, since
MAE and MSE in HU and in MR units cannot be averaged together), per dataset (every
metric) and per modality when a modality spans several datasets, each with the paired
Wilcoxon p-values against the reference; the tables in the style of the source works;
regions (inside / outside / difference); runtime; figures; notes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from medsr import __version__
from medsr.document import Block, BulletList, Cell, Figure, Heading, Paragraph, Table
from medsr.eval.config import TABLE_STYLES, BenchmarkConfig, TableConfig
from medsr.eval.tables import (
    Summary,
    pvalue_table,
    region_table,
    results_table,
    split_table,
    summarise,
)
from medsr.metrics import METRICS

__all__ = ["MethodInfo", "build_report", "main_columns", "pooled_columns"]

# metrics whose values carry the data's unit or depend on where its zero lies: not averaged
# over datasets of different units
_UNIT_BOUND = ("mse", "mae", "nrmse_mean")


@dataclass(frozen=True)
class MethodInfo:
    """What the report says about a method."""

    name: str
    spec: str
    description: str
    trained: bool


def main_columns(metrics: Sequence[str]) -> list[str]:
    """The columns of the main tables: the metrics, the window-scaled NRMSE, consistency."""
    columns = list(metrics)
    if "nrmse_mean" in metrics:
        columns.append("nrmse_mean_unit")
    columns.append("consistency_psnr")
    return columns


def pooled_columns(columns: Sequence[str]) -> list[str]:
    """The columns that can be averaged over datasets of different units."""
    return [c for c in columns if c not in _UNIT_BOUND]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _rows_where(rows: Sequence[Mapping[str, Any]], **conditions: Any) -> list[Mapping[str, Any]]:
    out = []
    for row in rows:
        if all(
            row[k] in v if isinstance(v, set | tuple | list) else row[k] == v
            for k, v in conditions.items()
            if v is not None
        ):
            out.append(row)
    return out


def _count_table(rows: Sequence[Mapping[str, Any]], reference: str) -> Table:
    groups: dict[tuple[str, str, str], dict[str, set]] = {}
    for row in rows:
        if row["method"] != reference:
            continue
        key = (row["dataset"], row["modality"], row["split"])
        g = groups.setdefault(key, {"subjects": set(), "volumes": set(), "images": set()})
        g["subjects"].add(row["subject_id"])
        g["volumes"].add(row["volume_id"])
        g["images"].add((row["volume_id"], row["slice_index"]))
    table_rows = []
    for (dataset, modality, split), g in sorted(groups.items()):
        size = {
            f"{r['height']}x{r['width']}"
            for r in rows
            if r["dataset"] == dataset and r["split"] == split and r["method"] == reference
        }
        table_rows.append(
            (
                Cell(dataset, numeric=False),
                Cell(modality, numeric=False),
                Cell(split, numeric=False),
                Cell(str(len(g["subjects"]))),
                Cell(str(len(g["volumes"]))),
                Cell(str(len(g["images"]))),
                Cell(", ".join(sorted(size)), numeric=False),
            )
        )
    return Table(
        ("Dataset", "Modality", "Split", "Subjects", "Volumes", "Images", "HR size"),
        tuple(table_rows),
    )


def _summary_blocks(
    rows: Sequence[Mapping[str, Any]],
    *,
    methods: Sequence[str],
    columns: Sequence[str],
    reference: str | None,
    caption: str,
    subset: str = "",
) -> list[Block]:
    summary = summarise(rows, methods=methods, columns=columns, reference=reference)
    blocks: list[Block] = [results_table(summary, caption=caption + subset)]
    if reference is not None and len(methods) > 1:
        blocks.append(
            pvalue_table(
                summary,
                caption=f"Paired Wilcoxon signed-rank p-values against {reference} "
                "(two-sided, same images; not corrected for multiple comparisons).",
            )
        )
    return blocks


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _subset_text(config: BenchmarkConfig) -> str:
    """The slice selection, for table captions (empty when every kept slice is evaluated)."""
    parts = []
    if config.every > 1:
        parts.append(
            f"every {_ordinal(config.every)} kept slice of each volume "
            f"(from slice {config.every // 2})"
        )
    if config.max_slices_per_volume:
        parts.append(f"at most {config.max_slices_per_volume} per volume")
    return f" Images: {', '.join(parts)}." if parts else ""


def _style_rows(
    rows: Sequence[Mapping[str, Any]], table: TableConfig, split: str | None
) -> list[Mapping[str, Any]]:
    selected = _rows_where(
        rows, split=split, dataset=None if table.datasets is None else set(table.datasets)
    )
    if table.volumes is not None:
        pattern = re.compile(table.volumes)
        selected = [r for r in selected if pattern.search(str(r["volume_id"]))]
    return selected


def _filter_text(table: TableConfig, split: str | None) -> str:
    parts = []
    if table.datasets is not None:
        parts.append("dataset(s) " + ", ".join(table.datasets))
    if table.volumes is not None:
        parts.append(f"volumes matching `{table.volumes}`")
    if split is not None:
        parts.append(f"split {split}")
    return "; ".join(parts) if parts else "all evaluated images"


def _style_blocks(
    rows: Sequence[Mapping[str, Any]],
    config: BenchmarkConfig,
    methods: Sequence[str],
    regions: Mapping[str, Any],
) -> list[Block]:
    subset = _subset_text(config)
    blocks: list[Block] = []
    for table in config.tables:
        title = table.title or TABLE_STYLES[table.style]
        blocks.append(Heading(title, 3))
        if table.style == "chest_xray":
            summaries: dict[str, Summary] = {}
            empty = []
            for split in config.splits:
                selected = _style_rows(rows, table, split)
                if not selected:
                    empty.append(split)
                summaries[split] = summarise(selected, methods=methods, columns=table.columns)
            caption = (
                f"Mean ± std over images of {_filter_text(table, None)}; one column per split."
            )
            if empty:
                caption += f" No images in split(s) {', '.join(empty)}: n/a."
            blocks.append(split_table(summaries, table.columns, caption=caption + subset))
            continue
        split = table.split or config.splits[0]
        selected = _style_rows(rows, table, split)
        if table.style == "brain_tumour":
            assert table.region is not None
            region = regions[table.region]
            columns = [
                f"{table.region}_{m}_{side}"
                for m in table.columns
                for side in ("inside", "outside", "difference")
            ]
            summary = summarise(
                selected, methods=methods, columns=columns, reference=config.reference
            )
            caption = (
                f"Mean ± std over images of {_filter_text(table, split)} where region "
                f"`{table.region}` is neither empty nor the whole image: "
                f"{region.describe()}.{subset}"
            )
            blocks.append(
                region_table(
                    summary,
                    table.region,
                    table.columns,
                    inside_label=f"in {table.region}",
                    outside_label=f"outside {table.region}",
                    caption=caption,
                )
            )
            continue
        blocks += _summary_blocks(
            selected,
            methods=methods,
            columns=table.columns,
            reference=config.reference,
            caption=f"Mean ± std over images of {_filter_text(table, split)}; best in bold.",
            subset=subset,
        )
    return blocks


def _runtime_table(rows: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> Table:
    datasets = sorted({r["dataset"] for r in rows})
    headers = ["Method", *(f"{d} (s)" for d in datasets)]
    table_rows = []
    for m in methods:
        cells = [Cell(m, numeric=False)]
        for d in datasets:
            s = summarise(_rows_where(rows, dataset=d), methods=[m], columns=["runtime_s"])
            desc = s.cell(m, "runtime_s").description
            text = "n/a" if desc.n == 0 else f"{desc.mean:.3f}"
            cells.append(Cell(text))
        table_rows.append(tuple(cells))
    return Table(
        tuple(headers),
        tuple(table_rows),
        caption="Mean seconds per image of the method's call (inference only, no metrics), "
        "on this machine's CPU.",
    )


def build_report(
    rows: Sequence[Mapping[str, Any]],
    config: BenchmarkConfig,
    *,
    methods: Sequence[MethodInfo],
    settings: Mapping[str, Any],
    missing_splits: Mapping[str, Sequence[str]],
    figures: Sequence[Figure] = (),
    notes: Sequence[str] = (),
    date: str | None = None,
) -> list[Block]:
    """The report's blocks for ``rows`` (every configured method, every evaluated image)."""
    names = [m.name for m in methods]
    reference = config.reference
    regions = {r.name: r for r in config.regions}
    columns = main_columns(config.metrics)
    subset = _subset_text(config)
    blocks: list[Block] = [Heading(config.title, 1)]
    if config.description:
        blocks.append(Paragraph(config.description))
    scale = config.degradation.scale
    stamp = f" on {date}" if date else ""
    blocks.append(
        Paragraph(
            f"Made by `medsr benchmark` (medsr {__version__}){stamp}. Degradation x{scale}: "
            f"`{_compact(settings['degradation'])}`, seed {config.seed}. Manifest "
            f"`{config.manifest}`, split(s) {', '.join(config.splits)}"
            + (
                f", every {_ordinal(config.every)} kept slice of each volume (from slice "
                f"{config.every // 2} of it)"
                if config.every > 1
                else ", every kept slice"
            )
            + (
                f", at most {config.max_slices_per_volume} per volume"
                if config.max_slices_per_volume
                else ""
            )
            + (f", border {config.border} px cropped before the metrics" if config.border else "")
            + "."
        )
    )
    blocks.append(Heading("Methods", 2))
    blocks.append(
        Table(
            ("Method", "Model", "Trained", "Runs as"),
            tuple(
                (
                    Cell(m.name, numeric=False),
                    Cell(m.spec, numeric=False),
                    Cell("yes" if m.trained else "no (interpolation)", numeric=False),
                    Cell(m.description, numeric=False),
                )
                for m in methods
            ),
        )
    )
    blocks.append(Heading("Images", 2))
    blocks.append(_count_table(rows, reference or names[0]))
    if missing_splits:
        blocks.append(
            Paragraph(
                "Not evaluated for lack of images: "
                + "; ".join(f"{d} has no {', '.join(s)} split" for d, s in missing_splits.items())
                + " (too few subjects for a subject-level split)."
            )
        )

    for split in config.splits:
        split_rows = _rows_where(rows, split=split)
        if not split_rows:
            continue
        blocks.append(Heading(f"Results: {split} split", 2))
        datasets = sorted({r["dataset"] for r in split_rows})
        if len(datasets) > 1:
            pooled = pooled_columns(columns)
            blocks.append(Heading("All datasets", 3))
            blocks += _summary_blocks(
                split_rows,
                methods=names,
                columns=pooled,
                reference=reference,
                caption="Mean ± std over all images of the split; best in bold. Metrics in "
                "the data's own units (MSE, MAE, NRMSE by the mean) are in the per-dataset "
                "tables only.",
                subset=subset,
            )
        for dataset in datasets:
            d_rows = _rows_where(split_rows, dataset=dataset)
            modality = d_rows[0]["modality"]
            blocks.append(Heading(f"{dataset} ({modality})", 3))
            blocks += _summary_blocks(
                d_rows,
                methods=names,
                columns=columns,
                reference=reference,
                caption="Mean ± std over the images; best in bold; units of the data "
                "(see the notes).",
                subset=subset,
            )
        modalities: dict[str, set[str]] = {}
        for r in split_rows:
            modalities.setdefault(r["modality"], set()).add(r["dataset"])
        if len(modalities) > 1:
            for modality, sets in sorted(modalities.items()):
                if len(sets) < 2:
                    continue
                blocks.append(Heading(f"Modality {modality} ({', '.join(sorted(sets))})", 3))
                blocks += _summary_blocks(
                    _rows_where(split_rows, modality=modality),
                    methods=names,
                    columns=pooled_columns(columns),
                    reference=reference,
                    caption="Mean ± std over the images of this modality; best in bold.",
                    subset=subset,
                )

    if config.tables:
        blocks.append(Heading("Tables in the style of the source works", 2))
        blocks += _style_blocks(rows, config, names, regions)

    if config.regions:
        blocks.append(Heading("Regions", 2))
        for region in config.regions:
            blocks.append(Heading(f"Region `{region.name}`", 3))
            text = region.describe()
            blocks.append(Paragraph(text[:1].upper() + text[1:] + "."))
            for split in config.splits:
                for dataset in sorted({r["dataset"] for r in rows}):
                    usable = [
                        r
                        for r in _rows_where(rows, split=split, dataset=dataset)
                        if any(
                            _finite(r.get(f"{region.name}_{m}_inside"))
                            for m in config.region_metrics
                        )
                    ]
                    if not usable:
                        continue
                    cols = [
                        f"{region.name}_{m}_{side}"
                        for m in config.region_metrics
                        for side in ("inside", "outside", "difference")
                    ]
                    summary = summarise(usable, methods=names, columns=cols, reference=reference)
                    blocks.append(
                        region_table(
                            summary,
                            region.name,
                            config.region_metrics,
                            caption=f"{dataset}, {split} split: mean ± std over the images "
                            "where the region is neither empty nor the whole image." + subset,
                        )
                    )

    blocks.append(Heading("Runtime", 2))
    blocks.append(_runtime_table(rows, names))

    if figures:
        blocks.append(Heading("Figures", 2))
        blocks += list(figures)

    blocks.append(Heading("Notes", 2))
    items = [
        "Every metric is computed in physical units (the normalised SR output and HR slice "
        "mapped back with the volume's normaliser) with data range = the width of that "
        "normaliser's window (`data_high - data_low` in the CSV): the CT window, the MR "
        "volume's 0.5-99.5 foreground percentiles, the X-ray bit depth.",
        "SR outputs are clamped to that window when the normaliser clips (the ground truth "
        "then lies in it too)."
        if config.clamp
        else "SR outputs are not clamped.",
        "Mean ± std: over images, sample standard deviation; non-finite values (a PSNR of "
        "+inf, a metric that could not be computed) are left out.",
        "Best in bold per column, following the metric's direction (↑ higher is better, "
        "↓ lower is better); ties at the displayed precision are all bold.",
        "p-values: paired two-sided Wilcoxon signed-rank test (scipy) of each method against "
        f"{reference} on the images both have, zero differences dropped; no correction for "
        "multiple comparisons. When every image favours the same method the exact p-value is "
        "the smallest possible for n images (2 / 2^n), whatever the metric. Slices of one "
        "volume are not independent: read p-values as consistency across images.",
        "`NRMSE (mean)` divides the RMSE by the ground truth's mean in physical units; it is "
        "meaningless where that mean is near zero or negative (CT in HU, the z-scored BraTS "
        "volumes, whose background is about -3). `NRMSE (mean, [0, 1])` is the same ratio on "
        "the images scaled by the window to [0, 1], as in the BraTS work.",
        "Consistency PSNR: the SR output degraded again by the noise-free evaluation "
        "degradation, against the LR input (same data range); necessary, not sufficient: "
        "detail finer than an LR pixel is invisible to it.",
        "Time per image: the method's call alone, on a shared CPU; not a speed benchmark.",
    ]
    for m in config.metrics:
        reason = METRICS[m].unavailable_reason()
        if reason is not None:
            items.append(f"{m} was not computed (NaN): {reason}")
    items += list(notes)
    blocks.append(BulletList(tuple(items)))
    return blocks


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))
