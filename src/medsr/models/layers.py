"""Base classes and building blocks shared by the generators and discriminators.

Every model stores each constructor argument as an attribute of the same name, so
:meth:`hparams` can return exactly what rebuilds it (the checkpoint's ``config.json``).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.errors import ConfigError
from medsr.schema import positive as check_positive

__all__ = [
    "DEFAULT_SCALES",
    "Discriminator",
    "Generator",
    "MeanShift",
    "PixelShuffleUpsampler",
    "centre_channels",
    "check_positive",
    "scale_steps",
]

DEFAULT_SCALES: tuple[int, ...] = (2, 3, 4, 8)


def scale_steps(scale: int) -> list[int]:
    """Split an upscaling factor into the x2 / x3 steps of a sub-pixel upsampler.

    2 -> [2], 3 -> [3], 4 -> [2, 2], 8 -> [2, 2, 2]; anything else raises ConfigError.
    """
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * int(math.log2(scale))
    raise ConfigError(f"scale {scale!r} cannot be split into x2/x3 steps; use 2, 3, 4 or 8")


def centre_channels(x: Tensor, out_channels: int) -> Tensor:
    """The channels of ``x`` (B, C, H, W) that correspond to the ``out_channels`` outputs.

    All of them when ``out_channels == C``; the centre slice when a 2.5D stack of C (odd)
    neighbouring slices predicts one slice.
    """
    channels = x.shape[1]
    if out_channels == channels:
        return x
    centre = channels // 2
    return x[:, centre : centre + 1]


class _HParamsMixin:
    """``hparams()`` from the constructor's signature and the attributes of the same name."""

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model: ``type(self)(**m.hparams())``."""
        names = [
            name
            for name, p in inspect.signature(type(self).__init__).parameters.items()
            if name != "self" and p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in names}


class Generator(_HParamsMixin, nn.Module):
    """Base class of every generator (super-resolution network or interpolation baseline).

    ``forward(lr: (B, in_channels, H, W) in [0, 1]) -> (B, out_channels, scale*H, scale*W)``.
    Outputs are not clamped (interpolation overshoot and network outputs may leave [0, 1]).

    ``out_channels`` defaults to ``in_channels``; ``out_channels=1`` with an odd
    ``in_channels`` > 1 is the 2.5D setting: neighbouring slices in, the centre slice out.
    """

    arch: ClassVar[str]
    """Key of the class in ``medsr.models.GENERATORS`` (written to checkpoints)."""
    supported_scales: ClassVar[tuple[int, ...]] = DEFAULT_SCALES
    paper: ClassVar[str] = ""

    def __init__(self, *, scale: int, in_channels: int, out_channels: int | None) -> None:
        super().__init__()
        if scale not in self.supported_scales:
            raise ConfigError(
                f"{self.arch}: scale {scale!r} is not supported; "
                f"supported scales: {', '.join(map(str, self.supported_scales))}"
            )
        check_positive("in_channels", in_channels)
        resolved_out = in_channels if out_channels is None else out_channels
        check_positive("out_channels", resolved_out)
        if resolved_out != in_channels and not (resolved_out == 1 and in_channels % 2 == 1):
            raise ConfigError(
                f"{self.arch}: out_channels={resolved_out} with in_channels={in_channels}; "
                "out_channels must equal in_channels, or be 1 with an odd in_channels "
                "(2.5D: the centre slice is the target)"
            )
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = resolved_out

    def hparams(self) -> dict[str, Any]:
        """Constructor arguments (``out_channels`` resolved to an int)."""
        return super().hparams()

    def fuse(self) -> Generator:
        """Switch to the deploy form for inference, in place; returns self.

        Re-parameterisable models (:class:`~medsr.models.span.SPAN`) fold their multi-branch
        training blocks into plain convolutions with the same output; for every other model
        the training form is the deploy form and this does nothing. Inference loaders call
        it; training never does.
        """
        return self


class Discriminator(_HParamsMixin, nn.Module):
    """Base class of every discriminator.

    Uniform interface so a training loop can treat all of them alike:

    - ``forward(x, *, lr=None) -> logits``: raw scores (no sigmoid), shape ``(B, 1)`` for
      image-level discriminators or ``(B, 1, H, W)`` for per-pixel ones (U-Net).
    - ``forward_features(x, *, lr=None) -> (logits, features)``: the same logits plus a list
      of intermediate feature maps (for feature-matching losses), from one pass.

    ``lr`` is the low-resolution input of the pair; only discriminators with
    ``paired = True`` use it (and require it); the others accept and ignore it.
    """

    arch: ClassVar[str]
    paired: ClassVar[bool] = False
    paper: ClassVar[str] = ""

    def __init__(self, *, in_channels: int) -> None:
        super().__init__()
        check_positive("in_channels", in_channels)
        self.in_channels = in_channels

    def forward_features(
        self, x: Tensor, *, lr: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        raise NotImplementedError

    def forward(self, x: Tensor, *, lr: Tensor | None = None) -> Tensor:
        """Logits for ``x`` (B, C, H, W) (and ``lr`` for paired discriminators)."""
        return self.forward_features(x, lr=lr)[0]


class MeanShift(nn.Module):
    """Subtracts (``sign=-1``) or adds (``sign=+1``) a constant mean, kept as a buffer.

    EDSR and RCAN centre their inputs on the training set mean; for medical images scaled to
    [0, 1] a single mean (default 0.5) for every channel does the same job.
    """

    def __init__(self, *, mean: float, channels: int, sign: int) -> None:
        super().__init__()
        # Derived from hyper-parameters, so not written to checkpoints.
        self.register_buffer("mean", torch.full((1, channels, 1, 1), float(mean)), persistent=False)
        self.sign = sign

    def forward(self, x: Tensor) -> Tensor:
        return x + self.sign * self.mean


class PixelShuffleUpsampler(nn.Sequential):
    """Sub-pixel upsampling (ESPCN): per x2/x3 step a 3x3 conv to ``r*r*F`` channels and a
    pixel shuffle, optionally followed by an activation (PReLU in SRResNet)."""

    def __init__(self, *, scale: int, num_features: int, activation: str | None = None) -> None:
        layers: list[nn.Module] = []
        for step in scale_steps(scale):
            layers.append(nn.Conv2d(num_features, num_features * step * step, 3, padding=1))
            layers.append(nn.PixelShuffle(step))
            if activation == "prelu":
                layers.append(nn.PReLU())
            elif activation == "relu":
                layers.append(nn.ReLU(inplace=True))
            elif activation is not None:
                raise ConfigError(f"unknown upsampler activation {activation!r}")
        super().__init__(*layers)


def bicubic_upsample(x: Tensor, scale: int) -> Tensor:
    """Bicubic upsampling by an integer factor (PyTorch convention, a = -0.75)."""
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:
    """Reflect-pad the bottom/right of (B, C, H, W) so H and W divide by ``multiple``.

    Returns the padded tensor and the original H, W (to crop the output back).
    """
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, height, width
