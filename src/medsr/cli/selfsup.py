"""``medsr upscale VOLUME --self-supervised``: the self-supervised path of ``medsr upscale``.

Not a command of its own: :mod:`medsr.cli.upscale` declares these options with
:func:`add_self_supervised_arguments` and, when ``--self-supervised`` is given, runs the
inputs through :mod:`medsr.infer.pipeline` like any other, with :func:`self_supervised_method`
in place of a model, this module's :func:`reporter` for the progress and
:func:`summary_line` for each volume done. The method is :mod:`medsr.infer.selfsup`.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from medsr.errors import ConfigError

if TYPE_CHECKING:
    from medsr.cli.progress import Progress
    from medsr.infer.pipeline import Job, Outcome, SelfSupervised
    from medsr.infer.selfsup import SelfSupConfig, SelfSupProgress

logger = logging.getLogger(__name__)


def add_self_supervised_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--self-supervised`` option group of ``medsr upscale``."""
    g = p.add_argument_group(
        "self-supervised through-plane SR (SMORE/ECLARE-like; no trained model needed)"
    )
    g.add_argument(
        "--self-supervised",
        action="store_true",
        help="learn from the volume's own in-plane slices and super-resolve its slice axis "
        "(use with --axis through-plane or 0/1/2; --model and --scale are not used)",
    )
    g.add_argument(
        "--target-spacing",
        type=float,
        default=None,
        metavar="MM",
        help="output spacing along the slice axis (default: the in-plane spacing)",
    )
    g.add_argument(
        "--slice-thickness",
        type=float,
        default=None,
        metavar="MM",
        help="slice thickness (FWHM of the slice profile); default: the DICOM SliceThickness, "
        "else the slice spacing",
    )
    g.add_argument(
        "--slice-gap",
        type=float,
        default=None,
        metavar="MM",
        help="gap between slices (spacing - thickness; negative for overlapping slices)",
    )
    g.add_argument(
        "--slice-profile",
        choices=("gaussian", "rect"),
        default="gaussian",
        help="shape of the slice profile (default gaussian)",
    )
    g.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="MINUTES",
        help="training time per volume: training stops after this long, or earlier when the "
        "PSNR on held-out in-plane patches stops improving (default 4; with --steps: none)",
    )
    g.add_argument(
        "--patience",
        type=int,
        default=None,
        metavar="CHECKS",
        help="early stopping: held-out checks (one per 100 steps) without a 0.01 dB gain before "
        "training anneals and stops (default 6; 0: off; with --steps: off)",
    )
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train exactly this many steps instead (reproducible with --seed on the same "
        "machine and --threads; no budget or early stopping unless given)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _config(args: argparse.Namespace) -> SelfSupConfig:
    from medsr.infer.selfsup import SelfSupConfig

    budget = args.budget
    if budget is not None and not (math.isfinite(budget) and budget > 0):
        raise ConfigError(f"--budget must be a positive number of minutes, got {budget:g}")
    return SelfSupConfig(
        steps=args.steps,
        budget=None if budget is None else 60.0 * budget,
        patience=args.patience,
        seed=args.seed,
    )


def _clock_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Reporter:
    """Shows a volume's training and application progress: in the progress bar's task
    description on a terminal, else as plain lines on ``stream`` at most every ``interval``
    seconds (and when the stage changes or training starts to end), for logs."""

    def __init__(
        self,
        label: str,
        update: Callable[..., None],
        *,
        plain: bool,
        stream: TextIO,
        interval: float = 30.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.label = label
        self.update = update
        self.plain = plain
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.last_line = -math.inf
        self.last_key: tuple[str, str | None] | None = None

    def text(self, status: SelfSupProgress) -> str:
        if status.stage == "apply":
            return (
                f"{self.label}: applying, plane {status.done}/{status.total}, "
                f"{_clock_text(status.seconds_left)} left"
            )
        held = (
            "held-out PSNR n/a"
            if status.heldout_psnr is None
            else f"held-out PSNR {status.heldout_psnr:.2f} dB"
            + (f" (best {status.best_psnr:.2f})" if status.best_psnr is not None else "")
        )
        steps = f"step {status.done}" + (f"/{status.total}" if status.total else "")
        ending = f", ending: {status.ending}" if status.ending else ""
        return (
            f"{self.label}: training {steps}, {held}, "
            f"{_clock_text(status.seconds_left)} left{ending}"
        )

    def __call__(self, status: SelfSupProgress) -> None:
        if self.plain:
            key = (status.stage, status.ending)
            now = self.clock()
            first = status.stage == "apply" and status.done == 1
            if key != self.last_key or first or now - self.last_line >= self.interval:
                print(self.text(status), file=self.stream, flush=True)
                self.last_line, self.last_key = now, key
            return
        self.update(
            description=self.text(status),
            completed=status.done,
            total=status.total,
        )


def self_supervised_method(args: argparse.Namespace) -> SelfSupervised:
    """The method ``medsr upscale --self-supervised`` runs in place of a model (it then runs
    the inputs like any other upscale: :func:`medsr.infer.pipeline.run`)."""
    from medsr.infer.pipeline import SelfSupervised

    if args.axis == "in-plane":
        raise ConfigError(
            "--self-supervised super-resolves a slice axis: pass --axis through-plane (or 0/1/2)"
        )
    if args.device == "cuda" and args.precision != "fp32":
        logger.warning("--precision is not used by --self-supervised (it trains in fp32)")
    return SelfSupervised(
        target_spacing=args.target_spacing,
        slice_thickness=args.slice_thickness,
        slice_gap=args.slice_gap,
        slice_profile=args.slice_profile,
        config=_config(args),
    )


def reporter(job: Job, progress: Progress, task: Any, *, quiet: bool) -> _Reporter:
    """The progress callback of one volume: its training and application in the bar's task
    ``task`` on a terminal, plain lines on stderr in logs, nothing with ``--quiet``."""
    return _Reporter(
        job.path.name,
        functools.partial(progress.update, task),
        plain=not progress.live and not quiet,
        stream=sys.stderr,
    )


def summary_line(outcome: Outcome) -> str:
    """The line printed for a volume done."""
    image, result = outcome.image, outcome.result
    assert image is not None and result is not None and hasattr(result, "acquisition")
    fidelity = result.fidelity_psnr
    return (
        f"ok {outcome.job.label} -> {outcome.output}: "
        f"{'x'.join(map(str, image.array.shape))} -> "
        f"{'x'.join(map(str, result.image.array.shape))}, spacing "
        f"{'x'.join(f'{s:.3g}' for s in image.spacing)} -> "
        f"{'x'.join(f'{s:.3g}' for s in result.image.spacing)} mm, self-supervised "
        f"along axis {result.axis} ({result.acquisition.describe()}), "
        f"{result.steps} steps on {result.device} ({result.stop_reason}), "
        f"{outcome.seconds:.1f} s, "
        + ("" if result.heldout_psnr is None else f"held-out PSNR {result.heldout_psnr:.2f} dB, ")
        + f"fidelity {'inf' if math.isinf(fidelity) else f'{fidelity:.1f}'} dB"
        + (f"; {outcome.clipped} pixel(s) clipped to the source's range" if outcome.clipped else "")
    )
