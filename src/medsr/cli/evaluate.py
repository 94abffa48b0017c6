"""``medsr evaluate --model SPEC --data MANIFEST --degradation CFG``: one row per image."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path

from medsr.errors import ConfigError

EPILOG = """\
model: an interpolation (bicubic, bilinear, lanczos, nearest), a medsr checkpoint folder, an
  .onnx file from `medsr export`, or official ESRGAN / Real-ESRGAN weights (.pth,
  .safetensors); resolved and run exactly as `medsr upscale` does.

degradation: a YAML file (configs/degradations/bicubic_x4.yaml) or NAME_xS (bicubic_x4).
  The LR input is made from each normalised HR slice; its noise is seeded per slice.

masks (--mask, repeatable, [NAME=]KIND[:ARGS]):
  file (or brain, mask)   the mask medsr prepare attached (the BraTS brain mask)
  threshold:LOW,HIGH      HR pixels in [LOW, HIGH], physical units (a bound may be empty)
  zscore:Z                inside the attached mask, more than Z standard deviations above
                          the volume's masked mean: a lesion proxy on FLAIR (not a segmentation)

units: metrics are computed in physical units (the normaliser's inverse) with data range =
  the width of the volume normaliser's window (columns data_low, data_high, data_range).

resume: rows already in --out are kept and skipped (an interrupted run continues); the
  settings are recorded in OUT.json and must match. --fresh starts over.
"""


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """Progress on stderr (a bar on a terminal, plain periodic lines otherwise, nothing when
    not ``enabled``); yields ``update(done, total)``."""
    from medsr.cli.progress import Progress

    with Progress("medsr", overall=False, quiet=not enabled) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ConfigError(f"expected a comma-separated list, got {text!r}")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate one method on a prepared dataset: one CSV row per image",
        description="Super-resolve every selected slice of a prepared manifest (medsr prepare) "
        "after degrading it, and write one row per image: identification, every metric in "
        "physical units, region metrics, consistency PSNR and runtime.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, metavar="NAME_OR_PATH", help="what to evaluate")
    p.add_argument("--name", help="label of the method in the CSV (default: the model's name)")
    p.add_argument("--data", required=True, metavar="MANIFEST", help="manifest or prepare folder")
    p.add_argument(
        "--split",
        action="append",
        choices=("train", "val", "test"),
        help="split to evaluate (repeatable; default test)",
    )
    p.add_argument("--degradation", required=True, metavar="CONFIG_OR_NAME", help="e.g. bicubic_x4")
    p.add_argument("--datasets", metavar="A,B", help="only these datasets of the manifest")
    p.add_argument(
        "--every", type=int, default=1, metavar="N", help="every N-th kept slice of each volume"
    )
    p.add_argument("--max-slices", type=int, metavar="N", help="at most N slices per volume")
    p.add_argument("--metrics", metavar="A,B", help="metrics (default: all but lpips)")
    p.add_argument(
        "--region-metrics",
        metavar="A,B",
        help="metrics inside/outside each mask (default psnr,ssim,mae)",
    )
    p.add_argument("--mask", action="append", metavar="SPEC", help="region (repeatable)")
    p.add_argument("--border", type=int, default=0, metavar="N", help="pixels cropped per side")
    p.add_argument(
        "--no-clamp", action="store_true", help="do not clamp SR to the normaliser's window"
    )
    p.add_argument("--seed", type=int, default=0, help="degradation noise seed (default 0)")
    p.add_argument("--out", default="results.csv", help="CSV file (default results.csv)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--tile", type=int, metavar="PX", help="tile size in LR pixels (default none)")
    p.add_argument("--overlap", type=int, metavar="PX", help="tile overlap in LR pixels")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads for the model")
    p.add_argument(
        "-q",
        "--quiet",
        "--no-progress",
        dest="no_progress",
        action="store_true",
        help="no progress on stderr (by default a bar on a terminal, else a plain line every 10 s)",
    )


def run(args: argparse.Namespace) -> int:
    from medsr.eval.config import resolve_degradation
    from medsr.eval.evaluate import DEFAULT_REGION_METRICS, EvalSettings, run_evaluation
    from medsr.eval.methods import load_method
    from medsr.eval.regions import parse_region
    from medsr.eval.report import main_columns
    from medsr.eval.stats import describe
    from medsr.eval.tables import column_label, format_number
    from medsr.metrics import DEFAULT_METRICS

    degradation = resolve_degradation(args.degradation)
    settings = EvalSettings(
        manifest=Path(args.data),
        degradation=degradation,
        splits=tuple(args.split or ("test",)),
        datasets=_names(args.datasets),
        every=args.every,
        max_slices_per_volume=args.max_slices,
        metrics=_names(args.metrics) or DEFAULT_METRICS,
        regions=tuple(parse_region(m) for m in args.mask or ()),
        region_metrics=_names(args.region_metrics) or DEFAULT_REGION_METRICS,
        border=args.border,
        clamp=not args.no_clamp,
        seed=args.seed,
    )
    method = load_method(
        args.model,
        scale=settings.scale,
        name=args.name,
        tile=args.tile,
        overlap=args.overlap,
        device=args.device,
        threads=args.threads,
    )
    with progress_bar(f"evaluating {method.name}", enabled=not args.no_progress) as update:
        rows = run_evaluation(
            [method], settings, out=args.out, resume=not args.fresh, progress=update
        )
    print(f"{method.name}: {len(rows)} images -> {args.out}")
    columns = [*main_columns(settings.metrics), "runtime_s"]
    width = max(len(column_label(c)) for c in columns)
    for dataset in sorted({r["dataset"] for r in rows}):
        subset = [r for r in rows if r["dataset"] == dataset]
        print(f"{dataset} ({len(subset)} images), mean ± std:")
        for column in columns:
            d = describe([r[column] for r in subset])
            text = "n/a" if d.n == 0 else format_number(d.mean, column)
            if not math.isnan(d.std):
                text += f" ± {format_number(d.std, column)}"
            print(f"  {column_label(column):<{width}}  {text}")
    return 0
