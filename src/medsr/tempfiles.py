"""Temporary files that become outputs: normal permissions, and no leftovers after a crash.

Every file medsr writes atomically is first written to a temporary file in the target's
folder and then renamed over the target. :func:`tempfile.mkstemp` creates that file with
mode 0600 whatever the umask, so a plain rename would leave outputs that colleagues on a
shared server cannot read. :func:`create_temp` gives the temporary file the mode an ordinary
``open(path, "w")`` would (``0o666 & ~umask``) and turns the ``OSError`` of a folder that
cannot be written into a :class:`~medsr.errors.WriteError` naming the target and the cause.

A process killed between creating and renaming leaves its temporary file behind;
:func:`remove_stale` removes those of one target (call it before writing that target again).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from medsr.errors import WriteError

__all__ = ["create_temp", "file_mode", "folder_mode", "remove_stale", "temp_pattern"]


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it is process-wide)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a newly created ordinary file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The mode of a newly created folder: ``0o777 & ~umask``."""
    return 0o777 & ~_umask()


def create_temp(target: Path, *, suffix: str = ".tmp", prefix: str | None = None) -> Path:
    """Create an empty temporary file beside ``target`` (same folder, so the final rename is
    atomic) with the mode of an ordinary new file; returns its path.

    The name is ``.<target name>.<random><suffix>`` unless ``prefix`` is given. Raises
    :class:`WriteError` naming ``target`` and the cause when the folder cannot be written.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=prefix if prefix is not None else f".{target.name}.",
            suffix=suffix,
            dir=target.parent,
        )
    except OSError as error:
        raise WriteError(target, f"cannot write in {target.parent}: {_cause(error)}") from None
    try:
        os.fchmod(fd, file_mode())
    except (OSError, AttributeError):  # Windows has no fchmod; mkstemp's mode then stays
        pass
    finally:
        os.close(fd)
    return Path(name)


def _cause(error: OSError) -> str:
    return error.strerror or type(error).__name__


def temp_pattern(target: Path, suffix: str = ".tmp") -> re.Pattern[str]:
    """The names :func:`create_temp` gives temporary files of ``target`` (default prefix)."""
    return re.compile(re.escape(f".{Path(target).name}.") + r"[A-Za-z0-9_]+" + re.escape(suffix))


def remove_stale(target: Path, suffix: str = ".tmp") -> list[Path]:
    """Remove the temporary files of ``target`` that a killed write left behind; returns them.

    Only files named like :func:`create_temp` names them for this very target are touched.
    Call it where only one process writes ``target`` (a checkpoint, a training state).
    """
    target = Path(target)
    pattern = temp_pattern(target, suffix)
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            if pattern.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed
