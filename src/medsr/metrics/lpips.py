"""LPIPS (Zhang et al. 2018), only from weights already on disk: nothing is ever downloaded.

LPIPS needs two weight files:

* the ImageNet backbone in torchvision's layout (keys ``features.N.weight``): AlexNet
  (``alexnet-owt-7be5be79.pth``) or VGG16 (``vgg16-397923af.pth``), looked for in the
  torch hub cache (``$TORCH_HOME/hub/checkpoints``) unless a path is given;
* the learned linear layers (keys ``linK.model.1.weight``), looked for in the ``lpips``
  package (``lpips/weights/v0.1/NET.pth``) and in torchmetrics
  (``functional/image/lpips_models/NET.pth``) unless a path is given.

:func:`lpips_available` says whether both were found and, if not, what is missing and
where it was looked for. Backbones fine-tuned on other data (such as the MRI VGG16 in
``shared/data/weights``) load too when passed explicitly, but the linear layers were
calibrated on the ImageNet backbone: the score is then no longer LPIPS as published.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from medsr.errors import ConfigError, FileError
from medsr.metrics.core import ArrayLike, DataRange, data_range_width, prepare

__all__ = ["LPIPS_MIN_SIZE", "LpipsAvailability", "lpips", "lpips_available"]

Net = Literal["alex", "vgg"]
_NETS = ("alex", "vgg")
LPIPS_MIN_SIZE = 32

_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
# index of the ReLU after which each of the 5 LPIPS feature maps is taken
_TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
# LPIPS' input normalisation of [-1, 1] RGB images
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


@dataclass(frozen=True)
class LpipsAvailability:
    """Whether LPIPS can run: ``available``, else ``reason`` says what is missing."""

    available: bool
    reason: str
    backbone: Path | None
    linear: Path | None

    def __bool__(self) -> bool:
        return self.available


def _check_net(net: str) -> None:
    if net not in _NETS:
        raise ConfigError(f"net must be one of {_NETS}, got {net!r}")


def _package_dir(name: str) -> Path | None:
    # find_spec on a top-level name locates the package without importing it
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _backbone_candidates(net: str) -> list[Path]:
    return [Path(torch.hub.get_dir()) / "checkpoints" / _BACKBONE_FILES[net]]


def _linear_candidates(net: str) -> list[Path]:
    found = []
    lpips_dir = _package_dir("lpips")
    if lpips_dir is not None:
        found.append(lpips_dir / "weights" / "v0.1" / f"{net}.pth")
    tm_dir = _package_dir("torchmetrics")
    if tm_dir is not None:
        found.append(tm_dir / "functional" / "image" / "lpips_models" / f"{net}.pth")
    return found


def _pick(given: str | Path | None, candidates: list[Path], what: str) -> tuple[Path | None, str]:
    if given is not None:
        path = Path(given)
        if path.is_file():
            return path, ""
        return None, f"{what} file {path} does not exist"
    for path in candidates:
        if path.is_file():
            return path, ""
    where = ", ".join(str(p) for p in candidates) or "(no lpips or torchmetrics package installed)"
    return None, f"no {what} file found (looked in {where}); pass its path explicitly"


def lpips_available(
    net: Net = "alex",
    *,
    backbone: str | Path | None = None,
    linear: str | Path | None = None,
) -> LpipsAvailability:
    """Whether LPIPS with ``net`` can run from local files, and why not if it cannot.

    Args:
        net: ``"alex"`` (the LPIPS default) or ``"vgg"``.
        backbone: path of the backbone weights (torchvision layout, ``.pth`` or
            ``.safetensors``); default: the torch hub cache.
        linear: path of the LPIPS linear-layer weights; default: the lpips or torchmetrics
            package.
    """
    _check_net(net)
    bb, why_bb = _pick(backbone, _backbone_candidates(net), f"{net} backbone")
    lin, why_lin = _pick(linear, _linear_candidates(net), f"LPIPS {net} linear-layer")
    reasons = [r for r in (why_bb, why_lin) if r]
    if reasons:
        return LpipsAvailability(False, "LPIPS unavailable: " + "; ".join(reasons), bb, lin)
    return LpipsAvailability(True, "", bb, lin)


def _features(net: str) -> nn.Sequential:
    """The convolutional trunk in torchvision's layer numbering, up to the last LPIPS tap."""
    layers: list[nn.Module] = []
    if net == "alex":
        layers = [
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
        ]
    else:
        in_ch = 3
        for width, repeats in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
            for _ in range(repeats):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU()]
                in_ch = width
            layers.append(nn.MaxPool2d(2, 2))
        layers = layers[:-1]  # the last pool comes after the last tap
    return nn.Sequential(*layers)


def _load_state(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is reported with its path
        raise FileError(path, f"cannot read weights: {exc}") from exc
    if not isinstance(state, dict):
        raise FileError(path, f"expected a state dict, got {type(state).__name__}")
    return state


class _Lpips(nn.Module):
    shift: Tensor
    scale: Tensor

    def __init__(self, net: str, backbone: Path, linear: Path) -> None:
        super().__init__()
        self.net = net
        self.features = _features(net)
        state = _load_state(backbone)
        wanted = {f"features.{k}" for k in self.features.state_dict()}
        trunk = {k.removeprefix("features."): v for k, v in state.items() if k in wanted}
        try:
            self.features.load_state_dict(trunk, strict=True)
        except RuntimeError as exc:
            raise FileError(backbone, f"not a torchvision {net} backbone: {exc}") from exc
        lin_state = _load_state(linear)
        weights = []
        for k, channels in enumerate(_CHANNELS[net]):
            w = lin_state.get(f"lin{k}.model.1.weight")
            if w is None or tuple(w.shape) != (1, channels, 1, 1):
                raise FileError(linear, f"missing or misshapen lin{k}.model.1.weight")
            weights.append(w.float())
        for k, w in enumerate(weights):
            self.register_buffer(f"lin{k}", w)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        taps = _TAPS[self.net]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx = self._taps((x - self.shift) / self.scale)
        fy = self._taps((y - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for k, (a, b) in enumerate(zip(fx, fy, strict=True)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = ((a - b) ** 2 * getattr(self, f"lin{k}")).sum(1)
            total = total + d.mean((-2, -1))
        return total


@functools.lru_cache(maxsize=4)
def _cached_model(net: str, backbone: Path, linear: Path, device: str, stamp: tuple) -> _Lpips:
    return _Lpips(net, backbone, linear).to(device)


def _model(net: str, backbone: Path, linear: Path, device: str) -> _Lpips:
    # the files' modification times are part of the key: a replaced file is reloaded
    stamp = (backbone.stat().st_mtime_ns, linear.stat().st_mtime_ns)
    return _cached_model(net, backbone, linear, device, stamp)


def lpips(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    net: Net = "alex",
    backbone: str | Path | None = None,
    linear: str | Path | None = None,
) -> Tensor:
    """LPIPS distance of ``sr`` to ``hr``; ``(B,)``, lower is better (0 for identical images).

    Args:
        sr: super-resolved image, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, with 1
            (grey, repeated to RGB) or 3 (RGB) channels, at least 32x32.
        hr: ground truth of the same shape.
        data_range: the value range mapped to LPIPS' ``[-1, 1]``: a ``(low, high)`` pair,
            or a number ``L`` meaning ``(0, L)``. Values outside it are not clipped.
        net: ``"alex"`` or ``"vgg"``.
        backbone, linear: weight files (see :func:`lpips_available` for the defaults).

    Raises :class:`~medsr.errors.FileError` naming the missing file when the weights are
    not on disk. The network runs in float32; no mask is supported (the feature maps are
    coarser than the pixels).
    """
    _check_net(net)
    status = lpips_available(net, backbone=backbone, linear=linear)
    if not status.available or status.backbone is None or status.linear is None:
        if status.backbone is None:
            path = Path(backbone) if backbone is not None else _backbone_candidates(net)[0]
        else:
            found = _linear_candidates(net)
            path = Path(linear) if linear is not None else (found or [Path(f"{net}.pth")])[0]
        raise FileError(path, status.reason)
    x, y, _ = prepare(sr, hr)
    if x.shape[1] not in (1, 3):
        raise ConfigError(f"lpips needs 1 or 3 channels, got {x.shape[1]}")
    h, w = x.shape[-2:]
    if h < LPIPS_MIN_SIZE or w < LPIPS_MIN_SIZE:
        raise ConfigError(
            f"lpips needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE} pixels, got {h}x{w}"
        )
    low = float(data_range[0]) if isinstance(data_range, tuple | list) else 0.0
    width = data_range_width(data_range)
    x = (2.0 * (x - low) / width - 1.0).float().expand(-1, 3, -1, -1)
    y = (2.0 * (y - low) / width - 1.0).float().expand(-1, 3, -1, -1)
    model = _model(net, status.backbone, status.linear, str(x.device))
    with torch.no_grad():
        return model(x, y).to(torch.float64)
