"""``medsr benchmark CONFIG.yaml``: several methods, tables, figures, paired tests."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
The YAML config names the manifest, split(s), degradation, methods (interpolations, checkpoint
folders, ESRGAN weights), metrics, regions, tables in the style of the source works and figures;
unknown keys are rejected. Relative paths are taken from the current directory. See
docs/evaluation.md for the schema and benchmarks/eval/benchmark.yaml for an example.

Output (--out, else the config's output, else benchmark-results/): results.csv (one row per
method and image, resumable), report.md, report.html (self-contained), figures/*.png,
config.json. An interrupted run continues where it stopped; --fresh starts over;
--report-only rebuilds the report from results.csv.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="compare methods on a prepared dataset: tables, figures, paired tests",
        description="Run every method of a benchmark config on the same split and degradation "
        "and write per-image results, Markdown and HTML tables (mean ± std, best in bold, "
        "paired Wilcoxon p-values against the reference) and figure grids.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="benchmark configuration")
    p.add_argument("--out", metavar="DIR", help="output folder (overrides the config's output)")
    p.add_argument("--manifest", metavar="PATH", help="use this manifest instead of the config's")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from results.csv")
    p.add_argument("--no-figures", action="store_true", help="skip the figure grids")
    p.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="no_progress",
        action="store_true",
        help="no progress on stderr (by default a bar on a terminal, else a plain line every 10 s)",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from medsr.cli.evaluate import progress_bar
    from medsr.eval.benchmark import run_benchmark
    from medsr.eval.config import load_config

    config = load_config(args.config)
    if args.manifest:
        config = dataclasses.replace(config, manifest=Path(args.manifest))
    with progress_bar("benchmark", enabled=not args.no_progress and not args.report_only) as up:
        output = run_benchmark(
            config,
            out=args.out,
            resume=not args.fresh,
            evaluate=not args.report_only,
            figures=not args.no_figures,
            progress=up,
        )
    images = len({(r["split"], r["volume_id"], r["slice_index"]) for r in output.rows})
    print(f"{len(output.rows)} rows ({images} images) -> {output.results}")
    print(f"report: {output.markdown}, {output.html}")
    for path in output.figures:
        print(f"figure: {path}")
    return 0
