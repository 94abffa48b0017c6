"""The reproduction report: the paper's tables with our numbers beside the published ones.

Everything in ``report.md`` is computed from the run's per-image rows, the resolved training
configs and the committed published numbers (``papers/N.yaml``): the "which claims hold"
paragraph is generated from the numbers, not written by hand.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medsr.document import format_p
from medsr.reproduce.papers import (
    Claim,
    Flag,
    Paper,
    PaperTable,
    data_flags,
    load_paper,
    paper_flags,
)
from medsr.reproduce.spec import WorkSpec

__all__ = [
    "ALPHA",
    "claim_verdict",
    "derived",
    "display_digits",
    "model_reductions",
    "our_value",
    "study_scores",
    "write_report",
]

ALPHA = 0.05
"""Significance level of the paired Wilcoxon tests behind "holds"."""

_LOWER_BETTER = ("mse", "mae", "mae_unit", "nrmse_mean", "nrmse_mean_unit", "nrmse_range", "gmsd")

# keys of the resolved config that say where things are, not how big they are
_NOT_SIZES = (
    "data.manifest",
    "model.init_generator",
    "output_dir",
    "train.progress",
    "train.tensorboard",
    "description",
    "source",
)


def _lower_is_better(metric: str) -> bool:
    return metric.rpartition(":")[2] in _LOWER_BETTER


# ------------------------------------------------------------------------------------ values
def derived(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with the derived columns of :data:`medsr.reproduce.papers.DERIVED_COLUMNS`."""
    out = dict(row)
    window = _float(row.get("data_range"))
    mae = _float(row.get("mae"))
    out["mae_unit"] = mae / window if window and math.isfinite(mae) else math.nan
    mse = _float(row.get("mse"))
    nrmse_unit = _float(row.get("nrmse_mean_unit"))
    if window and nrmse_unit and math.isfinite(mse) and math.isfinite(nrmse_unit):
        out["gt_mean_unit"] = math.sqrt(mse) / (window * nrmse_unit)
    else:
        out["gt_mean_unit"] = math.nan
    return out


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _rows_of(rows: Sequence[Mapping[str, Any]], method: str, split: str | None) -> list:
    return [r for r in rows if r["method"] == method and (split is None or r["split"] == split)]


def our_value(
    rows: Sequence[Mapping[str, Any]], method: str | None, metric: str, split: str | None
) -> tuple[float, float, int]:
    """Mean, sample std and count of ``metric`` for ``method`` over the finite values."""
    from medsr.eval.stats import describe

    if method is None:
        return math.nan, math.nan, 0
    values = [_float(r.get(metric)) for r in _rows_of(rows, method, split)]
    d = describe(values) if values else None
    if d is None:
        return math.nan, math.nan, 0
    return d.mean, d.std, d.n


def display_digits(metric: str) -> int:
    """Decimals shown for ``metric`` (published and ours alike)."""
    base = metric.rpartition(":")[2]
    if base in ("psnr", "lesion_psnr_inside", "lesion_psnr_outside"):
        return 2
    if base in ("mse",):
        return 1
    return 4 if "ssim" in base else 3


def _fmt(mean: float, std: float, metric: str) -> str:
    if not math.isfinite(mean):
        return "—"
    digits = display_digits(metric)

    def one(v: float) -> str:
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** (-digits)):
            return f"{v:.3g}"
        return f"{v:.{digits}f}"

    return one(mean) if not math.isfinite(std) else f"{one(mean)} ± {one(std)}"


# ------------------------------------------------------------------------------------ claims
def _paired(
    rows: Sequence[Mapping[str, Any]], a: str, b: str, metric: str, split: str | None
) -> tuple[float, float, int]:
    """Median of a - b over the images both have, the Wilcoxon p-value, the pair count."""
    from medsr.eval.stats import paired_wilcoxon
    from medsr.eval.tables import _pair_key

    mine = {_pair_key(r): _float(r.get(metric)) for r in _rows_of(rows, a, split)}
    theirs = {_pair_key(r): _float(r.get(metric)) for r in _rows_of(rows, b, split)}
    common = [k for k in mine if k in theirs]
    test = paired_wilcoxon([mine[k] for k in common], [theirs[k] for k in common])
    return test.median_difference, test.p_value, test.n


def claim_verdict(claim: Claim, rows: Sequence[Mapping[str, Any]], split: str | None) -> str:
    """One sentence: does ``claim`` hold on ``rows``? Computed from the means and the paired
    Wilcoxon test at :data:`ALPHA`."""
    split = claim.split or split
    methods = {r["method"] for r in rows}
    where = f" ({claim.where})"
    if claim.kind == "below_zero":
        parts = []
        for method in claim.methods:
            mean, _, n = our_value(rows, method, claim.metric, split)
            if n == 0:
                parts.append(f"{method}: no value")
                continue
            parts.append(f"{method} {mean:+.4f} over {n} images")
        values = [our_value(rows, m, claim.metric, split)[0] for m in claim.methods]
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            state = "cannot be tested on our data"
        elif all(v < 0 for v in finite) and len(finite) == len(values):
            state = "holds"
        elif any(v < 0 for v in finite):
            state = "holds in part"
        else:
            state = "does not hold"
        return f"*{claim.text}*{where}: **{state}** ({claim.metric}: {'; '.join(parts)})."
    assert claim.better is not None
    verdicts = []
    for other in claim.than:
        if claim.better not in methods or other not in methods:
            verdicts.append((f"against {other}: not run", "untestable"))
            continue
        a, _, _ = our_value(rows, claim.better, claim.metric, split)
        b, _, _ = our_value(rows, other, claim.metric, split)
        if not (math.isfinite(a) and math.isfinite(b)):
            verdicts.append((f"against {other}: no finite values", "untestable"))
            continue
        _, p, n = _paired(rows, claim.better, other, claim.metric, split)
        better = a < b if _lower_is_better(claim.metric) else a > b
        text = f"against {other}: {a:.4g} vs {b:.4g}, paired p = {format_p(p)} (n = {n})"
        if better and math.isfinite(p) and p < ALPHA:
            verdicts.append((text, "holds"))
        elif better:
            verdicts.append((text, "same direction, not significant"))
        else:
            verdicts.append((text, "does not hold"))
    states = {v for _, v in verdicts}
    if states == {"holds"}:
        state = "holds"
    elif states == {"untestable"}:
        state = "cannot be tested on our data"
    elif "does not hold" in states and "holds" not in states:
        state = "does not hold"
    elif states <= {"holds", "same direction, not significant", "untestable"}:
        state = "points the same way, not everywhere significant"
    else:
        state = "holds in part"
    details = "; ".join(f"{t} ({v})" for t, v in verdicts)
    return f"*{claim.text}*{where}: **{state}** ({claim.metric}; {details})."


# -------------------------------------------------------------------------------- scaling
def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(data, list) and data and all(isinstance(v, Mapping) for v in data):
        out = {}
        for k, value in enumerate(data):
            name = value.get("name", k) if isinstance(value, Mapping) else k
            out.update(_flatten(value, f"{prefix}{name}."))
        return out
    return {prefix.rstrip("."): data}


def _size_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def model_reductions(full: Mapping[str, Any], scaled: Mapping[str, Any]) -> list[str]:
    """``key: full -> scaled (xR)`` for every setting that differs (stages by name)."""
    a, b = _flatten(full), _flatten(scaled)
    lines = []
    # a section switched off (a loss set to null) is one line, not one per setting
    off = [k for k, v in b.items() if v is None and any(x.startswith(f"{k}.") for x in a)]
    for key in off:
        lines.append(f"`{key}`: on -> off")
    for key in sorted(set(a) | set(b)):
        if any(key.startswith(p) for p in _NOT_SIZES) or key.endswith(".weights"):
            continue
        if any(key == k or key.startswith(f"{k}.") for k in off):
            continue
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        ratio = ""
        if (
            isinstance(x, int | float)
            and isinstance(y, int | float)
            and not isinstance(x, bool)
            and not isinstance(y, bool)
            and x
        ):
            ratio = f" (x{y / x:.3g})"
        lines.append(f"`{key}`: {_size_text(x)} -> {_size_text(y)}{ratio}")
    return lines


def _parameters(config: Mapping[str, Any], key: str) -> int | None:
    from medsr.models import count_parameters_of

    spec = config["model"].get(key)
    if not spec:
        return None
    try:
        return count_parameters_of(
            spec["arch"], dict(spec.get("params") or {}), discriminator=key == "discriminator"
        )
    except Exception:  # a count is informative only; the config itself was already checked
        return None


def _scaling_blocks(work: WorkSpec, profile: str, data_root: Path, notes: list[str]) -> list[str]:
    from medsr.reproduce.runner import train_config_data
    from medsr.train import parse_config, to_dict

    lines = [f"## Scaled down (profile `{profile}`)", ""]
    if profile == "full":
        lines += ["Nothing: the `full` profile runs the recipes of `configs/` unchanged.", ""]
    for spec in work.models:
        full = to_dict(parse_config(train_config_data(spec, "full", data_root=data_root)))
        scaled = to_dict(
            parse_config(train_config_data(spec, profile, data_root=data_root, notes=[]))
        )
        lines.append(
            f"**{spec.name}** (recipe `{spec.recipe}`"
            + (f", stages {', '.join(spec.stages)}" if spec.stages else "")
            + (f", starting from {spec.init_from}" if spec.init_from else "")
            + ")"
        )
        lines.append("")
        for key in ("generator", "discriminator"):
            n_full, n_scaled = _parameters(full, key), _parameters(scaled, key)
            if n_full and n_scaled:
                lines.append(
                    f"- {key} parameters: {n_full:,} -> {n_scaled:,} (x{n_scaled / n_full:.3g})"
                )
        steps_full = sum(s["steps"] for s in full["stages"])
        steps_scaled = sum(s["steps"] for s in scaled["stages"])
        lines.append(
            f"- optimiser steps: {steps_full:,} -> {steps_scaled:,} "
            f"(x{steps_scaled / steps_full:.3g})"
        )
        diffs = model_reductions(full, scaled)
        lines += [f"- {d}" for d in diffs] if diffs else ["- no setting differs"]
        lines.append("")
    if work.evaluation is not None:
        subset = {"cpu": work.evaluation.cpu, "smoke": work.evaluation.smoke}.get(profile, {})
        if subset:
            what = ", ".join(f"`{k}: {v}`" for k, v in subset.items())
            lines += [f"Evaluation subset of the split's slices: {what}.", ""]
        else:
            lines += ["Evaluation: every slice of the evaluated split(s).", ""]
    return lines


# ---------------------------------------------------------------------------------- tables
def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A table of text cells as Markdown lines (medsr.document's escaping), then a blank."""
    from medsr.document import Table, to_markdown

    return [*to_markdown([Table.of_text(header, rows)]).splitlines(), ""]


def study_scores(study_dir: Path | None) -> dict[tuple[str, str], list[int]]:
    """``(method, scale) -> scores`` of the reader study's ratings (empty without any)."""
    if study_dir is None or not study_dir.is_dir():
        return {}
    from medsr.study.design import SCALES
    from medsr.study.store import Study

    scores: dict[tuple[str, str], list[int]] = {}
    with Study.open(study_dir) as study:
        for record in study.rating_records():
            for scale in SCALES:
                scores.setdefault((record.method, scale), []).append(record.score(scale))
    return scores


def _paper_table(
    table: PaperTable,
    rows: Sequence[Mapping[str, Any]],
    study: str | None,
    scores: Mapping[tuple[str, str], list[int]],
) -> list[str]:
    header = ["Method (paper)", "our method"]
    for c in table.columns:
        header += [f"{c.label} paper", f"{c.label} ours"]
    lines = [f"**{table.caption}** — {table.reference}", ""]
    body: list[list[str]] = []
    for row in table.rows:
        cells = [row.label, row.ours or "—"]
        for c in table.columns:
            published = row.values.get(c.key)
            cells.append(published.text(display_digits(c.metric)) if published else "not reported")
            if table.reader_study:
                from medsr.eval.stats import describe

                given = scores.get((row.ours or "", c.metric), [])
                if given:
                    d = describe(given)
                    cells.append(f"{_fmt(d.mean, d.std, c.metric)} ({d.n} ratings)")
                else:
                    cells.append(study or "reader study not created")
                continue
            split = table.column_split(c)
            known = any(c.metric in r for r in rows)
            if not known:
                cells.append("not run")
                continue
            mean, std, n = our_value(rows, row.ours, c.metric, split)
            cells.append(_fmt(mean, std, c.metric) + (f" (n={n})" if n else ""))
        body.append(cells)
    return lines + _markdown_table(header, body)


def _tests_table(
    rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], reference: str | None
) -> list[str]:
    if reference is None or not rows:
        return ["No reference method: no paired tests.", ""]
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != reference]
    splits = list(dict.fromkeys(r["split"] for r in rows))
    header = ["split", "method", "metric", f"median difference vs {reference}", "Wilcoxon p"]
    body: list[list[str]] = []
    for split in splits:
        for method in methods:
            for metric in metrics:
                if not any(metric in r for r in rows):
                    continue
                median, p, n = _paired(rows, method, reference, metric, split)
                if n == 0:
                    continue
                body.append([split, method, metric, f"{median:+.4g}", format_p(p), str(n)])
    return _markdown_table([*header, "pairs"], body)


def _flags_block(flags: Sequence[Flag], paper: Paper) -> list[str]:
    lines = ["## Implausible or inconsistent published numbers", ""]
    if flags:
        lines += ["Checks computed from the published numbers (and, where marked, our data):", ""]
        lines += [f"- **FLAG** ({f.table}): {f.text}" for f in flags]
    else:
        lines.append("No check on the published numbers fired.")
    if paper.notes:
        lines += ["", "Found while transcribing the seed text:", ""]
        lines += [f"- {n.where}: {n.text}" for n in paper.notes]
    lines.append("")
    return lines


def _copy_figures(
    bench_dir: Path, report: Path, research_only: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Copy the figure PNGs, leaving out research-only datasets; returns (copied, withheld)."""
    from medsr.eval.benchmark import _slug

    source = bench_dir / "figures"
    target = report / "figures"
    copied, withheld = [], []
    if not source.is_dir():
        return copied, withheld
    blocked = tuple(_slug(d) for d in research_only)
    target.mkdir(parents=True, exist_ok=True)
    for png in sorted(source.glob("*.png")):
        if blocked and png.name.startswith(blocked):
            withheld.append(png.name)
            continue
        shutil.copyfile(png, target / png.name)
        copied.append(png.name)
    return copied, withheld


# ------------------------------------------------------------------------------------ write
def write_report(
    work: WorkSpec,
    options: Any,
    *,
    folder: Path,
    report: Path,
    stages: Mapping[str, Any],
    notes: Sequence[str],
    study_dir: Path | None,
    data_root: Path,
) -> Path:
    """Write ``report/report.md`` (and copy the per-image CSV and figures); returns its path."""
    from medsr.eval.results import read_results

    paper = load_paper(work.number)
    report.mkdir(parents=True, exist_ok=True)
    bench_dir = folder / "benchmark"
    results = bench_dir / "results.csv"
    rows = [derived(r) for r in read_results(results)] if results.is_file() else []
    if results.is_file():
        shutil.copyfile(results, report / "results.csv")
    if (bench_dir / "report.md").is_file():
        shutil.copyfile(bench_dir / "report.md", report / "benchmark.md")
    figures, withheld = _copy_figures(bench_dir, report, work.research_only)
    for extra in sorted(bench_dir.glob("*.png")):
        if not any(extra.name.startswith(d) for d in work.research_only):
            shutil.copyfile(extra, report / extra.name)
            figures.append(extra.name)

    default_split = next((t.split for t in paper.tables if t.split), None)
    gt_means = [r["gt_mean_unit"] for r in rows if math.isfinite(_float(r.get("gt_mean_unit")))]
    gt_median = None
    if gt_means:
        ordered = sorted(gt_means)
        gt_median = ordered[len(ordered) // 2]
    flags = paper_flags(paper) + data_flags(paper, gt_median)
    profile = options.profile
    lines = [
        f"# Reproduction of work {work.number}: {work.title}",
        "",
        f"Paper: {paper.title} (seed text `{paper.seed_file}`; published numbers transcribed "
        f"in `src/medsr/reproduce/papers/{work.number}.yaml`).",
        "",
        f"Command: `medsr reproduce {work.number} --profile {profile}` · "
        f"date {_dt.date.today().isoformat()} · {platform.machine()} "
        f"{platform.processor() or platform.system()}, {os.cpu_count()} CPUs · "
        f"working folder `{folder}`.",
        "",
    ]
    if profile != "full":
        lines += [
            f"**Profile `{profile}`: networks, steps and data are scaled down (see "
            "below); our numbers are not the paper's setting.**",
            "",
        ]
    lines += ["## Deviations from the paper (every profile)", ""]
    lines += [f"- {d}" for d in work.deviations] or ["- none"]
    lines += [f"- {n}" for n in notes]
    lines.append("")
    lines += ["## Tables: paper beside ours", ""]
    study_text = (
        f"to be scored by readers (`medsr serve --study {study_dir}`)" if study_dir else None
    )
    if not rows:
        lines += ["No results yet: the evaluation stage has not run.", ""]
    scores = study_scores(study_dir)
    for table in paper.tables:
        lines += _paper_table(table, rows, study_text, scores)
    lines += _flags_block(flags, paper)
    lines += ["## Which claims hold on our data", ""]
    if rows and paper.claims:
        verdicts = [claim_verdict(c, rows, default_split) for c in paper.claims]
        lines.append(
            "Generated from our per-image numbers (paired Wilcoxon signed-rank tests, "
            f"alpha {ALPHA}): " + " ".join(verdicts)
        )
    else:
        lines.append("Nothing to test yet (no results).")
    lines.append("")
    lines += ["## Paired tests", ""]
    metrics = list(
        dict.fromkeys(
            c.metric.rpartition(":")[2]
            for t in paper.tables
            if not t.reader_study
            for c in t.columns
        )
    )
    reference = "bicubic" if any(r["method"] == "bicubic" for r in rows) else None
    lines += _tests_table(rows, metrics, reference)
    lines += ["## Figures", ""]
    if figures:
        lines += [
            f"![{name}](figures/{name})"
            if (report / "figures" / name).is_file()
            else f"![{name}]({name})"
            for name in figures
        ]
    else:
        lines.append("No figures.")
    if withheld:
        lines += [
            "",
            f"{len(withheld)} figure(s) of research-only data ({', '.join(work.research_only)}) "
            f"stay in `{bench_dir / 'figures'}` and are not copied here.",
        ]
    lines.append("")
    pairs = folder / "series" / "pairs-summary.json"
    if pairs.is_file():
        import json

        lines += ["## Synthesised thick/thin DICOM series, paired by position (medsr pair)", ""]
        lines += _markdown_table(
            ["volume", "split", "thin slices", "5 mm slices", "pairs"],
            [
                [str(item[k]) for k in ("volume", "split", "thin_slices", "thick_slices", "pairs")]
                for item in json.loads(pairs.read_text(encoding="utf-8"))
            ],
        )
    extra = bench_dir / "thick-volumes.md"
    if extra.is_file():
        lines += [*extra.read_text(encoding="utf-8").splitlines(), ""]
    lines += _scaling_blocks(work, profile, data_root, [])
    lines += ["## Stages and wall time", ""]
    lines += _markdown_table(
        ["stage", "seconds"],
        [[name, str(info.get("seconds", ""))] for name, info in stages.items()],
    )
    lines += [
        "Per-image rows: `results.csv`; the full benchmark report (all metrics, p-values, "
        "figure captions): `benchmark.md`.",
        "",
    ]
    if study_dir is not None:
        lines += [
            "## Reader study",
            "",
            f"Created in `{study_dir}` (rating mode: image quality and diagnostic usefulness, "
            f"1-5); reader tokens in `{folder / 'study-tokens.txt'}`. Serve it with "
            f"`medsr serve --study {study_dir}` and summarise with `medsr study report "
            f"{study_dir}`.",
            "",
        ]
    path = report / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
