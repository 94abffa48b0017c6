"""Result tables: summaries of per-image rows, and the tables of the benchmark report.

* :func:`summarise` groups rows by method and gives, per column, the mean ± std over the
  images, and the paired Wilcoxon signed-rank test against a reference method on the images
  both have.
* :func:`results_table`, :func:`pvalue_table`, :func:`split_table` and
  :func:`region_table` turn summaries into :class:`~medsr.document.Table` blocks; the best
  method of each column is bold, following the column's direction (:func:`direction`):
  higher PSNR, SSIM, MS-SSIM, VIF and consistency PSNR; lower MSE, MAE, NRMSE, GMSD, LPIPS
  and runtime. Ties at the displayed precision are all bold. Region differences have no
  direction, and a lower-is-better column with a negative mean (NRMSE by a negative
  ground-truth mean) has no best.

The blocks and their rendering are :mod:`medsr.document` (shared by every report).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from medsr.document import Cell, Table, format_p
from medsr.eval.stats import Description, WilcoxonResult, describe, paired_wilcoxon
from medsr.metrics import METRICS

__all__ = [
    "ColumnSummary",
    "Summary",
    "column_label",
    "direction",
    "format_number",
    "pvalue_table",
    "region_table",
    "results_table",
    "split_table",
    "summarise",
]

Direction = Literal["higher", "lower"]

# -- columns ------------------------------------------------------------------------------------
_LABELS = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "ms_ssim": "MS-SSIM",
    "mse": "MSE",
    "mae": "MAE",
    "nrmse_mean": "NRMSE (mean)",
    "nrmse_range": "NRMSE (range)",
    "nrmse_euclidean": "NRMSE (Euclidean)",
    "vif": "VIF",
    "gmsd": "GMSD",
    "lpips": "LPIPS",
    "nrmse_mean_unit": "NRMSE (mean, [0, 1])",
    "consistency_psnr": "Consistency PSNR (dB)",
    "runtime_s": "Time per image (s)",
}
_DIGITS = {
    "psnr": 2,
    "consistency_psnr": 2,
    "ssim": 4,
    "ms_ssim": 4,
    "vif": 3,
    "gmsd": 4,
    "nrmse_mean": 4,
    "nrmse_range": 4,
    "nrmse_euclidean": 4,
    "nrmse_mean_unit": 4,
    "lpips": 4,
    "runtime_s": 3,
    "fraction": 3,
}
_SIDES = ("inside", "outside", "difference")


def _metric_of(column: str) -> tuple[str, str | None]:
    """``(metric, side)`` of a column: ``("ssim", None)``, or for region columns
    ``brain_ssim_inside`` -> ``("ssim", "inside")``; unknown columns map to themselves."""
    for side in _SIDES:
        if column.endswith(f"_{side}"):
            stem = column[: -len(side) - 1]
            for name in sorted(METRICS, key=len, reverse=True):
                if stem.endswith(f"_{name}"):
                    return name, side
    if column.endswith("_fraction"):
        return "fraction", None
    return column, None


def direction(column: str) -> Direction | None:
    """Which way is better for a column, or ``None`` (differences, fractions, unknown)."""
    metric, side = _metric_of(column)
    if side == "difference":
        return None
    if metric in METRICS:
        return "higher" if METRICS[metric].higher_is_better else "lower"
    if metric == "consistency_psnr":
        return "higher"
    if metric in ("nrmse_mean_unit", "runtime_s"):
        return "lower"
    return None


def column_label(column: str, *, arrow: bool = True) -> str:
    """Human label of a column, with ↑ / ↓ for its direction."""
    metric, side = _metric_of(column)
    if side is not None:
        label = f"{_LABELS.get(metric, metric)} {side}"
    elif metric == "fraction":
        label = "fraction of image"
    else:
        label = _LABELS.get(column, column)
    d = direction(column)
    if arrow and d is not None:
        label += " ↑" if d == "higher" else " ↓"
    return label


def format_number(value: float, column: str) -> str:
    """A value at the precision of its column: PSNR 2 decimals, SSIM 4, MAE/MSE 4 significant
    digits, ...; NaN as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    metric, _ = _metric_of(column)
    digits = _DIGITS.get(metric)
    if digits is None:
        return f"{value:.4g}"
    return f"{value:.{digits}f}"


# -- summaries ----------------------------------------------------------------------------------
PairKey = tuple[str, str, int]


def _pair_key(row: Mapping[str, Any]) -> PairKey:
    return (str(row["split"]), str(row["volume_id"]), int(row["slice_index"]))


@dataclass(frozen=True)
class ColumnSummary:
    """One method, one column: the description and the test against the reference (``None``
    for the reference itself, or without a reference)."""

    description: Description
    test: WilcoxonResult | None = None


@dataclass(frozen=True)
class Summary:
    """Per method and column summaries of a group of rows."""

    methods: tuple[str, ...]
    columns: tuple[str, ...]
    reference: str | None
    cells: dict[tuple[str, str], ColumnSummary]
    images: dict[str, int]
    """Rows (images) per method."""

    def cell(self, method: str, column: str) -> ColumnSummary:
        return self.cells[(method, column)]

    def best(self, column: str) -> set[str]:
        """Methods whose mean is the best at the displayed precision (empty without a
        direction or without finite means)."""
        d = direction(column)
        if d is None:
            return set()
        means = {
            m: self.cells[(m, column)].description.mean
            for m in self.methods
            if math.isfinite(self.cells[(m, column)].description.mean)
        }
        if len(means) < 2:
            return set()
        if d == "lower" and min(means.values()) < 0:
            # a lower-is-better error below zero (NRMSE by a negative mean) has no "best"
            return set()
        best_value = max(means.values()) if d == "higher" else min(means.values())
        shown = format_number(best_value, column)
        return {m for m, v in means.items() if format_number(v, column) == shown}


def summarise(
    rows: Iterable[Mapping[str, Any]],
    *,
    methods: Sequence[str],
    columns: Sequence[str],
    reference: str | None = None,
) -> Summary:
    """Summaries of ``columns`` for each of ``methods`` over ``rows``.

    The test of a method against ``reference`` pairs the rows by (split, volume, slice);
    images that only one of them has are left out of the test (not of the mean).
    """
    values: dict[str, dict[PairKey, Mapping[str, Any]]] = {m: {} for m in methods}
    for row in rows:
        if row["method"] in values:
            values[row["method"]][_pair_key(row)] = row
    cells: dict[tuple[str, str], ColumnSummary] = {}
    for method in methods:
        mine = values[method]
        for column in columns:
            desc = describe([float(r[column]) for r in mine.values()])
            test = None
            if reference is not None and method != reference and reference in values:
                theirs = values[reference]
                common = [k for k in mine if k in theirs]
                test = paired_wilcoxon(
                    [float(mine[k][column]) for k in common],
                    [float(theirs[k][column]) for k in common],
                )
            cells[(method, column)] = ColumnSummary(desc, test)
    return Summary(
        methods=tuple(methods),
        columns=tuple(columns),
        reference=reference if reference in values else None,
        cells=cells,
        images={m: len(values[m]) for m in methods},
    )


# -- tables ---------------------------------------------------------------------------------------
def _mean_std(c: ColumnSummary, column: str) -> str:
    """``mean ± std``, both with the mean's decimals (4 significant digits of the mean for
    the columns without a fixed precision, such as MAE in the data's units)."""
    d = c.description
    if d.n == 0:
        return "n/a"
    text = format_number(d.mean, column)
    if math.isnan(d.std):
        return text
    metric, _ = _metric_of(column)
    if metric in _DIGITS or not math.isfinite(d.mean) or d.mean == 0:
        return f"{text} ± {format_number(d.std, column)}"
    decimals = max(0, 3 - math.floor(math.log10(abs(d.mean))))
    return f"{d.mean:.{decimals}f} ± {d.std:.{decimals}f}"


def results_table(
    summary: Summary, columns: Sequence[str] | None = None, caption: str = ""
) -> Table:
    """Method | n | mean ± std per column; the best in bold."""
    columns = list(summary.columns if columns is None else columns)
    best = {c: summary.best(c) for c in columns}
    rows = []
    for m in summary.methods:
        cells = [Cell(m, numeric=False), Cell(str(summary.images[m]))]
        for c in columns:
            cells.append(Cell(_mean_std(summary.cell(m, c), c), bold=m in best[c]))
        rows.append(tuple(cells))
    headers = ("Method", "n", *(column_label(c) for c in columns))
    return Table(headers, tuple(rows), caption)


def pvalue_table(
    summary: Summary, columns: Sequence[str] | None = None, caption: str = ""
) -> Table:
    """Method | pairs | p-value per column (paired Wilcoxon against the reference)."""
    columns = list(summary.columns if columns is None else columns)
    rows = []
    for m in summary.methods:
        if m == summary.reference:
            cells = [Cell(m, numeric=False), Cell("—")] + [Cell("reference") for _ in columns]
        else:
            tests = [summary.cell(m, c).test for c in columns]
            pairs = max((t.n for t in tests if t is not None), default=0)
            cells = [Cell(m, numeric=False), Cell(str(pairs))]
            cells += [Cell("n/a" if t is None else format_p(t.p_value)) for t in tests]
        rows.append(tuple(cells))
    headers = ("Method", "pairs", *(column_label(c, arrow=False) for c in columns))
    return Table(headers, tuple(rows), caption)


def split_table(
    summaries: Mapping[str, Summary], metrics: Sequence[str], caption: str = ""
) -> Table:
    """Method | metric (split) ... : one column per metric and split, as the chest X-ray
    work's validation and test columns. ``summaries``: ``{split: Summary}``."""
    splits = list(summaries)
    methods = next(iter(summaries.values())).methods if summaries else ()
    headers = ["Method"]
    for metric in metrics:
        for split in splits:
            headers.append(f"{column_label(metric)} {split}")
    rows = []
    for m in methods:
        cells = [Cell(m, numeric=False)]
        for metric in metrics:
            for split in splits:
                s = summaries[split]
                cells.append(Cell(_mean_std(s.cell(m, metric), metric), bold=m in s.best(metric)))
        rows.append(tuple(cells))
    return Table(tuple(headers), tuple(rows), caption)


def region_table(
    summary: Summary,
    region: str,
    metrics: Sequence[str],
    *,
    inside_label: str = "inside",
    outside_label: str = "outside",
    caption: str = "",
) -> Table:
    """Method | n | per metric: inside, outside, inside − outside (the tumour versus normal
    tissue comparison of the brain tumour work)."""
    headers = ["Method", "n"]
    columns = []
    for metric in metrics:
        for side, label in (
            ("inside", inside_label),
            ("outside", outside_label),
            ("difference", f"{inside_label} − {outside_label}"),
        ):
            columns.append(f"{region}_{metric}_{side}")
            headers.append(f"{column_label(metric, arrow=False)} {label}")
    rows = []
    for m in summary.methods:
        n = max(summary.cell(m, c).description.n for c in columns) if columns else 0
        cells = [Cell(m, numeric=False), Cell(str(n))]
        for c in columns:
            cells.append(Cell(_mean_std(summary.cell(m, c), c), bold=m in summary.best(c)))
        rows.append(tuple(cells))
    return Table(tuple(headers), tuple(rows), caption)
