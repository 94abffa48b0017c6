"""``medsr upscale`` options of issue 20: ``--consistency`` and ``--save-maps``.

The logic lives in :mod:`medsr.infer.safety`; this module parses the options, writes the
maps of one output beside it and words the per-input summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr.errors import ConfigError

if TYPE_CHECKING:
    from medsr.infer.model_source import SRModel
    from medsr.infer.ood import OODWarning
    from medsr.infer.outputs import OutputLedger
    from medsr.infer.safety import ConsistencyOptions
    from medsr.infer.upscale import UpscaleResult
    from medsr.io.image import Image


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


def check_map_targets(target: Path, args: argparse.Namespace, ledger: OutputLedger | None) -> None:
    """Before the model runs: refuse map paths that exist and may not be replaced."""
    from medsr.errors import WriteError
    from medsr.infer.outputs import refuse_replacing
    from medsr.infer.safety import map_paths

    for path in map_paths(target).values():
        if ledger is not None:
            refuse_replacing(path, ledger, overwrite=args.overwrite)
        elif path.exists() and not args.overwrite:
            raise WriteError(path, "already exists (pass --overwrite to replace it)")


def save_maps(
    result: UpscaleResult,
    image: Image,
    output: Image,
    target: Path,
    fmt: str,
    args: argparse.Namespace,
    *,
    ledger: OutputLedger | None,
    state: Any,
    warnings: list[OODWarning] | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """Compute and write the maps of one output (``output``: the image as written to
    ``target``); returns the summary and the paths written."""
    from medsr.infer.ood import flag_text
    from medsr.infer.safety import consistency_map, map_paths, write_maps

    maps = consistency_map(result, image, output=output)
    if warnings:
        maps.summary["out_of_distribution"] = [w.text for w in warnings]
    paths = map_paths(target)
    check_map_targets(target, args, ledger)
    if ledger is not None:
        for path in paths.values():
            ledger.record(path)
    written = write_maps(
        maps,
        output,
        paths,
        fmt,
        overwrite=args.overwrite,
        deidentify=state,
        flag=flag_text(warnings or []),
    )
    return maps.summary, written


def out_of_distribution(
    image: Image, model: SRModel, result: UpscaleResult, written: list[Path], fmt: str
) -> list[OODWarning]:
    """Check ``image`` against the model's training data (:mod:`medsr.infer.ood`), log the
    warnings and flag the written DICOM files."""
    import logging

    from medsr.infer.ood import check_input, flag_dicom

    warnings = check_input(image, model, result.normaliser)
    for w in warnings:
        logging.getLogger("medsr.infer.ood").warning("out of distribution: %s", w.text)
    if fmt == "dicom":
        flag_dicom([p for p in written if p.is_file()], warnings)
    return warnings


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
