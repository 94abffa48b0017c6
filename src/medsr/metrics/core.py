"""Shared plumbing of the metrics and the pixel-wise metrics: MSE, MAE, PSNR and NRMSE.

Conventions shared by every metric in :mod:`medsr.metrics`:

* Inputs are torch tensors or numpy arrays of shape ``(H, W)``, ``(C, H, W)`` or
  ``(B, C, H, W)``; they are converted to a ``(B, C, H, W)`` float64 tensor on the device
  of the input (a 3-dimensional input is always read as ``(C, H, W)``: pass a stack of
  slices as ``(B, 1, H, W)``). ``sr`` and ``hr`` must have the same shape.
* Values are in physical units (HU, scanner units, grey levels) as given; nothing is
  clipped, shifted or rescaled.
* ``data_range`` is explicit wherever a metric needs it: a positive number (the width of
  the value range) or a ``(low, high)`` pair (width ``high - low``). It is never inferred
  from the data.
* ``mask`` is an optional boolean array following the same shape rules as the images
  (``(H, W)``, ``(B, 1, H, W)``, ...) that must broadcast to them. Only the pixels where it
  is true are counted. An empty mask gives NaN, not an error.
* The result is a float64 tensor of shape ``(B,)``: one value per image (channels are
  pooled with the pixels).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from medsr.errors import ConfigError

ArrayLike = Tensor | np.ndarray
DataRange = float | tuple[float, float]

__all__ = [
    "ArrayLike",
    "DataRange",
    "as_batch",
    "as_mask",
    "crop_border",
    "data_range_width",
    "mae",
    "masked_mean",
    "mse",
    "nrmse_euclidean",
    "nrmse_mean",
    "nrmse_range",
    "prepare",
    "psnr",
    "to_4d",
    "weighted_mean",
]


def _to_tensor(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        # torch cannot wrap every numpy dtype (uint16 before torch 2.3, big-endian arrays)
        if x.dtype == np.bool_:
            return torch.from_numpy(np.ascontiguousarray(x))
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    raise ConfigError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def to_4d(t: Tensor, name: str) -> Tensor:
    """``(H, W)`` -> ``(1, 1, H, W)``, ``(C, H, W)`` -> ``(1, C, H, W)``; dtype unchanged."""
    if t.ndim == 2:
        return t[None, None]
    if t.ndim == 3:
        return t[None]
    if t.ndim == 4:
        return t
    raise ConfigError(
        f"{name} must have shape (H, W), (C, H, W) or (B, C, H, W); got {tuple(t.shape)}"
    )


def as_batch(x: ArrayLike, *, name: str = "image") -> Tensor:
    """Convert an image to a float64 tensor of shape ``(B, C, H, W)``.

    ``(H, W)`` becomes ``(1, 1, H, W)`` and ``(C, H, W)`` becomes ``(1, C, H, W)``. Numpy
    arrays of any numeric dtype are accepted; tensors keep their device.
    """
    t = to_4d(_to_tensor(x, name), name)
    if t.dtype == torch.bool or t.is_complex():
        raise ConfigError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t.to(torch.float64)


def as_mask(mask: ArrayLike, shape: torch.Size | tuple[int, ...], *, name: str = "mask") -> Tensor:
    """Convert a boolean mask to a ``(B, C, H, W)`` bool tensor broadcast to ``shape``.

    The mask follows the same shape rules as the images (``(H, W)``, ``(C, H, W)`` or
    ``(B, C, H, W)``) and must broadcast to ``shape``. It must be boolean: build one from a
    label map with :func:`medsr.metrics.roi.mask_from_labels` or from intensities with
    :func:`medsr.metrics.roi.threshold_mask`.
    """
    t = to_4d(_to_tensor(mask, name), name)
    if t.dtype != torch.bool:
        raise ConfigError(
            f"{name} must be boolean, got dtype {t.dtype}; use mask_from_labels(...) or "
            "threshold_mask(...) to make one"
        )
    try:
        return torch.broadcast_to(t, tuple(shape))
    except RuntimeError:
        raise ConfigError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the images' shape "
            f"{tuple(shape)}"
        ) from None


def prepare(
    sr: ArrayLike, hr: ArrayLike, mask: ArrayLike | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Convert ``sr``, ``hr`` (and ``mask``) to ``(B, C, H, W)``; check that shapes agree."""
    x = as_batch(sr, name="sr")
    y = as_batch(hr, name="hr")
    if x.shape != y.shape:
        raise ConfigError(
            f"sr and hr must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    y = y.to(x.device)
    m = None if mask is None else as_mask(mask, x.shape).to(x.device)
    return x, y, m


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, Tensor):
        return value.numel() == 1 and not value.is_complex()
    return isinstance(value, int | float | np.integer | np.floating)


def data_range_width(data_range: DataRange) -> float:
    """Width of ``data_range``: the number itself, or ``high - low`` for a ``(low, high)`` pair.

    Raises :class:`~medsr.errors.ConfigError` for a missing, non-finite or non-positive range.
    """
    if isinstance(data_range, tuple | list):
        if len(data_range) != 2:
            raise ConfigError(
                f"data_range must be a number or a (low, high) pair, got {data_range!r}"
            )
        low, high = (float(v) for v in data_range)
        width = high - low
    elif _is_number(data_range):
        width = float(data_range)
    else:
        raise ConfigError(
            f"data_range must be a positive number or a (low, high) pair, got {data_range!r}"
        )
    if not math.isfinite(width) or width <= 0:
        raise ConfigError(f"data_range must have a positive finite width, got {data_range!r}")
    return width


def crop_border(x: Tensor, border: int) -> Tensor:
    """Remove ``border`` pixels from each side of the last two axes (as SR papers do).

    Works on images and masks of any leading shape. ``border=0`` returns ``x`` unchanged.
    """
    if not isinstance(border, int) or isinstance(border, bool) or border < 0:
        raise ConfigError(f"border must be a non-negative integer, got {border!r}")
    if border == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    if 2 * border >= min(h, w):
        raise ConfigError(f"border={border} leaves nothing of a {h}x{w} image")
    return x[..., border : h - border, border : w - border]


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """Mean over ``(C, H, W)`` of ``values`` weighted by non-negative ``weights``; ``(B,)``.

    ``weights=None`` is the plain mean. A zero total weight gives NaN.
    """
    if weights is None:
        return values.flatten(1).mean(1)
    w = weights.to(values.dtype)
    # where() rather than a product so that inf/NaN outside the region cannot leak in
    num = torch.where(w > 0, values * w, 0.0).flatten(1).sum(1)
    den = w.flatten(1).sum(1)
    return num / den  # 0/0 -> NaN for an empty region, by design


def masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over ``(C, H, W)`` of ``values`` where ``mask`` is true; ``(B,)``, NaN if empty."""
    return weighted_mean(values, mask)


def _masked_extreme(values: Tensor, mask: Tensor | None, largest: bool) -> Tensor:
    fill = -math.inf if largest else math.inf
    v = values if mask is None else torch.where(mask, values, fill)
    flat = v.flatten(1)
    out = flat.amax(1) if largest else flat.amin(1)
    if mask is not None:
        out = torch.where(mask.flatten(1).any(1), out, math.nan)
    return out


def mse(sr: ArrayLike, hr: ArrayLike, *, mask: ArrayLike | None = None) -> Tensor:
    """Mean squared error ``mean((sr - hr)**2)`` in squared physical units; ``(B,)``.

    Args:
        sr: super-resolved image, ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``.
        hr: ground truth of the same shape.
        mask: optional boolean region; only its pixels are averaged.
    """
    x, y, m = prepare(sr, hr, mask)
    return masked_mean((x - y) ** 2, m)


def mae(sr: ArrayLike, hr: ArrayLike, *, mask: ArrayLike | None = None) -> Tensor:
    """Mean absolute error ``mean(|sr - hr|)`` in physical units; ``(B,)``.

    Shapes and ``mask`` as in :func:`mse`.
    """
    x, y, m = prepare(sr, hr, mask)
    return masked_mean((x - y).abs(), m)


def psnr(
    sr: ArrayLike, hr: ArrayLike, *, data_range: DataRange, mask: ArrayLike | None = None
) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(data_range**2 / MSE)`` in dB; ``(B,)``.

    Identical images give ``+inf``. Shapes and ``mask`` as in :func:`mse`; ``data_range``
    is the width of the value range (e.g. 255 for 8-bit images, 4095 for a CT window of
    -1024..3071 HU), or a ``(low, high)`` pair.
    """
    width = data_range_width(data_range)
    err = mse(sr, hr, mask=mask)
    return 10.0 * torch.log10(width**2 / err)


def nrmse_mean(sr: ArrayLike, hr: ArrayLike, *, mask: ArrayLike | None = None) -> Tensor:
    """RMSE divided by the mean of the ground truth (in the region): ``RMSE / mean(hr)``.

    The NRMSE of the BraTS Real-ESRGAN work and scikit-image's
    ``normalized_root_mse(normalization="mean")``. Only meaningful when the ground truth's
    mean is clearly positive (MR magnitude, grey levels); for z-scored data or CT in HU the
    mean can be near zero or negative, and so can the result. Shapes and ``mask`` as in
    :func:`mse`; ``(B,)``.
    """
    x, y, m = prepare(sr, hr, mask)
    return masked_mean((x - y) ** 2, m).sqrt() / masked_mean(y, m)


def nrmse_range(sr: ArrayLike, hr: ArrayLike, *, mask: ArrayLike | None = None) -> Tensor:
    """RMSE divided by the ground truth's own range (in the region): ``RMSE / (max - min)``.

    scikit-image's ``normalized_root_mse(normalization="min-max")``. This is the range of
    the ground-truth values, not ``data_range`` (``RMSE / data_range`` would carry the same
    information as PSNR). Shapes and ``mask`` as in :func:`mse`; ``(B,)``.
    """
    x, y, m = prepare(sr, hr, mask)
    spread = _masked_extreme(y, m, largest=True) - _masked_extreme(y, m, largest=False)
    return masked_mean((x - y) ** 2, m).sqrt() / spread


def nrmse_euclidean(sr: ArrayLike, hr: ArrayLike, *, mask: ArrayLike | None = None) -> Tensor:
    """RMSE divided by the ground truth's root mean square: ``||sr - hr|| / ||hr||``.

    scikit-image's default ``normalized_root_mse(normalization="euclidean")``. Shapes and
    ``mask`` as in :func:`mse`; ``(B,)``.
    """
    x, y, m = prepare(sr, hr, mask)
    return masked_mean((x - y) ** 2, m).sqrt() / masked_mean(y**2, m).sqrt()
