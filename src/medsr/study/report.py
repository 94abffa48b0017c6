"""Markdown and self-contained HTML reports of a reader study, with a MOS plot
(blocks of :mod:`medsr.document`, which renders and escapes them).

The HTML file needs nothing else (no CDN, no scripts): the plot is embedded as a base64
PNG. The Markdown file links the same plot, written beside it as ``mos.png``.
matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from medsr import __version__
from medsr.document import Block, Figure, Heading, Paragraph, Table, format_p, to_html, to_markdown
from medsr.study.analysis import (
    PairwiseAnalysis,
    RatingAnalysis,
    analyse_study,
)
from medsr.study.design import CHOICES, FLAGS, SCALES
from medsr.study.store import Study, utc_now

PLOT_NAME = "mos.png"
MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plot: Path


# ------------------------------------------------------------------- formatting


def fmt(value: float, digits: int = 2) -> str:
    """A number for a table; NaN (not computable) shows as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def fmt_ci(low: float, high: float, digits: int = 2) -> str:
    if math.isnan(low) or math.isnan(high):
        return "n/a"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


# ------------------------------------------------------------------------- content


def _header(study: Study, analysis: RatingAnalysis | PairwiseAnalysis) -> list[Block]:
    info = study.info
    progress = study.reader_progress()
    expected = sum(p.total for p in progress)
    mode = "rating (1-5 Likert)" if info.mode == "rating" else "pairwise preference"
    return [
        Heading(info.title, 1),
        Table.of_text(
            ("Study", ""),
            (
                ("Mode", mode),
                ("Cases", str(len(info.cases))),
                ("Methods", ", ".join(info.methods)),
                ("Readers", str(len(progress))),
                ("Answers", f"{analysis.n_answers} of {expected}"),
                ("Created", info.created_at),
                ("Seed", str(info.seed)),
                ("Report generated", f"{utc_now()} by medsr {__version__}"),
            ),
        ),
        Heading("Progress per reader", 3),
        Table.of_text(
            ("Reader", "Answered", "Total", "First answer", "Last answer"),
            tuple(
                (
                    p.label,
                    str(p.answered),
                    str(p.total),
                    p.first_answer_at or "-",
                    p.last_answer_at or "-",
                )
                for p in progress
            ),
        ),
    ]


def _rating_blocks(analysis: RatingAnalysis, png: bytes) -> list[Block]:
    level = f"{round(analysis.confidence * 100)}%"
    headers = ["Method"]
    for label in SCALES.values():
        headers += [f"{label} MOS", f"{level} CI (t, cases)"]
        if analysis.bootstrap:
            headers.append(f"{level} CI (bootstrap)")
    headers += ["Cases", "Ratings"]
    rows = []
    for method in _by_mos(analysis):
        row = [method]
        for scale in SCALES:
            mos = analysis.mos_for(method, scale)
            row += [fmt(mos.mos), fmt_ci(mos.ci_low, mos.ci_high)]
            if analysis.bootstrap:
                row.append(fmt_ci(mos.boot_low, mos.boot_high))
        quality = analysis.mos_for(method, "quality")
        row += [str(quality.n_cases), str(quality.n_ratings)]
        rows.append(tuple(row))
    blocks: list[Block] = [
        Heading("Mean opinion score per method"),
        Table.of_text(tuple(headers), tuple(rows)),
        Paragraph(
            "Scores: 1 = very poor (non-diagnostic) ... 5 = excellent. MOS = mean over cases "
            "of the per-case mean rating; the t interval is over the per-case means "
            "(cases random, readers fixed)"
            + (
                f"; the bootstrap interval resamples cases and readers "
                f"({analysis.bootstrap} resamples)."
                if analysis.bootstrap
                else "."
            )
        ),
        Figure(PLOT_NAME, "MOS per method with confidence intervals", png=png),
    ]
    for scale, label in SCALES.items():
        blocks.append(Heading(f"Per-reader mean: {label.lower()}", 3))
        rows = []
        for reader in analysis.readers:
            row = [reader]
            for method in analysis.methods:
                entry = analysis.reader_mos(reader, method, scale)
                row.append("-" if entry is None else f"{entry.mean:.2f} (n={entry.n})")
            rows.append(tuple(row))
        blocks.append(Table.of_text(("Reader", *analysis.methods), tuple(rows)))

    blocks.append(Heading("Inter-reader agreement"))
    rows = []
    for agr in analysis.agreement:
        icc, w_img, w_met = agr.icc, agr.w_images, agr.w_methods
        rows.append(
            (
                SCALES[agr.scale],
                f"{agr.n_complete_images} of {agr.n_images}",
                str(len(analysis.readers)),
                "n/a" if icc is None else fmt(icc.icc_single, 3),
                "n/a" if icc is None else fmt_ci(icc.single_low, icc.single_high, 3),
                "n/a" if icc is None else fmt(icc.icc_average, 3),
                "n/a" if icc is None else fmt_ci(icc.average_low, icc.average_high, 3),
                "n/a"
                if icc is None
                else f"F({icc.df1},{icc.df2}) = {fmt(icc.f_value)}, p {format_p(icc.p_value)}",
                "n/a"
                if w_img is None
                else f"{fmt(w_img.w, 3)} (chi2({w_img.df}) = {fmt(w_img.chi2)}, "
                f"p {format_p(w_img.p_value)})",
                "n/a"
                if w_met is None
                else f"{fmt(w_met.w, 3)} (chi2({w_met.df}) = {fmt(w_met.chi2)}, "
                f"p {format_p(w_met.p_value)})",
            )
        )
    blocks += [
        Table.of_text(
            (
                "Scale",
                "Images rated by all",
                "Readers",
                "ICC(2,1)",
                f"{level} CI",
                "ICC(2,k)",
                f"{level} CI",
                "F test (ICC = 0)",
                "Kendall's W, images",
                "Kendall's W, method ranking",
            ),
            tuple(rows),
        ),
        Paragraph(
            "ICC(2,1)/ICC(2,k): two-way random effects, absolute agreement, single reader / "
            "mean of the readers (Shrout & Fleiss 1979), over the images rated by every "
            "reader. Kendall's W (tie-corrected): concordance of the readers' rankings of the "
            "images, and of the methods by each reader's mean score. n/a: too few readers "
            "or complete images."
        ),
        Heading("Flags per method"),
        Table.of_text(
            ("Method", "Ratings", *FLAGS),
            tuple(
                (
                    method,
                    str(analysis.ratings_per_method.get(method, 0)),
                    *(
                        _count_share(
                            analysis.flag_counts[method].get(flag, 0),
                            analysis.ratings_per_method.get(method, 0),
                        )
                        for flag in FLAGS
                    ),
                )
                for method in analysis.methods
            ),
        ),
    ]
    if analysis.comments:
        blocks += [
            Heading("Comments"),
            Table.of_text(
                ("Reader", "Case", "Method", "Quality", "Usefulness", "Flags", "Comment"),
                tuple(
                    (
                        r.reader,
                        r.case,
                        r.method,
                        str(r.quality),
                        str(r.usefulness),
                        ", ".join(r.flags),
                        r.comment,
                    )
                    for r in analysis.comments
                ),
            ),
        ]
    return blocks


def _count_share(count: int, total: int) -> str:
    return f"{count} ({100 * count / total:.0f}%)" if total else str(count)


def _pairwise_blocks(analysis: PairwiseAnalysis, png: bytes) -> list[Block]:
    level = f"{round(analysis.confidence * 100)}%"
    bias = analysis.side_bias
    blocks: list[Block] = [
        Heading("Preference per method"),
        Table.of_text(
            ("Method", "Wins", "Losses", "No preference", "Win share", f"{level} CI (Wilson)"),
            tuple(
                (
                    m.method,
                    str(m.wins),
                    str(m.losses),
                    str(m.ties),
                    fmt(m.share),
                    fmt_ci(m.ci_low, m.ci_high),
                )
                for m in sorted(
                    analysis.per_method, key=lambda m: -m.share if not math.isnan(m.share) else 1
                )
            ),
        ),
        Figure(PLOT_NAME, "Win share per method with confidence intervals", png=png),
        Heading("Pairs"),
        Table.of_text(
            (
                "Method A",
                "Method B",
                "A preferred",
                "B preferred",
                "No preference",
                "Share A",
                f"{level} CI",
                "Sign test p",
                "Holm p",
            ),
            tuple(
                (
                    p.method_a,
                    p.method_b,
                    str(p.wins_a),
                    str(p.wins_b),
                    str(p.ties),
                    fmt(p.share_a),
                    fmt_ci(p.ci_low, p.ci_high),
                    format_p(p.p_value),
                    format_p(p.p_holm),
                )
                for p in analysis.pairs
            ),
        ),
        Paragraph(
            "Share A = share of the decided comparisons (no preference left out) won by A; "
            "exact two-sided sign test against 50%, Holm-corrected over the pairs. Answers of "
            "one reader are not independent, so treat p-values as descriptive when few "
            "readers took part."
        ),
        Heading("Per reader", 3),
        Table.of_text(
            ("Reader", "Method", "Wins", "Losses", "No preference"),
            tuple(
                (r.reader, r.method, str(r.wins), str(r.losses), str(r.ties))
                for r in analysis.per_reader
            ),
        ),
        Heading("Agreement and side bias"),
        Table.of_text(
            ("Statistic", "Value"),
            (
                (
                    "Kendall's W, method ranking (by each reader's win share)",
                    "n/a"
                    if analysis.w_methods is None
                    else f"{fmt(analysis.w_methods.w, 3)} (chi2({analysis.w_methods.df}) = "
                    f"{fmt(analysis.w_methods.chi2)}, p {format_p(analysis.w_methods.p_value)})",
                ),
                (
                    "Choices left / right / none",
                    f"{bias.left} / {bias.right} / {bias.none} "
                    f"(sign test left vs right p {format_p(bias.p_value)})",
                ),
            ),
        ),
    ]
    if analysis.comments:
        blocks += [
            Heading("Comments"),
            Table.of_text(
                ("Reader", "Case", "Left", "Right", "Choice", "Comment"),
                tuple(
                    (r.reader, r.case, r.left, r.right, CHOICES[r.choice], r.comment)
                    for r in analysis.comments
                ),
            ),
        ]
    return blocks


def _by_mos(analysis: RatingAnalysis) -> list[str]:
    def key(method: str) -> tuple[float, str]:
        mos = analysis.mos_for(method, "quality").mos
        return (-mos if not math.isnan(mos) else math.inf, method)

    return sorted(analysis.methods, key=key)


# ---------------------------------------------------------------------------- plots


def plot_png(analysis: RatingAnalysis | PairwiseAnalysis) -> bytes:
    """The report's figure as PNG bytes (MOS +- CI per method, or win shares)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    if isinstance(analysis, RatingAnalysis):
        methods = _by_mos(analysis)
        fig = Figure(figsize=(4.0 + 1.1 * len(SCALES) * max(len(methods), 2) / 2, 4.2), dpi=110)
        axes = fig.subplots(1, len(SCALES), sharey=True, squeeze=False)[0]
        for ax, (scale, label) in zip(axes, SCALES.items(), strict=True):
            xs = list(range(len(methods)))
            for r, reader in enumerate(analysis.readers):
                ys = [analysis.reader_mos(reader, m, scale) for m in methods]
                offset = (r - (len(analysis.readers) - 1) / 2) * 0.06
                ax.scatter(
                    [x + 0.25 + offset for x, y in zip(xs, ys, strict=True) if y is not None],
                    [y.mean for y in ys if y is not None],
                    s=12,
                    color="0.65",
                    zorder=2,
                    label="reader means" if r == 0 else None,
                )
            rows = [analysis.mos_for(m, scale) for m in methods]
            means = [row.mos for row in rows]
            low = [row.mos - row.ci_low if not math.isnan(row.ci_low) else 0 for row in rows]
            high = [row.ci_high - row.mos if not math.isnan(row.ci_high) else 0 for row in rows]
            ax.errorbar(
                xs,
                means,
                yerr=[low, high],
                fmt="o",
                color="C0",
                ecolor="C0",
                capsize=5,
                markersize=7,
                zorder=3,
                label=f"MOS, {round(analysis.confidence * 100)}% CI",
            )
            for x, row in zip(xs, rows, strict=True):
                if not math.isnan(row.mos):
                    ax.annotate(
                        f"{row.mos:.2f}",
                        (x, row.mos),
                        textcoords="offset points",
                        xytext=(-26, 4),
                        fontsize=8,
                    )
            ax.set_xticks(xs, methods, rotation=30 if len(methods) > 4 else 0)
            ax.set_xlim(-0.6, len(methods) - 0.4)
            ax.set_ylim(0.8, 5.2)
            ax.set_yticks([1, 2, 3, 4, 5])
            ax.grid(axis="y", alpha=0.4)
            ax.set_title(label)
        axes[0].set_ylabel("Score (1-5)")
        axes[0].legend(loc="lower left", fontsize=8)
    else:
        rows = sorted(analysis.per_method, key=lambda m: m.share if not math.isnan(m.share) else -1)
        fig = Figure(figsize=(6.0, 1.2 + 0.45 * max(len(rows), 2)), dpi=110)
        ax = fig.subplots()
        ys = list(range(len(rows)))
        shares = [0.0 if math.isnan(m.share) else m.share for m in rows]
        err_low = [0 if math.isnan(m.ci_low) else m.share - m.ci_low for m in rows]
        err_high = [0 if math.isnan(m.ci_high) else m.ci_high - m.share for m in rows]
        ax.barh(ys, shares, xerr=[err_low, err_high], color="C0", alpha=0.8, capsize=4)
        ax.axvline(0.5, color="0.4", linestyle="--", linewidth=1)
        ax.set_yticks(ys, [m.method for m in rows])
        ax.set_xlim(0, 1)
        ax.set_title("Pairwise preference")
        ax.set_xlabel(
            f"Share of decided comparisons won ({round(analysis.confidence * 100)}% Wilson CI)"
        )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- entry


def build_report(
    study: Study, *, confidence: float = 0.95, bootstrap: int = 0, seed: int = 0
) -> tuple[str, str, bytes]:
    """The report of ``study`` as (Markdown text, HTML text, PNG plot bytes)."""
    analysis = analyse_study(study, confidence=confidence, bootstrap=bootstrap, seed=seed)
    png = plot_png(analysis)
    blocks = _header(study, analysis)
    if isinstance(analysis, RatingAnalysis):
        blocks += _rating_blocks(analysis, png)
    else:
        blocks += _pairwise_blocks(analysis, png)
    return to_markdown(blocks), to_html(blocks, title=study.title), png


def write_report(
    study: Study,
    out_dir: str | Path | None = None,
    *,
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
) -> ReportFiles:
    """Write ``report.md``, ``report.html`` (self-contained) and ``mos.png`` to ``out_dir``
    (default: ``<study>/report``) and return their paths."""
    folder = Path(out_dir) if out_dir is not None else study.directory / "report"
    folder.mkdir(parents=True, exist_ok=True)
    markdown, html_text, png = build_report(
        study, confidence=confidence, bootstrap=bootstrap, seed=seed
    )
    files = ReportFiles(folder / MARKDOWN_NAME, folder / HTML_NAME, folder / PLOT_NAME)
    files.plot.write_bytes(png)
    files.markdown.write_text(markdown, encoding="utf-8")
    files.html.write_text(html_text, encoding="utf-8")
    return files
