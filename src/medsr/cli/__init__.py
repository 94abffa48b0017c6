"""The ``medsr`` command line.

Each command lives in its own module of this package with two functions:
``add_parser(subparsers)`` (declares its arguments) and ``run(args) -> int``. ``COMMANDS``
lists them explicitly; nothing is discovered by scanning.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from medsr import __version__
from medsr.cli import (
    benchmark,
    convert,
    deidentify,
    demo,
    evaluate,
    export,
    info,
    models,
    pair,
    prepare,
    reproduce,
    serve,
    study,
    train,
    upscale,
)
from medsr.errors import MedsrError

COMMANDS: dict[str, ModuleType] = {
    "info": info,
    "convert": convert,
    "deidentify": deidentify,
    "models": models,
    "study": study,
    "prepare": prepare,
    "pair": pair,
    "train": train,
    "upscale": upscale,
    "export": export,
    "demo": demo,
    "serve": serve,
    "evaluate": evaluate,
    "benchmark": benchmark,
    "reproduce": reproduce,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsr",
        description="Medical image super-resolution: read, degrade, train, evaluate, upscale.",
    )
    parser.add_argument("--version", action="version", version=f"medsr {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def configure_logging(verbose: int) -> None:
    """medsr's own messages by verbosity. Third-party loggers and Python warnings stay silent:
    pydicom's debug log and warnings quote element values (patient names among them), and
    medsr turns every problem that matters into its own error or warning."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    logging.captureWarnings(True)
    for name in ("pydicom", "py.warnings", "PIL", "h5py", "nibabel"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(COMMANDS[args.command].run(args) or 0)
    except MedsrError as error:
        print(f"medsr {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medsr: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: say so plainly, traceback only on request
        if args.debug:
            raise
        print(
            f"medsr {args.command}: unexpected {type(error).__name__}: {error}\n"
            "This is a bug in medsr; run again with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
