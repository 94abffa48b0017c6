"""Where ``medsr upscale`` may write: never over an input, and ``--overwrite`` (or a resumed
batch run) replaces only what medsr itself wrote before.

The rules (docs/inference.md, "Outputs and --overwrite"):

- **Inputs are never touched.** An output that is an input, holds an input, or lies inside
  an input (a series folder or a folder tree given as INPUT) is refused before anything is
  read or written, with or without ``--overwrite``: :func:`refuse_overlaps`.
- **One output per input.** Two inputs whose outputs would have the same path are refused
  before anything is written: :func:`refuse_collisions`.
- **Only earlier outputs are replaced.** medsr lists every output it writes, before writing
  it, in ``OUT/.medsr-outputs`` (:class:`OutputLedger`, one path a line, relative to OUT). An
  existing file or folder at an output's place is replaced only when that list (or, in batch
  mode, an earlier manifest) names it; anything else is refused even with ``--overwrite``.
- **A folder that cannot be written** is named with the cause before the model runs:
  :func:`check_writable`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from medsr.errors import ConfigError, WriteError
from medsr.io.write import SUFFIXES

__all__ = [
    "LEDGER_NAME",
    "OutputLedger",
    "candidate_outputs",
    "check_writable",
    "refuse_collisions",
    "refuse_overlaps",
]

LEDGER_NAME = ".medsr-outputs"
"""The list of the outputs medsr wrote into an output folder (hidden, in OUT itself)."""


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def candidate_outputs(base: Path, fmt: str | None) -> list[Path]:
    """The paths an output at ``base`` (OUT/stem, no suffix) may get: DICOM gives a series
    folder or a ``.dcm`` file, other formats their suffix; an unknown format, any of them."""
    if fmt == "dicom":
        return [base, base.with_name(base.name + SUFFIXES["dicom"])]
    if fmt in SUFFIXES:
        return [base.with_name(base.name + SUFFIXES[fmt])]
    return [base, *(base.with_name(base.name + s) for s in dict.fromkeys(SUFFIXES.values()))]


def refuse_overlaps(planned: Iterable[tuple[str, Sequence[Path]]], inputs: Iterable[Path]) -> None:
    """Raise :class:`ConfigError` if a planned output is, holds or lies inside an input.

    ``planned``: ``(input label, candidate output paths)`` per input; ``inputs``: every
    input path (files, series folders and the folder trees given). Symbolic links are
    resolved, so a link to an input counts as the input. Linear in the number of paths.
    """
    sources = {_real(p): p for p in inputs}
    holders: dict[Path, Path] = {}  # every folder above an input -> that input
    for real, given in sources.items():
        for parent in real.parents:
            holders.setdefault(parent, given)
    for label, paths in planned:
        for path in paths:
            real = _real(path)
            if real in sources:
                problem = f"is the input {sources[real]}"
            elif real in holders:
                problem = f"holds the input {holders[real]}"
            else:
                inside = next((sources[p] for p in real.parents if p in sources), None)
                if inside is None:
                    continue
                problem = f"lies inside the input {inside}"
            raise ConfigError(
                f"the output of {label} would be {path}, which {problem}: medsr never writes "
                "over or into its inputs (with or without --overwrite); choose an output "
                "folder outside the inputs"
            )


def refuse_collisions(planned: Iterable[tuple[str, Sequence[Path]]]) -> None:
    """Raise :class:`ConfigError` if two inputs' candidate outputs share a path (compared
    case-insensitively too, for file systems that ignore case)."""
    owner: dict[str, str] = {}
    clashes: list[str] = []
    for label, paths in planned:
        for path in dict.fromkeys(os.path.normcase(os.path.abspath(p)).casefold() for p in paths):
            other = owner.setdefault(path, label)
            if other != label:
                clashes.append(f"{other} and {label} (both {path})")
    if clashes:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise ConfigError(
            "inputs would write the same output: "
            + "; ".join(clashes[:3])
            + more
            + ". Rename one of them or upscale them into different output folders"
        )


def check_writable(folder: Path) -> None:
    """Raise :class:`WriteError` naming ``folder`` and the cause unless files can be created
    in it (or in the nearest existing folder above it, where it would be created): a probe
    file is created and removed, so read-only mounts, permissions and ACLs all count."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link
            raise WriteError(existing, "is a broken symbolic link; choose an output folder")
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(
            folder, f"cannot be created: {existing} is a file, not a folder; choose another OUT"
        )
    from medsr.tempfiles import create_temp

    try:
        probe = create_temp(existing / "x", prefix=".medsr-probe-", suffix="")
    except WriteError as error:
        cause = error.problem.rsplit(": ", 1)[-1]
        where = "" if existing == folder else f" (it would be created in {existing})"
        raise WriteError(
            folder, f"cannot write here{where}: {cause}; choose a writable output folder"
        ) from None
    probe.unlink(missing_ok=True)


class OutputLedger:
    """``OUT/.medsr-outputs``: the outputs medsr wrote under OUT (paths relative to OUT, one
    JSON string a line). Appended, one ``write`` per line, *before* each output is written,
    so an output a killed run left is listed too. A line lost or cut short only makes medsr
    refuse to replace that output: never the other way round."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LEDGER_NAME
        self._names: set[str] | None = None

    def _key(self, path: Path) -> str:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(self.root))).as_posix()

    def names(self) -> set[str]:
        """The listed outputs (read once)."""
        if self._names is None:
            self._names = set()
            with contextlib.suppress(OSError, UnicodeDecodeError):
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    with contextlib.suppress(ValueError):
                        name = json.loads(line)
                        if isinstance(name, str):
                            self._names.add(name)
        return self._names

    def lists(self, path: Path) -> bool:
        """Whether ``path`` (a path under OUT, as the caller names it) is a listed output."""
        return self._key(path) in self.names()

    def record(self, path: Path) -> None:
        """List ``path`` (a path under OUT) as a medsr output."""
        key = self._key(path)
        if key in self.names():
            return
        from medsr.tempfiles import file_mode

        line = (json.dumps(key) + "\n").encode("utf-8")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, file_mode())
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as error:
            raise WriteError(self.path, f"cannot be written: {error.strerror}") from None
        self.names().add(key)


def refuse_replacing(target: Path, ledger: OutputLedger, *, overwrite: bool) -> None:
    """Raise :class:`WriteError` if ``target`` exists and may not be replaced: always
    without ``overwrite``; with it, unless ``ledger`` lists ``target`` as a medsr output."""
    if not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        return  # an empty folder holds nothing to lose
    if not overwrite:
        raise WriteError(target, "already exists (pass --overwrite to replace it)")
    if not ledger.lists(target):
        raise WriteError(target, not_an_output(ledger))


def not_an_output(ledger: OutputLedger) -> str:
    """Why an existing file that medsr did not write is refused, even with --overwrite."""
    return (
        f"exists and is not an earlier medsr output (not listed in {ledger.path}); "
        "--overwrite replaces only medsr's own outputs: move it away or choose another OUT"
    )
