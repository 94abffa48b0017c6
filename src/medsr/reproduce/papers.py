"""The published numbers of the five source works, and the checks that flag implausible ones.

Each work's numbers are transcribed by hand from its seed text into ``papers/N.yaml``
(committed, with the section and table they come from). This module reads them into frozen
dataclasses, strictly (unknown keys are errors that name the valid ones), and runs checks
that need nothing but the published numbers themselves (:func:`paper_flags`) or the
published numbers and our per-image rows (:func:`data_flags`).

A column is a result column of ``medsr benchmark`` (``psnr``, ``ssim``,
``lesion_ssim_inside``...), a derived column (:data:`DERIVED_COLUMNS`), or
``SPLIT:column`` for a column of another split (the chest X-ray work's validation and test
columns). A column that has no counterpart in our runs (``model1:mse`` of the thick/thin
work) is shown with the paper's number only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from medsr.errors import ConfigError
from medsr.schema import check_keys, convert, get, one_of, read_yaml

__all__ = [
    "DERIVED_COLUMNS",
    "Claim",
    "Flag",
    "Note",
    "Paper",
    "PaperColumn",
    "PaperRow",
    "PaperTable",
    "PublishedValue",
    "data_flags",
    "load_paper",
    "paper_flags",
    "parse_paper",
]

DERIVED_COLUMNS: dict[str, str] = {
    "mae_unit": "MAE divided by the volume's intensity window (the paper's [0, 1] scale)",
    "gt_mean_unit": "mean of the ground truth on the [0, 1] window scale, from "
    "sqrt(MSE) / (window * NRMSE_mean_unit)",
}
"""Columns computed from the result rows (see :func:`medsr.reproduce.report.derived`)."""

CLAIM_KINDS = ("greater", "below_zero")

# PSNR and SSIM of one set of images move together; a row that gains this much PSNR over
# another while losing this much SSIM is flagged (seed 1: +4.45 dB with -0.087 SSIM).
PSNR_GAIN_DB = 1.0
SSIM_LOSS = 0.02


@dataclass(frozen=True)
class PublishedValue:
    """A published mean and, where the paper gives one, its standard deviation."""

    mean: float
    std: float | None = None

    def text(self, digits: int) -> str:
        if self.std is None:
            return _fmt(self.mean, digits)
        return f"{_fmt(self.mean, digits)} ± {_fmt(self.std, digits)}"


def _fmt(value: float, digits: int) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
        return f"{value:.3g}"
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class PaperColumn:
    """``metric``: a result column (or derived column); ``split``: its split (default the
    table's); ``label``: the paper's heading."""

    metric: str
    label: str
    split: str | None = None

    @property
    def key(self) -> str:
        return f"{self.split}:{self.metric}" if self.split else self.metric


@dataclass(frozen=True)
class PaperRow:
    """One published row: the paper's ``label``, the name of our method it is set beside
    (``ours``; None: none of ours), and the published values by column key."""

    label: str
    ours: str | None
    values: Mapping[str, PublishedValue]


@dataclass(frozen=True)
class PaperTable:
    """A published table. ``data_range``: the intensity range the paper's PSNR/MSE imply
    (where a check needs one); ``reader_study``: scores of readers, filled by the reader
    study, not by the benchmark."""

    id: str
    caption: str
    reference: str
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    split: str | None = None
    data_range: float | None = None
    reader_study: bool = False

    def column_split(self, column: PaperColumn) -> str | None:
        return column.split or self.split


@dataclass(frozen=True)
class Claim:
    """A claim of the paper that our numbers can test.

    ``kind`` ``greater``: method ``better`` is better than each of ``than`` on ``metric``
    (in the metric's direction); ``below_zero``: the mean of ``metric`` is below zero for each
    of ``methods``."""

    where: str
    text: str
    metric: str
    kind: str = "greater"
    better: str | None = None
    than: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    split: str | None = None


@dataclass(frozen=True)
class Note:
    """An inconsistency or gap found while reading the paper (with where it is)."""

    where: str
    text: str


@dataclass(frozen=True)
class Paper:
    work: int
    title: str
    seed_file: str
    tables: tuple[PaperTable, ...]
    claims: tuple[Claim, ...]
    notes: tuple[Note, ...]


@dataclass(frozen=True)
class Flag:
    """An implausible published number: the table, the rows involved and why."""

    table: str
    rows: tuple[str, ...]
    text: str


# ----------------------------------------------------------------------------------- parsing
def _value(data: Any, where: str) -> PublishedValue:
    """A published number: ``mean`` or ``[mean, std]``."""
    value = convert(data, float | tuple[float, float], where)
    return PublishedValue(*value) if isinstance(value, tuple) else PublishedValue(value)


def _strs(data: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    return get(data, key, where, tuple[str, ...] | None, None, nonempty=True) or ()


def _table(data: Any, where: str) -> PaperTable:
    d = check_keys(
        data,
        ("id", "caption", "reference", "split", "columns", "rows", "data_range", "reader_study"),
        where,
        required=("id", "caption", "reference", "columns", "rows"),
    )
    columns = []
    for k, c in enumerate(get(d, "columns", where, list[Any])):
        cd = check_keys(
            c, ("metric", "label", "split"), f"{where}.columns[{k}]", required=("metric", "label")
        )
        columns.append(PaperColumn(str(cd["metric"]), str(cd["label"]), cd.get("split")))
    keys = {c.key for c in columns}
    rows = []
    for k, r in enumerate(get(d, "rows", where, list[Any])):
        w = f"{where}.rows[{k}]"
        rd = check_keys(r, ("label", "ours", "values"), w, required=("label", "values"))
        values = rd["values"] or {}
        unknown = sorted(set(values) - keys)
        if unknown:
            raise ConfigError(f"{w}.values: column(s) {unknown} are not columns {sorted(keys)}")
        rows.append(
            PaperRow(
                label=str(rd["label"]),
                ours=rd.get("ours"),
                values={key: _value(v, f"{w}.values.{key}") for key, v in values.items()},
            )
        )
    return PaperTable(
        id=str(d["id"]),
        caption=str(d["caption"]),
        reference=str(d["reference"]),
        columns=tuple(columns),
        rows=tuple(rows),
        split=d.get("split"),
        data_range=get(d, "data_range", where, float | None, None),
        reader_study=bool(d.get("reader_study", False)),
    )


def _claim(data: Any, where: str) -> Claim:
    d = check_keys(
        data,
        ("where", "text", "metric", "kind", "better", "than", "methods", "split"),
        where,
        required=("where", "text", "metric"),
    )
    kind = d.get("kind", "greater")
    one_of(f"{where}.kind", kind, CLAIM_KINDS)
    claim = Claim(
        where=str(d["where"]),
        text=str(d["text"]),
        metric=str(d["metric"]),
        kind=kind,
        better=d.get("better"),
        than=_strs(d, "than", where),
        methods=_strs(d, "methods", where),
        split=d.get("split"),
    )
    if kind == "greater" and (claim.better is None or not claim.than):
        raise ConfigError(f"{where}: a 'greater' claim needs 'better' and 'than'")
    if kind == "below_zero" and not claim.methods:
        raise ConfigError(f"{where}: a 'below_zero' claim needs 'methods'")
    return claim


def parse_paper(data: Any, *, where: str = "paper") -> Paper:
    """A :class:`Paper` from parsed YAML (strict)."""
    d = check_keys(
        data,
        ("work", "title", "seed_file", "tables", "claims", "notes"),
        where,
        required=("work", "title", "seed_file", "tables"),
    )
    tables = tuple(
        _table(t, f"{where}.tables[{k}]") for k, t in enumerate(get(d, "tables", where, list[Any]))
    )
    claims = tuple(_claim(c, f"{where}.claims[{k}]") for k, c in enumerate(d.get("claims") or []))
    notes = []
    for k, n in enumerate(d.get("notes") or []):
        nd = check_keys(n, ("where", "text"), f"{where}.notes[{k}]", required=("where", "text"))
        notes.append(Note(str(nd["where"]), str(nd["text"])))
    return Paper(
        work=int(d["work"]),
        title=str(d["title"]),
        seed_file=str(d["seed_file"]),
        tables=tables,
        claims=claims,
        notes=tuple(notes),
    )


def load_paper(work: int) -> Paper:
    """The committed published numbers of work ``work`` (1-5)."""
    name = f"{work}.yaml"
    folder = resources.files("medsr.reproduce") / "papers"
    path = folder / name
    if not path.is_file():
        raise ConfigError(f"no published numbers for work {work}; valid works: 1, 2, 3, 4, 5")
    paper = parse_paper(read_yaml(path, what="published numbers"), where=f"papers/{name}")
    if paper.work != work:
        raise ConfigError(f"papers/{name} says work {paper.work}, expected {work}")
    return paper


# ------------------------------------------------------------------------------------ checks
def paper_flags(paper: Paper) -> list[Flag]:
    """Checks on the published numbers alone:

    - PSNR and SSIM in opposite directions by a wide margin between two rows of one table
      (at least :data:`PSNR_GAIN_DB` dB more PSNR with :data:`SSIM_LOSS` less SSIM);
    - a negative mean PSNR (errors larger than the data range);
    - an MSE larger than the square of the table's ``data_range`` (the largest squared error
      data of that range can have).
    """
    flags: list[Flag] = []
    for table in paper.tables:
        psnr = _by_metric(table, "psnr")
        ssim = _by_metric(table, "ssim")
        for key_p, key_s in _same_split(table, psnr, ssim):
            for a in table.rows:
                for b in table.rows:
                    if a is b or key_p not in a.values or key_s not in a.values:
                        continue
                    if key_p not in b.values or key_s not in b.values:
                        continue
                    gain = a.values[key_p].mean - b.values[key_p].mean
                    loss = b.values[key_s].mean - a.values[key_s].mean
                    if gain >= PSNR_GAIN_DB and loss >= SSIM_LOSS:
                        flags.append(
                            Flag(
                                table.id,
                                (a.label, b.label),
                                f"{a.label} has {gain:+.2f} dB PSNR over {b.label} but an SSIM "
                                f"lower by {loss:.3f} ({a.values[key_s].mean:g} against "
                                f"{b.values[key_s].mean:g}): on the same images PSNR and SSIM "
                                "do not move this far in opposite directions",
                            )
                        )
        for row in table.rows:
            for column in table.columns:
                value = row.values.get(column.key)
                if value is None:
                    continue
                metric = column.metric.rpartition(":")[2]
                if metric == "psnr" and value.mean < 0:
                    flags.append(
                        Flag(
                            table.id,
                            (row.label,),
                            f"{row.label}: mean PSNR {value.mean:.3g} dB is negative: the mean "
                            "squared error exceeds the square of the data range used for PSNR",
                        )
                    )
                if metric == "mse" and table.data_range is not None:
                    limit = table.data_range**2
                    if value.mean > limit:
                        flags.append(
                            Flag(
                                table.id,
                                (row.label,),
                                f"{row.label}: {column.label} {value.mean:.3g} exceeds "
                                f"{limit:.3g}, the largest squared error of data with range "
                                f"{table.data_range:g}",
                            )
                        )
    return flags


def _by_metric(table: PaperTable, metric: str) -> list[PaperColumn]:
    return [c for c in table.columns if c.metric == metric]


def _same_split(
    table: PaperTable, first: list[PaperColumn], second: list[PaperColumn]
) -> list[tuple[str, str]]:
    return [
        (a.key, b.key)
        for a in first
        for b in second
        if table.column_split(a) == table.column_split(b)
    ]


def data_flags(paper: Paper, gt_mean_unit: float | None) -> list[Flag]:
    """Checks of published numbers against a property of our data: with ``nrmse_mean_unit``
    and ``mae_unit`` published for one row, RMSE >= MAE implies that the ground truth's mean
    on the [0, 1] scale is at least MAE / NRMSE; ``gt_mean_unit`` is the median of that mean
    over our evaluated images (None: not measured, no flag)."""
    flags: list[Flag] = []
    if gt_mean_unit is None or not math.isfinite(gt_mean_unit):
        return flags
    for table in paper.tables:
        for row in table.rows:
            nrmse = row.values.get("nrmse_mean_unit")
            mae = row.values.get("mae_unit")
            if nrmse is None or mae is None or nrmse.mean <= 0:
                continue
            bound = mae.mean / nrmse.mean
            if gt_mean_unit < bound:
                flags.append(
                    Flag(
                        table.id,
                        (row.label,),
                        f"{row.label}: MAE {mae.mean:g} with NRMSE {nrmse.mean:g} (RMSE / mean) "
                        f"needs a ground-truth mean of at least {bound:.3f} of the range, since "
                        f"RMSE >= MAE; slices prepared as the paper says have a median mean of "
                        f"{gt_mean_unit:.3f} on our data",
                    )
                )
    return flags
