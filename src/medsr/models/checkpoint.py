"""Checkpoints: a folder with ``model.safetensors`` (the state dict) and ``config.json``
(which model it is, its hyper-parameters, and free metadata), plus loading of official
ESRGAN / Real-ESRGAN weights.

``config.json``::

    {"format": "medsr-checkpoint", "format_version": 1, "kind": "generator",
     "arch": "edsr", "hparams": {...}, "scale": 4, "in_channels": 1, "out_channels": 1,
     "num_parameters": 1370000, "medsr_version": "0.1.0", "metadata": {...}}

Loading rebuilds the model from ``arch`` and ``hparams`` alone: it never guesses.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from medsr import __version__
from medsr.errors import CheckpointError, ConfigError
from medsr.models.rrdbnet import RRDBNet
from medsr.models.zoo import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
)
from medsr.tempfiles import create_temp, file_mode, remove_stale

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "load",
    "load_official_esrgan",
    "load_state_dict_file",
    "read_config",
    "save",
]

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "medsr-checkpoint"
FORMAT_VERSION = 1


def _folder(path: str | Path) -> Path:
    """A checkpoint is addressed by its folder or by either of its two files."""
    path = Path(path)
    if path.name in (WEIGHTS_NAME, CONFIG_NAME) and not path.is_dir():
        return path.parent
    return path


def _arch_of(model: nn.Module) -> tuple[str, str]:
    for kind, table in (("generator", GENERATORS), ("discriminator", DISCRIMINATORS)):
        for name, cls in table.items():
            if type(model) is cls:
                return kind, name
    known = ", ".join([*GENERATORS, *DISCRIMINATORS])
    raise ConfigError(
        f"cannot save a {type(model).__name__}: only models of the medsr tables can be saved "
        f"as checkpoints ({known})"
    )


def _atomic_write(target: Path, write) -> None:
    """Write ``target`` through a temporary file and a rename. Temporaries that an earlier,
    killed write of ``target`` left (``.model.safetensors.*.tmp``) are removed first."""
    remove_stale(target)
    tmp = create_temp(target)
    try:
        write(Path(tmp))
        os.chmod(tmp, file_mode())  # safetensors creates its file 0600
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model: nn.Module, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a checkpoint folder ``path`` (created if needed; the two files in
    it are replaced atomically). Returns the folder.

    ``metadata`` is stored as given in ``config.json`` (it must be JSON-serialisable): put
    the normalisation, training data, metrics... there. Works for every model of
    ``GENERATORS`` and ``DISCRIMINATORS``.
    """
    kind, arch = _arch_of(model)
    hparams = model.hparams()  # type: ignore[operator]
    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "arch": arch,
        "hparams": hparams,
        "scale": getattr(model, "scale", None),
        "in_channels": model.in_channels,  # type: ignore[union-attr]
        "out_channels": getattr(model, "out_channels", None),
        "num_parameters": count_parameters(model),
        "medsr_version": __version__,
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(config, indent=2, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"checkpoint metadata is not JSON-serialisable: {error}") from error
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors refuses views and shared storage: store contiguous copies.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write(
        folder / WEIGHTS_NAME,
        lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "arch": arch}),
    )
    _atomic_write(folder / CONFIG_NAME, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    logger.info("saved %s %s to %s", kind, arch, folder)
    return folder


def read_config(path: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint (folder or one of its files), validated."""
    config_path = _folder(path) / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            config_path,
            f"no such file: a medsr checkpoint folder holds {WEIGHTS_NAME} and {CONFIG_NAME}",
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(config_path, f"not valid JSON: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(config_path, f"not a medsr checkpoint config (format != {FORMAT!r})")
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            config_path,
            f"format_version {config['format_version']} is newer than this medsr reads "
            f"({FORMAT_VERSION}); upgrade medsr",
        )
    for key in ("kind", "arch", "hparams"):
        if key not in config:
            raise CheckpointError(config_path, f"missing key {key!r}")
    if config["kind"] not in ("generator", "discriminator"):
        raise CheckpointError(config_path, f"unknown kind {config['kind']!r}")
    return config


def load(path: str | Path, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model of a checkpoint from its ``arch`` and ``hparams`` and load its
    weights (strictly: every tensor must match). Returned in eval mode on ``device``."""
    folder = _folder(path)
    config = read_config(folder)
    builder = build_generator if config["kind"] == "generator" else build_discriminator
    try:
        model = builder(config["arch"], config["hparams"])
    except ConfigError as error:
        raise CheckpointError(folder / CONFIG_NAME, str(error)) from error
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(weights, "no such file")
    state = _read_safetensors(weights)
    _load_strict(model, state, weights)
    return model.to(device).eval()


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(path, f"cannot read safetensors: {error}") from error


def _load_strict(model: nn.Module, state: dict[str, Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            source,
            f"does not match {type(model).__name__}: missing {_few(missing)}, "
            f"unexpected {_few(unexpected)}",
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                source,
                f"{key} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(expected[key].shape)}",
            )
    # Half-precision files (common for released weights) are cast to the model's dtype.
    model.load_state_dict(
        {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    )


def _few(keys: list[str], limit: int = 5) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ---------------------------------------------------------------- third-party weights


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.safetensors`` file or a ``.pth``/``.pt`` file.

    ``.pth`` files are read with ``torch.load(weights_only=True)`` only (no pickled code runs).
    A dict wrapping the weights under ``params_ema`` (preferred), ``params``, ``state_dict``
    or ``model`` is unwrapped, as BasicSR / Real-ESRGAN releases store them.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if path.suffix == ".safetensors":
        state: Any = _read_safetensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle errors come in many types
            raise CheckpointError(
                path, f"cannot read as a weights-only PyTorch file: {error}"
            ) from error
    if isinstance(state, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in state and isinstance(state[key], dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(path, "does not hold a state dict (name -> tensor)")
    return dict(state)


# The original ESRGAN repository's layout (RRDB_ESRGAN_x4.pth) -> the BasicSR layout.
_OLD_ESRGAN_KEYS = [
    (re.compile(r"^model\.0\.(weight|bias)$"), r"conv_first.\1"),
    (
        re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$"),
        r"body.\1.rdb\2.conv\3.\4",
    ),
    (re.compile(r"^model\.3\.(weight|bias)$"), r"conv_up1.\1"),
    (re.compile(r"^model\.6\.(weight|bias)$"), r"conv_up2.\1"),
    (re.compile(r"^model\.8\.(weight|bias)$"), r"conv_hr.\1"),
    (re.compile(r"^model\.10\.(weight|bias)$"), r"conv_last.\1"),
]


def _convert_old_esrgan(state: dict[str, Tensor]) -> dict[str, Tensor]:
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^model\.1\.sub\.(\d+)\.", k))}
    trunk = max(blocks)  # the last entry of model.1.sub is the trunk conv, not an RRDB
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        trunk_match = re.match(rf"^model\.1\.sub\.{trunk}\.(weight|bias)$", key)
        if trunk_match:
            out[f"conv_body.{trunk_match.group(1)}"] = value
            continue
        for pattern, replacement in _OLD_ESRGAN_KEYS:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            out[key] = value
    return out


def load_official_esrgan(
    path: str | Path, *, scale: int | None = None, device: str | torch.device = "cpu"
) -> RRDBNet:
    """Load official ESRGAN / Real-ESRGAN RRDBNet weights (``.pth`` or ``.safetensors``).

    Accepts the BasicSR layout (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
    ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``; wrapped in ``params_ema`` or
    ``params`` or not) and the original ESRGAN repository's layout (``model.0``,
    ``model.1.sub.N.RDBk.convj.0``...). The hyper-parameters are read from the tensor shapes:
    channels, features, growth, number of blocks, and the scale (x8 if ``conv_up3`` exists,
    else from the pixel-unshuffle factor of ``conv_first``: x4, x2 (Real-ESRGAN x2plus) or
    x1). Pass ``scale`` to check it. Weights are cast to float32; the model is in eval mode.
    """
    path = Path(path)
    state = load_state_dict_file(path)
    if any(k.startswith("model.1.sub.") for k in state):
        state = _convert_old_esrgan(state)
    required = ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight")
    for key in required:
        if key not in state:
            raise CheckpointError(path, f"not an ESRGAN/Real-ESRGAN RRDBNet: no {key!r}")
    first = state["conv_first.weight"]
    num_features, first_in = int(first.shape[0]), int(first.shape[1])
    out_channels = int(state["conv_last.weight"].shape[0])
    growth = int(state["body.0.rdb1.conv1.weight"].shape[0])
    num_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    ratio = first_in / out_channels
    if "conv_up3.weight" in state:
        found_scale, unshuffle = 8, 1
    elif ratio in (1, 4, 16):
        unshuffle = math.isqrt(int(ratio))
        found_scale = {1: 4, 2: 2, 4: 1}[unshuffle]
    else:
        raise CheckpointError(
            path,
            f"conv_first takes {first_in} channels and conv_last gives {out_channels}: not the "
            "x1/x2/x4 Real-ESRGAN layout; give in/out channels that match",
        )
    if scale is not None and scale != found_scale:
        raise CheckpointError(path, f"holds a x{found_scale} model, not x{scale}")
    model = RRDBNet(
        scale=found_scale,
        in_channels=first_in // unshuffle**2,
        out_channels=out_channels,
        num_features=num_features,
        num_blocks=num_blocks,
        growth=growth,
    )
    _load_strict(model, state, path)
    logger.info(
        "loaded official RRDBNet x%d (%d blocks, %d features) from %s",
        found_scale,
        num_blocks,
        num_features,
        path,
    )
    return model.to(device).eval()
