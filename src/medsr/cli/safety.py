"""``medsr upscale`` options of issue 20: ``--consistency`` and ``--save-maps``.

The logic lives in :mod:`medsr.infer.safety` (the maps are written beside each output by
:func:`medsr.infer.pipeline.run`); this module parses the options and words the per-input
summary.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from medsr.errors import ConfigError

if TYPE_CHECKING:
    from medsr.infer.ood import OODWarning
    from medsr.infer.safety import ConsistencyOptions
    from medsr.infer.upscale import UpscaleResult


def add_safety_arguments(p: argparse.ArgumentParser) -> None:
    # medsr.infer.safety imports torch; `medsr --help` must not, so the default is spelled here
    # and checked against DEFAULT_CONSISTENCY by the tests
    g = p.add_argument_group(
        "clinical safety",
        "see where the output does not explain its input, and make it explain it "
        "(docs/inference.md, 'Consistency maps' and 'Data-consistent output')",
    )
    g.add_argument(
        "--consistency",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="after the network, back-project the output so that degrading it again (the "
        "model's own noise-free degradation) gives the input back within "
        "--consistency-tolerance (default: off: it cost 0.5-1.5 dB when the input was not made "
        "by that degradation, see docs/inference.md)",
    )
    g.add_argument(
        "--consistency-tolerance",
        type=float,
        default=1e-4,
        metavar="RMS",
        help="stop back-projecting at this RMS residual, in units of the normaliser's window "
        "(default 1e-4, a consistency of 80 dB)",
    )
    g.add_argument(
        "--consistency-iterations",
        type=int,
        default=10,
        metavar="N",
        help="at most N back-projection updates (default 10)",
    )
    g.add_argument(
        "--save-maps",
        action="store_true",
        help="write beside each output, in its format and geometry, the consistency map "
        "|degrade(SR) - LR| and SR - bicubic in physical units (DICOM: derived series of "
        "their own), and NAME-consistency.json with the worst region",
    )


def consistency_options(args: argparse.Namespace) -> ConsistencyOptions | None:
    """The back-projection settings ``args`` ask for, or None (``--no-consistency``)."""
    if not getattr(args, "consistency", False):
        return None
    from medsr.infer.safety import ConsistencyOptions

    return ConsistencyOptions(
        tolerance=args.consistency_tolerance, max_iterations=args.consistency_iterations
    )


def refuse_in_batch(args: argparse.Namespace) -> None:
    """Batch mode writes one output per input atomically; the maps are not part of it."""
    if getattr(args, "save_maps", False):
        raise ConfigError(
            "--save-maps works on INPUT files and DICOM series folders, not in batch mode "
            "(a folder tree, --list or torchrun); run it on the inputs you want to inspect"
        )


def summary_notes(
    result: UpscaleResult,
    maps: dict[str, Any] | None,
    warnings: list[OODWarning] | None = None,
) -> list[str]:
    """Lines printed under an input's summary line: the out-of-distribution flag and its
    reasons first, then what back-projection did and the consistency summary."""
    from medsr.infer.ood import flag_text
    from medsr.infer.safety import describe_summary

    notes = []
    if warnings:
        notes.append(f"{flag_text(warnings)} (outside the model's training data)")
        notes.extend(f"warning: {w.text}" for w in warnings)
    if result.projection is not None:
        p = result.projection
        notes.append(
            f"consistency: back-projected in {p.iterations} iteration(s), RMS residual "
            f"{p.rms_before:.2g} -> {p.rms_after:.2g} of the window"
            + ("" if p.converged else " (tolerance not reached)")
        )
    if maps is not None:
        notes.append(describe_summary(maps))
    return notes
