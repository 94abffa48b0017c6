"""SSIM (Wang et al. 2004) and MS-SSIM (Wang, Simoncelli and Bovik 2003).

Window: Gaussian, 11x11, sigma 1.5 (normalised to sum 1), constants ``K1 = 0.01`` and
``K2 = 0.03`` with ``C1 = (K1 L)**2``, ``C2 = (K2 L)**2`` where ``L`` is the width of
``data_range``. Local statistics are population (biased) moments, as in the paper.

Border handling (``padding``):

* ``"valid"`` (default): the SSIM map is computed only where the window fits inside the
  image, so it is ``(H - 10, W - 10)`` and no padded value is ever used. This is
  scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False)`` (which crops 5 pixels after filtering) and the
  original MATLAB code's ``filter2(..., 'valid')``.
* ``"reflect"``: the image is mirror-padded by 5 pixels (``torch.nn.functional.pad``
  ``mode="reflect"``) and the map keeps the full ``(H, W)`` size. This is what
  torchmetrics' ``structural_similarity_index_measure`` averages.

With a ``mask``, the SSIM map is computed on the whole image (windows may straddle the
region's edge) and averaged over the map pixels whose centre lies in the region; with
``padding="valid"`` region pixels within 5 pixels of the image border are not counted.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import (
    ArrayLike,
    DataRange,
    crop_border,
    data_range_width,
    prepare,
    weighted_mean,
)

__all__ = [
    "MS_SSIM_WEIGHTS",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "gaussian_kernel_1d",
    "ms_ssim",
    "ms_ssim_min_size",
    "separable_filter",
    "ssim",
    "ssim_map",
]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
K1 = 0.01
K2 = 0.03
# Wang, Simoncelli and Bovik (2003), Table/eq. 7: weights of scales 1 (finest) .. 5
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

Padding = Literal["valid", "reflect"]
_PADDINGS = ("valid", "reflect")


def gaussian_kernel_1d(
    size: int,
    sigma: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sampled Gaussian of ``size`` taps (centred), normalised to sum 1; ``(size,)``."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def separable_filter(x: Tensor, kernel: Tensor, *, padding: Padding = "valid") -> Tensor:
    """Filter every channel of ``x`` ``(B, C, H, W)`` with ``outer(kernel, kernel)``.

    ``padding="valid"`` returns ``(B, C, H - k + 1, W - k + 1)``; ``"reflect"`` mirror-pads
    by ``k // 2`` first and keeps ``(H, W)``.
    """
    k = kernel.numel()
    if padding == "reflect":
        b, c, h, w = x.shape
        r = k // 2
        x = F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect").reshape(
            b, c, h + 2 * r, w + 2 * r
        )
    taps = kernel.to(dtype=x.dtype, device=x.device).tolist()
    # a sum of shifted slices: float64 conv2d on CPU has no fast path and is ~10x slower
    oh = x.shape[-2] - k + 1
    ow = x.shape[-1] - k + 1
    rows = x[..., :, 0:ow] * taps[0]
    for i in range(1, k):
        rows.add_(x[..., :, i : i + ow], alpha=taps[i])
    out = rows[..., 0:oh, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + oh, :], alpha=taps[i])
    return out


def _check_padding(padding: str) -> None:
    if padding not in _PADDINGS:
        raise ConfigError(f"padding must be one of {_PADDINGS}, got {padding!r}")


def _check_size(x: Tensor, minimum: int, what: str) -> None:
    h, w = x.shape[-2:]
    if h < minimum or w < minimum:
        raise ConfigError(
            f"{what} needs images of at least {minimum}x{minimum} pixels, got {h}x{w}"
        )


def _ssim_and_cs(x: Tensor, y: Tensor, *, width: float, padding: Padding) -> tuple[Tensor, Tensor]:
    """SSIM map and contrast-structure map of ``x`` and ``y`` (both ``(B, C, H, W)``)."""
    c1 = (K1 * width) ** 2
    c2 = (K2 * width) ** 2
    kernel = gaussian_kernel_1d(SSIM_WINDOW, SSIM_SIGMA, dtype=x.dtype, device=x.device)
    b = x.shape[0]
    stats = separable_filter(torch.cat([x, y, x * x, y * y, x * y]), kernel, padding=padding)
    mu_x, mu_y, exx, eyy, exy = stats.split(b)
    # E[x^2] - E[x]^2 can dip below zero by rounding; a variance cannot
    var_x = (exx - mu_x * mu_x).clamp_min(0.0)
    var_y = (eyy - mu_y * mu_y).clamp_min(0.0)
    cov = exy - mu_x * mu_y
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return luminance * cs, cs


def ssim_map(
    sr: ArrayLike, hr: ArrayLike, *, data_range: DataRange, padding: Padding = "valid"
) -> Tensor:
    """Local SSIM map, ``(B, C, H - 10, W - 10)`` (``"valid"``) or ``(B, C, H, W)``.

    Inputs ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)`` (tensors or numpy arrays), in
    physical units; see the module docstring for the window, constants and ``padding``.
    """
    _check_padding(padding)
    x, y, _ = prepare(sr, hr)
    _check_size(x, SSIM_WINDOW, "ssim")
    return _ssim_and_cs(x, y, width=data_range_width(data_range), padding=padding)[0]


def ssim(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    mask: ArrayLike | None = None,
    padding: Padding = "valid",
) -> Tensor:
    """Mean SSIM per image; ``(B,)``.

    Args:
        sr: super-resolved image, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; at least
            11x11.
        hr: ground truth of the same shape.
        data_range: width of the value range (or ``(low, high)``); sets C1 and C2.
        mask: optional boolean region: the map is averaged over the map pixels whose window
            centre is in the region (NaN if none is).
        padding: ``"valid"`` (default, scikit-image) or ``"reflect"`` (torchmetrics).

    Channels are averaged with the pixels (as scikit-image's ``channel_axis`` and
    torchmetrics do).
    """
    _check_padding(padding)
    x, y, m = prepare(sr, hr, mask)
    _check_size(x, SSIM_WINDOW, "ssim")
    smap, _ = _ssim_and_cs(x, y, width=data_range_width(data_range), padding=padding)
    if m is not None and padding == "valid":
        m = crop_border(m, SSIM_WINDOW // 2)
    return weighted_mean(smap, m)


def ms_ssim_min_size(n_scales: int = len(MS_SSIM_WEIGHTS)) -> int:
    """Smallest height and width MS-SSIM accepts with ``n_scales`` scales (176 for 5).

    The coarsest scale is the image halved ``n_scales - 1`` times (2x2 averaging, odd rows
    and columns dropped), and the 11x11 window must fit in it.
    """
    return SSIM_WINDOW * 2 ** (n_scales - 1)


def ms_ssim(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    mask: ArrayLike | None = None,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
) -> Tensor:
    """Multi-scale SSIM (Wang, Simoncelli and Bovik 2003); ``(B,)``.

    At scales 1..M-1 the mean contrast-structure term ``cs_j`` is kept, at the coarsest
    scale M the full SSIM; the result is ``prod_j cs_j**w_j * ssim_M**w_M``. Between
    scales both images are averaged over 2x2 blocks and subsampled by 2 (a trailing odd
    row or column is dropped). Every scale uses the ``"valid"`` window region. Negative
    means are set to 0 before the fractional powers (torchmetrics' default
    ``normalize="relu"``), so a very poor image scores 0 rather than NaN.

    Args:
        sr, hr: ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; H and W at least
            :func:`ms_ssim_min_size` (176 pixels with the 5 standard weights). Smaller
            images raise :class:`~medsr.errors.ConfigError`: use :func:`ssim`, or pass
            fewer ``weights`` (each one fewer scale halves the minimum size).
        data_range: width of the value range (or ``(low, high)``).
        mask: optional boolean region. At the finest scale the maps are averaged over the
            region's pixels; at each coarser scale with weights equal to the fraction of
            region pixels in the 2x2-averaged pixel. An all-true mask gives the unmasked
            value exactly.
        weights: exponents of the scales, finest first.
    """
    if len(weights) < 1:
        raise ConfigError("ms_ssim needs at least one weight")
    x, y, m = prepare(sr, hr, mask)
    _check_size(x, ms_ssim_min_size(len(weights)), f"ms_ssim with {len(weights)} scales")
    width = data_range_width(data_range)
    w = None if m is None else m.to(x.dtype)
    r = SSIM_WINDOW // 2
    factors = []
    for scale, exponent in enumerate(weights):
        smap, cs = _ssim_and_cs(x, y, width=width, padding="valid")
        wc = None if w is None else crop_border(w, r)
        last = scale == len(weights) - 1
        value = weighted_mean(smap if last else cs, wc).clamp_min(0.0)
        factors.append(value**exponent)
        if not last:
            x = F.avg_pool2d(x, 2)
            y = F.avg_pool2d(y, 2)
            if w is not None:
                w = F.avg_pool2d(w, 2)
    return torch.stack(factors).prod(0)
