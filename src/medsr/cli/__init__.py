"""The ``medsr`` command line.

Each command lives in its own module of this package with two functions:
``add_parser(subparsers)`` (declares its arguments) and ``run(args) -> int``. ``COMMANDS``
lists them explicitly; nothing is discovered by scanning.

Building the parser imports every command module, so a module's top level stays light: no
torch, pydicom, rich or web stack (tests/cli/test_light.py checks it). Heavy imports happen
inside ``run`` (or the modules it calls), so ``medsr --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from medsr.errors import MedsrError

COMMANDS: dict[str, str] = {
    "info": "medsr.cli.info",
    "convert": "medsr.cli.convert",
    "deidentify": "medsr.cli.deidentify",
    "models": "medsr.cli.models",
    "study": "medsr.cli.study",
    "prepare": "medsr.cli.prepare",
    "pair": "medsr.cli.pair",
    "train": "medsr.cli.train",
    "upscale": "medsr.cli.upscale",
    "export": "medsr.cli.export",
    "demo": "medsr.cli.demo",
    "serve": "medsr.cli.serve",
    "listen": "medsr.cli.listen",
    "evaluate": "medsr.cli.evaluate",
    "benchmark": "medsr.cli.benchmark",
    "reproduce": "medsr.cli.reproduce",
}
"""Command name -> the module holding its ``add_parser`` and ``run``."""


def command_module(name: str) -> ModuleType:
    """The module of command ``name`` (imported on first use)."""
    return importlib.import_module(COMMANDS[name])


class _VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(
            option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version"
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from medsr import __version__

        print(f"medsr {__version__}")  # stdout, as argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsr",
        description="Medical image super-resolution: read, degrade, train, evaluate, upscale.",
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        command_module(name).add_parser(sub)
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
        return int(command_module(args.command).run(args) or 0)
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
