"""Training state: what ``--resume`` needs to continue bit for bit, saved atomically.

The state file (``OUT/state/last.pt``) is one ``torch.save`` mapping of tensors and plain
Python values, so it loads with ``torch.load(weights_only=True)`` (no pickled code runs):

``format``, ``format_version``, ``medsr_version``, ``config`` (the resolved config),
``stage_index``, ``stage_step``, ``global_step``, ``data`` (``epoch``, ``position``: batches
consumed in that epoch), ``generator``, ``discriminator``, ``ema`` (state dicts or None),
``g_optimizer``, ``d_optimizer``, ``g_schedule``, ``d_schedule``, ``scaler`` (None: bf16
autocast needs no loss scaling), ``rng`` (torch CPU and CUDA generators, NumPy's and
Python's global generators), ``nonfinite`` (``in_row``, ``total``), ``best`` (metric, value,
step, stage) and ``validation`` (the last validation's metrics).

Writes go to a temporary file in the same folder, are flushed and fsynced, then renamed over
the previous state (``os.replace`` is atomic on POSIX and Windows), and the folder is fsynced:
a crash at any moment leaves either the old or the new state, never a torn file.
"""

from __future__ import annotations

import io
import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsr import __version__
from medsr.errors import CheckpointError
from medsr.tempfiles import create_temp, remove_stale

__all__ = [
    "STATE_FORMAT",
    "STATE_VERSION",
    "atomic_write_bytes",
    "capture_rng",
    "load_state",
    "restore_rng",
    "save_state",
]

logger = logging.getLogger(__name__)

STATE_FORMAT = "medsr-train-state"
STATE_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename,
    fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)  # left by a write that was killed
    tmp = create_temp(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """Save a training state mapping atomically (adds ``format`` and versions)."""
    path = Path(path)
    payload = {
        "format": STATE_FORMAT,
        "format_version": STATE_VERSION,
        "medsr_version": __version__,
        **state,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    logger.info("saved training state (step %s) to %s", state.get("global_step"), path)
    return path


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a training state written by :func:`save_state` (weights-only unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no training state here (nothing to resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for torn or foreign files
        raise CheckpointError(path, f"cannot read the training state: {error}") from error
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(path, f"not a medsr training state (format != {STATE_FORMAT!r})")
    if state.get("format_version", 0) > STATE_VERSION:
        raise CheckpointError(
            path,
            f"format_version {state['format_version']} is newer than this medsr reads "
            f"({STATE_VERSION}); upgrade medsr",
        )
    return state


# ------------------------------------------------------------------------------------- RNG
def capture_rng() -> dict[str, Any]:
    """The global random generators' states, in a weights-only-loadable form."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": [version, list(internal), gauss],
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
