"""``medsr upscale VOLUME --self-supervised``: the self-supervised path of ``medsr upscale``.

Not a command of its own: :mod:`medsr.cli.upscale` declares these options with
:func:`add_self_supervised_arguments` and hands over to :func:`run_self_supervised` when
``--self-supervised`` is given. The method is :mod:`medsr.infer.selfsup`.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

from medsr.errors import ConfigError, FileError, MedsrError
from medsr.io import read, write

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
        "--steps",
        type=int,
        default=None,
        help="training steps (default 500; more is slower and usually slightly better)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def _config(args: argparse.Namespace):
    from medsr.infer.selfsup import SelfSupConfig

    defaults = SelfSupConfig()
    return SelfSupConfig(
        steps=args.steps if args.steps is not None else defaults.steps, seed=args.seed
    )


def run_self_supervised(args: argparse.Namespace) -> int:
    """Run ``medsr upscale --self-supervised`` over the inputs; 1 if any failed."""

    from medsr.cli.deidentify import deidentification_state
    from medsr.cli.progress import Progress
    from medsr.cli.upscale import check_outputs, discover, output_root, output_target
    from medsr.infer.outputs import OutputLedger
    from medsr.infer.selfsup import self_supervised_upscale
    from medsr.infer.upscale import fit_to_output

    if args.axis == "in-plane":
        raise ConfigError(
            "--self-supervised super-resolves a slice axis: pass --axis through-plane (or 0/1/2)"
        )
    if args.device == "cuda" and args.precision != "fp32":
        logger.warning("--precision is not used by --self-supervised (it trains in fp32)")
    config = _config(args)
    jobs, skipped = discover(args.inputs)
    if not jobs:
        raise ConfigError(f"no image inputs found in {', '.join(args.inputs)}")
    out = Path(args.output)
    check_outputs(jobs, args, out, [Path(p) for p in args.inputs])
    ledger = OutputLedger(output_root(out, len(jobs) == 1))
    state = deidentification_state(args)
    for path in skipped:
        print(f"skipped {path} (not an image)")
    progress = Progress("medsr upscale --self-supervised", quiet=args.quiet)
    failed = 0
    with progress:
        overall = progress.add_task("inputs", total=len(jobs))
        for job in jobs:
            task = progress.add_task(f"{job.path.name}: train + apply", total=None)

            def report(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            start = time.perf_counter()
            try:
                image = read(job.path, series_uid=job.series_uid)
                fmt, target = output_target(job, image, args, out, len(jobs) == 1, None, ledger)
                result = self_supervised_upscale(
                    image,
                    axis=args.axis,
                    target_spacing=args.target_spacing,
                    slice_thickness=args.slice_thickness,
                    slice_gap=args.slice_gap,
                    slice_profile=args.slice_profile,
                    config=config,
                    device=args.device,
                    threads=args.threads,
                    progress=report,
                )
                output, clipped = fit_to_output(result.image, fmt)
                acq = result.acquisition
                ledger.record(target)  # before writing: a killed write leaves a listed output
                written = write(
                    output,
                    target,
                    format=fmt,
                    overwrite=args.overwrite,
                    description=f"self-supervised through-plane SR {acq.spacing:.3g} mm -> "
                    f"{result.image.spacing[result.axis]:.3g} mm",
                    deidentify=state,
                )
            except FileError as error:
                failed += 1
                msg = error.problem if error.path == job.path else str(error)
                print(f"FAILED {job.label}: {msg}", file=sys.stderr)
                continue
            except MedsrError as error:
                failed += 1
                print(f"FAILED {job.label}: {error}", file=sys.stderr)
                continue
            finally:
                progress.remove_task(task)
                progress.advance(overall)
            shown = target if len(written) != 1 else written[0]
            fidelity = result.fidelity_psnr
            print(
                f"ok {job.label} -> {shown}: "
                f"{'x'.join(map(str, image.array.shape))} -> "
                f"{'x'.join(map(str, result.image.array.shape))}, spacing "
                f"{'x'.join(f'{s:.3g}' for s in image.spacing)} -> "
                f"{'x'.join(f'{s:.3g}' for s in result.image.spacing)} mm, self-supervised "
                f"along axis {result.axis} ({acq.describe()}), "
                f"{config.steps} steps on {result.device}, {time.perf_counter() - start:.1f} s, "
                f"fidelity {'inf' if math.isinf(fidelity) else f'{fidelity:.1f}'} dB"
                + (f"; {clipped} pixel(s) clipped to the source's range" if clipped else "")
            )
    print(
        f"{len(jobs) - failed} of {len(jobs)} inputs upscaled"
        + (f", {failed} failed" if failed else "")
    )
    return 1 if failed else 0
