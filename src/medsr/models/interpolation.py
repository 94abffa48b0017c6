"""Interpolation baselines as parameter-free generators (same pipeline, same tables).

For 2.5D input (``in_channels`` odd > 1, ``out_channels == 1``) the centre slice is upsampled.
Outputs are not clamped: bicubic and Lanczos overshoot at edges, as they do everywhere else.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from medsr.models.layers import Generator, centre_channels

__all__ = ["Bicubic", "Bilinear", "Lanczos", "Nearest", "lanczos_phase_kernels"]


class _Interpolation(Generator):
    mode: ClassVar[str]

    def __init__(self, *, scale: int = 4, in_channels: int = 1, out_channels: int | None = None):
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        x = centre_channels(lr, self.out_channels)
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=False)


class Nearest(_Interpolation):
    """Nearest-neighbour upsampling (pixel replication)."""

    arch = "nearest"
    mode = "nearest"


class Bilinear(_Interpolation):
    """Bilinear upsampling (half-pixel centres, ``align_corners=False``)."""

    arch = "bilinear"
    mode = "bilinear"


class Bicubic(_Interpolation):
    """Bicubic upsampling (PyTorch's Keys kernel, a = -0.75; MATLAB/PIL use a = -0.5)."""

    arch = "bicubic"
    mode = "bicubic"


def _lanczos(x: float, a: int) -> float:
    if x == 0.0:
        return 1.0
    if abs(x) >= a:
        return 0.0
    px = math.pi * x
    return a * math.sin(px) * math.sin(px / a) / (px * px)


def lanczos_phase_kernels(scale: int, a: int = 3) -> Tensor:
    """The separable Lanczos-``a`` upsampling filters, one per output phase: ``(scale, 2a+1)``.

    Output sample ``o = scale*i + p`` sits at input coordinate ``i + (p + 0.5)/scale - 0.5``
    (half-pixel centres, as PIL and ``align_corners=False``); it takes the taps ``i-a .. i+a``
    weighted by ``L(d - k)`` and normalised to sum to 1 (so flat regions stay flat).
    """
    rows = []
    for phase in range(scale):
        offset = (phase + 0.5) / scale - 0.5
        taps = [_lanczos(offset - k, a) for k in range(-a, a + 1)]
        total = sum(taps)
        rows.append([t / total for t in taps])
    return torch.tensor(rows, dtype=torch.float32)


class Lanczos(Generator):
    """Lanczos-3 upsampling with a separable kernel and replicated borders.

    Matches PIL's ``Image.LANCZOS`` upscaling away from the image border (PIL renormalises
    the truncated kernel at the border instead of replicating edge pixels).
    """

    arch = "lanczos"
    lobes: ClassVar[int] = 3

    def __init__(self, *, scale: int = 4, in_channels: int = 1, out_channels: int | None = None):
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        kernels = lanczos_phase_kernels(scale, self.lobes)
        # (scale, 1, 1, taps): one output channel per phase, applied to a single channel.
        self.register_buffer("kernel", kernels[:, None, None, :], persistent=False)

    def _upsample_last_axis(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        flat = x.reshape(batch * channels, 1, height, width)
        flat = F.pad(flat, (self.lobes, self.lobes, 0, 0), mode="replicate")
        phases = F.conv2d(flat, self.kernel.to(flat.dtype))  # (N, scale, H, W)
        # Interleave the phases along the last axis: out[..., scale*i + p] = phases[:, p, ..., i]
        out = phases.permute(0, 2, 3, 1).reshape(batch, channels, height, width * self.scale)
        return out

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        x = centre_channels(lr, self.out_channels)
        x = self._upsample_last_axis(x)
        x = self._upsample_last_axis(x.transpose(-1, -2)).transpose(-1, -2)
        return x.contiguous()
