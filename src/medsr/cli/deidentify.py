"""``medsr deidentify IN OUT``: apply the DICOM Basic Confidentiality Profile to a file or tree.

Output never contains an attribute value: files are named by their path relative to IN,
errors by their type. See docs/privacy.md.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from medsr.errors import ConfigError, FileError

if TYPE_CHECKING:
    from medsr.io.deidentify import DeidentificationState, DeidentifyOptions

logger = logging.getLogger(__name__)

# The value of medsr.io.deidentify.KEY_ENV_VAR, repeated so that building the parser does not
# import pydicom (tests/cli/test_light.py checks that they agree).
KEY_ENV_VAR = "MEDSR_DEID_KEY"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "deidentify",
        help="de-identify DICOM files (PS3.15 Basic Application Level Confidentiality Profile)",
        description=(
            "Remove or replace patient identifiers in a DICOM file or a folder tree, following "
            "the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile. UIDs are "
            "replaced consistently across the run, so series and studies stay together. Pixel "
            "data is not changed: burned-in text is NOT removed (a warning names the files "
            "likely to have it). Non-DICOM files are skipped and listed."
        ),
    )
    parser.add_argument("input", type=Path, metavar="IN", help="a DICOM file or a folder")
    parser.add_argument(
        "output",
        type=Path,
        metavar="OUT",
        help="output file (for a file) or folder (for a folder; the tree is mirrored)",
    )
    parser.add_argument(
        "--key",
        default=None,
        help=(
            "secret key that makes the UID mapping the same in every run (default: the "
            f"{KEY_ENV_VAR} environment variable, else a random key per run). Prefer the "
            "environment variable: a command line is visible to other users"
        ),
    )
    parser.add_argument(
        "--shift-dates",
        type=int,
        default=None,
        metavar="DAYS",
        help=(
            "move dates by DAYS (non-zero, may be negative) instead of removing them; times "
            "are kept. Keep DAYS secret and use the same value for every file of a patient"
        ),
    )
    parser.add_argument(
        "--keep-private",
        action="store_true",
        help="keep private attributes (they often hold identifiers; off by default)",
    )
    parser.add_argument(
        "--keep-overlays",
        action="store_true",
        help="keep overlay (60xx) and curve (50xx) groups (removed by default)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from medsr.io.deidentify import DeidentificationState, DeidentifyOptions

    options = DeidentifyOptions(
        shift_days=args.shift_dates,
        keep_private=args.keep_private,
        keep_overlays=args.keep_overlays,
    )
    key = args.key if args.key is not None else os.environ.get(KEY_ENV_VAR) or None
    state = DeidentificationState(key=key)
    src: Path = args.input
    if not src.exists():
        raise ConfigError(f"input {src.name} does not exist")
    if src.is_dir():
        return _run_tree(src, args.output, state, options)
    return _run_file(src, args.output, state, options)


def _run_file(
    src: Path, dst: Path, state: DeidentificationState, options: DeidentifyOptions
) -> int:
    if dst.is_dir():
        dst = dst / src.name
    if dst.resolve() == src.resolve():
        raise ConfigError("the output file must not be the input file")
    from medsr.io.deidentify import deidentify_file

    try:
        report = deidentify_file(src, dst, state, options, label=src.name)
    except FileError as error:
        print(f"failed: {error}")
        print("summary: 0 files de-identified, 1 failed")
        return 1
    for warning in report.warnings:
        print(f"warning: {warning}")
    print(f"summary: 1 file de-identified (1 SOP instance), {len(report.warnings)} warnings")
    return 0


def _run_tree(
    src: Path, dst: Path, state: DeidentificationState, options: DeidentifyOptions
) -> int:
    def progress(index: int, total: int, rel: str) -> None:
        logger.info("[%d/%d] %s", index, total, rel)

    from medsr.io.deidentify import deidentify_tree

    summary = deidentify_tree(src, dst, state, options, progress=progress)
    for rel in summary.skipped:
        print(f"skipped (not DICOM or a DICOMDIR): {rel}")
    for rel in summary.failed:
        print(f"failed: {rel}")
    for warning in summary.warnings:
        print(f"warning: {warning}")
    print(
        f"summary: {len(summary.done)} files de-identified ({len(summary.done)} SOP instances, "
        f"{state.uid_count} distinct UIDs replaced), {len(summary.skipped)} skipped, "
        f"{len(summary.failed)} failed, {len(summary.warnings)} warnings"
    )
    return 0 if summary.ok else 1


def add_deidentify_arguments(parser: argparse.ArgumentParser) -> None:
    """``--deidentify`` (and ``--deid-key``) for commands that write DICOM (convert, upscale)."""
    parser.add_argument(
        "--deidentify",
        action="store_true",
        help="de-identify DICOM output with the PS3.15 Basic Confidentiality Profile "
        "(UIDs replaced consistently within the run; see `medsr deidentify`)",
    )
    parser.add_argument(
        "--deid-key",
        default=None,
        help=f"secret key for a reproducible UID mapping (default: ${KEY_ENV_VAR}, else random)",
    )


def deidentification_state(args: argparse.Namespace) -> DeidentificationState | None:
    """One state for the whole run when ``--deidentify`` was given, else None."""
    if not getattr(args, "deidentify", False):
        return None
    from medsr.io.deidentify import DeidentificationState

    key = args.deid_key if args.deid_key is not None else os.environ.get(KEY_ENV_VAR) or None
    return DeidentificationState(key=key)
