"""Gradient magnitude similarity deviation, GMSD (Xue, Zhang, Mou and Bovik 2014).

Both images are averaged over 2x2 blocks and subsampled by 2 (a trailing odd row or
column is dropped), their gradient magnitudes are taken with 3x3 Prewitt filters
(``[1 0 -1]`` over 3 rows, divided by 3), and the gradient magnitude similarity
``GMS = (2 g_sr g_hr + c) / (g_sr**2 + g_hr**2 + c)`` is computed per pixel. GMSD is the
standard deviation of the GMS map: 0 for identical images, larger is worse.

Units: the paper's constant ``c = 170`` is for 8-bit grey levels; here ``c`` is given in
those units and scaled by ``(data_range / 255)**2``, so ``gmsd(x, y, data_range=L)`` equals
the reference on ``255 x / L`` and ``255 y / L``.

Border handling (``padding``):

* ``"valid"`` (default): gradients only where the 3x3 filter fits inside the (downsampled)
  image, so the map loses one pixel on each side. Adding a constant to both images then
  leaves GMSD unchanged, which matters in physical units (CT air at -1000 HU at the edge).
* ``"zero"``: the reference MATLAB code's ``conv2(..., 'same')``: zero padding, which
  invents edges of height "intensity minus zero" along the border of both images.

The deviation is the population standard deviation (the MATLAB code's ``std2`` divides by
``N - 1``; the difference is a factor ``sqrt(N / (N - 1))`` with N the pixels of the
downsampled map: below 1e-4 relative from 142x142 images on). With a ``mask``, the
deviation is taken over the region: each GMS pixel is weighted by the fraction of region
pixels in its 2x2 block.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import ArrayLike, DataRange, data_range_width, prepare

__all__ = ["GMSD_MIN_SIZE", "gmsd", "gradient_magnitude"]

GMSD_MIN_SIZE = 6  # 3x3 after downsampling, so the valid gradient map has one pixel
_PADDINGS = ("valid", "zero")


def gradient_magnitude(x: Tensor, *, padding: Literal["valid", "zero"] = "valid") -> Tensor:
    """Prewitt gradient magnitude of ``x`` ``(B, C, H, W)``, per channel.

    ``"valid"`` gives ``(B, C, H - 2, W - 2)``, ``"zero"`` zero-pads to keep ``(H, W)``.
    """
    b, c, h, w = x.shape
    k = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=x.dtype, device=x.device) / 3.0
    kernels = torch.stack([k, k.T])[:, None]  # (2, 1, 3, 3): d/dx and d/dy
    t = x.reshape(b * c, 1, h, w)
    grads = F.conv2d(t, kernels, padding=1 if padding == "zero" else 0)
    mag = grads.pow(2).sum(1).sqrt()
    return mag.reshape(b, c, mag.shape[-2], mag.shape[-1])


def gmsd(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    mask: ArrayLike | None = None,
    c: float = 170.0,
    padding: Literal["valid", "zero"] = "valid",
) -> Tensor:
    """GMSD of ``sr`` against ``hr``; ``(B,)``, lower is better (0 for identical images).

    Args:
        sr: super-resolved image, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, tensors
            or numpy arrays, at least 6x6.
        hr: ground truth of the same shape.
        data_range: width of the value range (or ``(low, high)``); scales ``c``.
        mask: optional boolean region (see the module docstring); NaN if empty.
        c: stability constant in 8-bit grey levels squared (170 in the paper).
        padding: ``"valid"`` (default) or ``"zero"`` (the reference code).

    Channels are scored separately and averaged (for colour images the paper uses the
    luminance: convert first).
    """
    if padding not in _PADDINGS:
        raise ConfigError(f"padding must be one of {_PADDINGS}, got {padding!r}")
    if not (math.isfinite(c) and c > 0):
        raise ConfigError(f"c must be positive, got {c!r}")
    x, y, m = prepare(sr, hr, mask)
    h, w = x.shape[-2:]
    if h < GMSD_MIN_SIZE or w < GMSD_MIN_SIZE:
        raise ConfigError(
            f"gmsd needs images of at least {GMSD_MIN_SIZE}x{GMSD_MIN_SIZE} pixels, got {h}x{w}"
        )
    t = c * (data_range_width(data_range) / 255.0) ** 2
    gx = gradient_magnitude(F.avg_pool2d(x, 2), padding=padding)
    gy = gradient_magnitude(F.avg_pool2d(y, 2), padding=padding)
    gms = (2.0 * gx * gy + t) / (gx * gx + gy * gy + t)
    if m is None:
        weights = torch.ones_like(gms)
    else:
        weights = F.avg_pool2d(m.to(x.dtype), 2)
        if padding == "valid":
            weights = weights[..., 1:-1, 1:-1]
    total = weights.sum((-2, -1))
    mean = (gms * weights).sum((-2, -1)) / total
    var = ((gms - mean[..., None, None]) ** 2 * weights).sum((-2, -1)) / total
    return var.sqrt().mean(1)
