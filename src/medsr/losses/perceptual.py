"""Perceptual (VGG feature) loss.

Our own VGG16/VGG19 ``features`` stack, in torchvision's key layout (``features.{i}.weight``
/ ``.bias`` at the indices of torchvision's ``vgg16().features`` / ``vgg19().features``), so
any torchvision-layout state dict loads into it. Its weights come from a file you name or
from the torchvision cache; medsr never downloads them.

Two input conventions exist for VGG weights, and the right one depends on the weights:

- ``"imagenet"`` (torchvision): RGB in [0, 1], minus mean (0.485, 0.456, 0.406), divided by
  std (0.229, 0.224, 0.225).
- ``"caffe"`` (the original VGG release, and ``vgg16-features-imagenet-mri-finetuned``):
  BGR order, values 0..255, minus mean (B 103.939, G 116.779, R 123.68).

Grey images (1 channel) are repeated over the 3 channels; 3-channel images are taken as RGB.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.errors import CheckpointError, ConfigError, WeightsNotFoundError

__all__ = [
    "TORCHVISION_VGG_FILES",
    "PerceptualLoss",
    "VGGFeatures",
    "find_vgg_weights",
    "vgg_layer_names",
]

_CFG: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip

# File names torchvision gives the ImageNet weights in $TORCH_HOME/hub/checkpoints.
TORCHVISION_VGG_FILES: dict[str, str] = {
    "vgg16": "vgg16-397923af.pth",
    "vgg19": "vgg19-dcbb9e9d.pth",
}

_NORMALISATIONS = ("imagenet", "caffe")
_CRITERIA = ("l1", "mse")
_DEFAULT_LAYER = {"vgg16": "conv5_3", "vgg19": "conv5_4"}


def _layout(arch: str) -> dict[str, int]:
    """Layer name -> index in ``features`` (``conv3_2``, ``relu3_2``, ``pool3``...)."""
    if arch not in _CFG:
        raise ConfigError(f"unknown VGG {arch!r}; known: {', '.join(_CFG)}")
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for item in _CFG[arch]:
        if item == "M":
            names[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            names[f"conv{block}_{conv}"] = index
            names[f"relu{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return names


def vgg_layer_names(arch: str) -> list[str]:
    """Selectable layers of ``arch`` in network order: ``conv1_1``, ``relu1_1``, ... ``pool5``.

    ``convX_Y`` is before the activation (as ESRGAN uses), ``reluX_Y`` after it (as SRGAN).
    """
    return list(_layout(arch))


class _FrozenConv2d(nn.Module):
    """A 3x3 convolution whose weights are buffers: constants, never trained."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(c_out, c_in, 3, 3))
        self.register_buffer("bias", torch.zeros(c_out))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=1)


class VGGFeatures(nn.Module):
    """The VGG ``features`` stack up to the deepest requested layer, with frozen weights.

    ``forward(x: (B, 3, H, W), already normalised) -> {layer name: (B, C_l, H_l, W_l)}``.
    Load weights with :meth:`load_weights` (torchvision layout; fp16 is cast to fp32).
    """

    def __init__(self, *, arch: str = "vgg19", layers: Sequence[str] = ("conv5_4",)) -> None:
        super().__init__()
        layout = _layout(arch)
        unknown = [name for name in layers if name not in layout]
        if unknown or not layers:
            raise ConfigError(
                f"unknown {arch} layer(s) {unknown or '(none given)'}; valid: {', '.join(layout)}"
            )
        self.arch = arch
        self.layers = list(layers)
        self._index = {name: layout[name] for name in layers}
        last = max(self._index.values())
        modules: list[nn.Module] = []
        channels = 3
        for item in _CFG[arch]:
            if len(modules) > last:
                break
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules.append(_FrozenConv2d(channels, int(item)))
                modules.append(nn.ReLU(inplace=False))
                channels = int(item)
        self.features = nn.Sequential(*modules[: last + 1])
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, state: Mapping[str, Tensor], *, source: str | Path = "weights") -> None:
        """Copy ``features.{i}.weight/bias`` (or ``{i}.weight/bias``) from a state dict."""
        own = self.state_dict()
        prefixed = any(k.startswith("features.") for k in state)
        for key, target in own.items():
            name = key if prefixed else key.removeprefix("features.")
            if name not in state:
                raise CheckpointError(
                    source, f"has no {name!r}: not a torchvision-layout {self.arch} state dict"
                )
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise CheckpointError(
                    source,
                    f"{name} has shape {tuple(value.shape)}, {self.arch} expects "
                    f"{tuple(target.shape)}",
                )
            target.copy_(value.to(target.dtype))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        wanted = {index: name for name, index in self._index.items()}
        out: dict[str, Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out

    def train(self, mode: bool = True) -> VGGFeatures:
        # Always in eval mode: it is a fixed feature extractor.
        return super().train(False)


def _torch_home() -> Path:
    if "TORCH_HOME" in os.environ:
        return Path(os.environ["TORCH_HOME"])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "torch"


def find_vgg_weights(arch: str, weights: str | Path | None = None) -> Path:
    """The weights file to use: ``weights`` if given, else the torchvision cache file
    (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth`` or ``vgg16-397923af.pth``;
    ``$TORCH_HOME`` defaults to ``~/.cache/torch``). Raises WeightsNotFoundError otherwise."""
    if arch not in TORCHVISION_VGG_FILES:
        raise ConfigError(f"unknown VGG {arch!r}; known: {', '.join(TORCHVISION_VGG_FILES)}")
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise WeightsNotFoundError(f"VGG weights file {path} does not exist")
        return path
    cached = _torch_home() / "hub" / "checkpoints" / TORCHVISION_VGG_FILES[arch]
    if cached.is_file():
        return cached
    raise WeightsNotFoundError(
        f"no {arch} weights for the perceptual loss: none given, and the torchvision cache "
        f"file {cached} does not exist. medsr never downloads weights. Either pass a "
        f"torchvision-layout state dict (.pth or .safetensors with 'features.N.weight' keys, "
        f"e.g. weights='../shared/data/weights/vgg16-features-imagenet-mri-finetuned"
        f".safetensors' with arch='vgg16', normalization='caffe'), or copy torchvision's "
        f"{TORCHVISION_VGG_FILES[arch]} into {cached.parent} (or set TORCH_HOME)."
    )


class PerceptualLoss(nn.Module):
    """Distance between VGG features of ``sr`` and ``hr`` at chosen layers.

    ``layers`` maps layer names (see :func:`vgg_layer_names`; ``conv5_4`` is before the
    activation, ``relu5_4`` after) to weights; a list gives each weight 1. Default: the last
    conv before activation (``conv5_4`` for VGG19, ``conv5_3`` for VGG16), as in ESRGAN.

    ``forward(sr, hr)`` with (B, 1 or 3, H, W) images in [0, 1] returns ``(total, parts)``,
    ``total = weight * sum_l w_l * criterion(phi_l(sr), phi_l(hr))`` and one part per layer,
    ``"perceptual.<layer>"``. The HR features carry no gradient. Never logs, never downloads.
    """

    def __init__(
        self,
        *,
        arch: str = "vgg19",
        layers: Mapping[str, float] | Sequence[str] | None = None,
        weights: str | Path | None = None,
        normalization: str = "imagenet",
        criterion: str = "l1",
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        if arch not in _CFG:
            raise ConfigError(f"unknown VGG {arch!r}; known: {', '.join(_CFG)}")
        if normalization not in _NORMALISATIONS:
            raise ConfigError(
                f"unknown normalization {normalization!r}; known: {', '.join(_NORMALISATIONS)}"
            )
        if criterion not in _CRITERIA:
            raise ConfigError(f"unknown criterion {criterion!r}; known: {', '.join(_CRITERIA)}")
        if layers is None:
            layers = {_DEFAULT_LAYER[arch]: 1.0}
        elif not isinstance(layers, Mapping):
            layers = dict.fromkeys(layers, 1.0)
        self.layer_weights = dict(layers)
        self.normalization = normalization
        self.criterion = criterion
        self.weight = weight
        self.vgg = VGGFeatures(arch=arch, layers=list(self.layer_weights))
        path = find_vgg_weights(arch, weights)
        from medsr.models.checkpoint import load_state_dict_file

        self.vgg.load_weights(load_state_dict_file(path), source=path)
        self.weights_path = path
        if normalization == "imagenet":
            mean, scale = (0.485, 0.456, 0.406), (1 / 0.229, 1 / 0.224, 1 / 0.225)
        else:
            # x_bgr*255 - mean, written as (x_rgb - mean/255) * 255 after the channel flip
            mean, scale = (103.939 / 255, 116.779 / 255, 123.68 / 255), (255.0,) * 3
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """(B, 1 or 3, H, W) in [0, 1] -> the 3-channel input the VGG weights expect."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ConfigError(f"perceptual loss takes 1 or 3 channels, got {x.shape[1]}")
        if self.normalization == "caffe":
            x = x.flip(1)  # RGB -> BGR (grey: no-op)
        return (x - self.mean) * self.scale

    def forward(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if sr.shape != hr.shape:
            raise ConfigError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
        sr_features = self.vgg(self.normalize(sr))
        with torch.no_grad():
            hr_features = self.vgg(self.normalize(hr))
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        parts: dict[str, Tensor] = {}
        total = sr.new_zeros(())
        for name, layer_weight in self.layer_weights.items():
            term = self.weight * layer_weight * distance(sr_features[name], hr_features[name])
            parts[f"perceptual.{name}"] = term.detach()
            total = total + term
        return total, parts
