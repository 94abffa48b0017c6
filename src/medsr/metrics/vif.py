"""Pixel-domain visual information fidelity, VIFp (Sheikh and Bovik 2006).

The multi-scale pixel-domain version of the authors' ``vifp_mscale.m``: four scales with
Gaussian windows of 17, 9, 5 and 3 taps (sigma = taps / 5); before scales 2..4 both images
are low-pass filtered with that scale's window (``"valid"`` region) and subsampled by 2.
At each scale the local gain ``g = cov / var_hr`` and the residual variance
``var_sr - g cov`` give ``num = sum log10(1 + g**2 var_hr / (sv + sigma_n**2))`` and
``den = sum log10(1 + var_hr / sigma_n**2)``; VIF is ``sum num / sum den``. The guards for
flat windows and negative gains follow the reference code.

Units: the reference code works on 8-bit grey levels with visual noise variance
``sigma_n**2 = 2``. Here ``sigma_n_sq`` is given in those 8-bit units and scaled by
``(data_range / 255)**2``, so ``vif(x, y, data_range=L)`` equals the reference on
``255 x / L`` and ``255 y / L``: the result does not depend on the physical scale of the
data, only on where the data range puts the noise floor. VIF is not symmetric: ``hr`` is
the reference.

With a ``mask`` the per-pixel terms are summed only over the region: at the finest scale
over its pixels, at coarser scales with weights equal to the mask filtered and subsampled
like the images (the fraction of region in each coarse pixel). An all-true mask gives
the unmasked value exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import ArrayLike, DataRange, data_range_width, prepare
from medsr.metrics.ssim import gaussian_kernel_1d, separable_filter

__all__ = ["VIF_MIN_SIZE", "vif"]

_EPS = 1e-10
_SCALES = 4
# smallest H and W for which the coarsest scale still has one valid window (= torchmetrics')
VIF_MIN_SIZE = 41


def _window(scale: int, like: Tensor) -> Tensor:
    taps = 2 ** (_SCALES - scale) + 1
    return gaussian_kernel_1d(taps, taps / 5.0, dtype=like.dtype, device=like.device)


def _crop_to(w: Tensor, taps: int) -> Tensor:
    r = taps // 2
    return w[..., r : w.shape[-2] - r, r : w.shape[-1] - r]


def vif(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    mask: ArrayLike | None = None,
    sigma_n_sq: float = 2.0,
) -> Tensor:
    """Pixel-domain VIF of ``sr`` against the reference ``hr``; ``(B,)``, higher is better.

    Args:
        sr: super-resolved (distorted) image, ``(B, C, H, W)``, ``(C, H, W)`` or
            ``(H, W)``, tensors or numpy arrays, at least 41x41.
        hr: reference image of the same shape.
        data_range: width of the value range (or ``(low, high)``); sets the noise floor.
        mask: optional boolean region (see the module docstring); NaN if empty.
        sigma_n_sq: visual noise variance in 8-bit grey levels (2.0 in the paper).

    Channels are scored separately and averaged (as torchmetrics does). 1 means the
    images carry the same information; values above 1 mean contrast enhancement.
    """
    if not (math.isfinite(sigma_n_sq) and sigma_n_sq > 0):
        raise ConfigError(f"sigma_n_sq must be positive, got {sigma_n_sq!r}")
    x, y, m = prepare(sr, hr, mask)
    h, w_ = x.shape[-2:]
    if h < VIF_MIN_SIZE or w_ < VIF_MIN_SIZE:
        raise ConfigError(
            f"vif needs images of at least {VIF_MIN_SIZE}x{VIF_MIN_SIZE} pixels, got {h}x{w_}"
        )
    noise = sigma_n_sq * (data_range_width(data_range) / 255.0) ** 2
    weights = None if m is None else m.to(x.dtype)
    b, c = x.shape[:2]
    num = torch.zeros(b, c, dtype=x.dtype, device=x.device)
    den = torch.zeros_like(num)
    for scale in range(_SCALES):
        win = _window(scale, x)
        taps = win.numel()
        if scale > 0:
            x = separable_filter(x, win)[..., ::2, ::2]
            y = separable_filter(y, win)[..., ::2, ::2]
            if weights is not None:
                weights = separable_filter(weights, win)[..., ::2, ::2]
        stats = separable_filter(torch.cat([y, x, y * y, x * x, y * x]), win)
        mu_ref, mu_dist, e_rr, e_dd, e_rd = stats.split(b)
        var_ref = (e_rr - mu_ref * mu_ref).clamp_min(0.0)
        var_dist = (e_dd - mu_dist * mu_dist).clamp_min(0.0)
        cov = e_rd - mu_ref * mu_dist

        g = cov / (var_ref + _EPS)
        sv = var_dist - g * cov
        flat_ref = var_ref < _EPS
        g = torch.where(flat_ref, 0.0, g)
        sv = torch.where(flat_ref, var_dist, sv)
        var_ref = torch.where(flat_ref, 0.0, var_ref)
        flat_dist = var_dist < _EPS
        g = torch.where(flat_dist, 0.0, g)
        sv = torch.where(flat_dist, 0.0, sv)
        negative = g < 0
        sv = torch.where(negative, var_dist, sv)
        g = torch.where(negative, 0.0, g)
        sv = sv.clamp_min(_EPS)

        num_map = torch.log10(1.0 + g * g * var_ref / (sv + noise))
        den_map = torch.log10(1.0 + var_ref / noise)
        if weights is not None:
            wc = _crop_to(weights, taps)
            num_map = num_map * wc
            den_map = den_map * wc
        num = num + num_map.sum((-2, -1))
        den = den + den_map.sum((-2, -1))
    return (num / den).mean(1)
