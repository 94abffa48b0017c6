"""``medsr reproduce N``: rerun source work N (1-5) and report it beside its published tables."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
works: 1 MedSRGAN on lumbar spine MRI, 2 chest X-ray CNN versus GAN, 3 Real-ESRGAN on BraTS,
  4 SRGAN and ESPCN with tumour/normal-region SSIM, 5 thick/thin 2.5D SRResNet then SRGAN.

profiles: cpu (default; about 30 CPU-minutes per model on 2 cores: narrower, shallower
  networks, fewer steps, smaller patches, same architecture family, losses, degradation and
  evaluation), full (the recipes of configs/ unchanged: a GPU's worth), smoke (tiny models,
  2 steps per stage, a handful of slices: checks the pipeline in seconds to minutes).

Run from the repository root (recipes and degradations are read from configs/). Stages:
data preparation, training of every model, evaluation, reader-study folder (works 1 and 2),
report. Each stage is skipped when its outputs are complete; --resume continues a working
folder (an interrupted training resumes from its saved state). See docs/reproductions.md.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="rerun a source work (1-5) end to end and report it beside the paper's table",
        description="Prepare the data, train every model the work compares, evaluate them "
        "and write a report with the paper's published numbers beside ours.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("work", type=int, metavar="N", help="the source work, 1-5")
    p.add_argument("--profile", choices=("cpu", "full", "smoke"), default="cpu", help="default cpu")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="report folder (default benchmarks/reproductions/N; smoke: WORK/report)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="working folder for data, checkpoints and results (default runs/reproduce/N-PROFILE)",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=Path("../shared/data"),
        metavar="DIR",
        help="the shared data root (default ../shared/data)",
    )
    p.add_argument("--resume", action="store_true", help="continue an existing working folder")
    p.add_argument("--no-study", action="store_true", help="do not create the reader study")


def run(args: argparse.Namespace) -> int:
    from medsr.reproduce import ReproduceOptions, reproduce

    options = ReproduceOptions(
        work=args.work,
        profile=args.profile,
        data=args.data,
        out=args.out,
        work_dir=args.work_dir,
        resume=args.resume,
        study=not args.no_study,
    )

    def log(message: str) -> None:
        print(f"[reproduce {args.work}] {message}", file=sys.stderr, flush=True)

    result = reproduce(options, log=log)
    print(f"report: {result.report / 'report.md'}")
    print(f"working folder: {result.work_dir}")
    return 0
