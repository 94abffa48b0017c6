"""Region-of-interest metrics: every metric inside a mask, outside it, and the difference.

As in the brain tumour SRGAN/ESPCN work, which scored the tumour region and the rest of
the image separately. How each kind of metric is restricted to a region:

* PSNR, MSE, MAE and the NRMSEs use only the region's pixels (the NRMSE normalisers,
  mean, range and RMS of the ground truth, are also taken over the region).
* SSIM, MS-SSIM, VIF and GMSD compute their map on the whole image (windows may reach
  across the region's edge, so the context around the region counts) and average it over
  the map pixels whose centre lies in the region; at coarser scales the region is
  downsampled like the image and used as weights. See each metric's docstring.

Masks are boolean arrays at the resolution of ``hr`` (``(H, W)`` or ``(B, 1, H, W)``):
from a label map (NIfTI segmentation, MAT ``tumorMask``, DICOM SEG pixel data) with
:func:`mask_from_labels`, or from intensities with :func:`threshold_mask`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import ArrayLike, DataRange, as_mask, crop_border, prepare
from medsr.metrics.table import DEFAULT_METRICS, METRICS, check_names

__all__ = [
    "DEFAULT_REGION_METRICS",
    "RegionValues",
    "mask_from_labels",
    "region_columns",
    "region_metrics",
    "threshold_mask",
]

logger = logging.getLogger(__name__)

DEFAULT_REGION_METRICS: tuple[str, ...] = tuple(
    name for name in DEFAULT_METRICS if METRICS[name].supports_mask
)


def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise ConfigError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def threshold_mask(
    image: ArrayLike, *, low: float | None = None, high: float | None = None
) -> Tensor:
    """Boolean mask, same shape as ``image``, of the pixels with ``low <= value <= high``.

    Give ``low``, ``high`` or both, in the image's physical units (e.g. ``low=-500`` HU for
    the body in CT, or ``low`` just above the background of an MR image).
    """
    if low is None and high is None:
        raise ConfigError("threshold_mask needs low, high or both")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"threshold_mask needs low <= high, got low={low}, high={high}")
    t = _as_tensor(image, "image")
    out = torch.ones(t.shape, dtype=torch.bool, device=t.device)
    if low is not None:
        out &= t >= low
    if high is not None:
        out &= t <= high
    return out


def mask_from_labels(labels: ArrayLike, *, values: Sequence[int] | None = None) -> Tensor:
    """Boolean mask, same shape as ``labels``, of the pixels whose label is in ``values``.

    ``values=None`` selects every non-zero label (the whole lesion of a BraTS label map,
    the ``tumorMask`` of the figshare brain tumour data). ``values=[4]`` selects only the
    BraTS enhancing tumour, for example.

    Floating-point label maps are rounded to the nearest integer first: NIfTI masks are
    often stored as floats with a scale factor, which leaves values such as 0.99999997
    (the BraTS ``brainmask.nii.gz`` files do). Values further than 0.01 from an integer
    mean the array is not a label map, and raise :class:`ConfigError`.
    """
    t = _as_tensor(labels, "labels")
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    if t.is_floating_point():
        rounded = t.round()
        if not bool(((t - rounded).abs() <= 0.01).all()):  # NaN fails too
            raise ConfigError(
                "labels must hold whole numbers (a label map), not continuous values; "
                "use threshold_mask for intensities"
            )
        t = rounded
    if values is None:
        return t != 0
    if len(values) == 0:
        raise ConfigError("values must name at least one label")
    return torch.isin(t, torch.tensor(list(values), dtype=t.dtype, device=t.device))


@dataclass(frozen=True)
class RegionValues:
    """One metric inside and outside a region, ``(B,)`` each, and ``inside - outside``.

    ``note`` is empty when every value could be computed, else it says which image's
    value is NaN and why (an empty region, a region only within the border margin of a
    windowed metric, or an image smaller than the metric's minimum).
    """

    inside: Tensor
    outside: Tensor
    difference: Tensor
    note: str = ""


def _indices(flags: Tensor) -> list[int]:
    return [int(i) for i in torch.nonzero(flags).flatten()]


def region_metrics(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    mask: ArrayLike,
    data_range: DataRange,
    metrics: Sequence[str] = DEFAULT_REGION_METRICS,
    border: int = 0,
) -> dict[str, RegionValues]:
    """Each metric inside ``mask``, outside it, and the difference; ``{name: RegionValues}``.

    Args:
        sr, hr: ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, tensors or numpy arrays, in
            physical units.
        mask: boolean region (``(H, W)``, ``(B, 1, H, W)``, ...) broadcastable to the images.
        data_range: width of the value range (or ``(low, high)``).
        metrics: names from :data:`~medsr.metrics.METRICS` that support masks.
        border: pixels cropped from each side of images and mask before anything else.

    Never raises for an empty region or an image too small for a metric: the value is NaN
    and :attr:`RegionValues.note` says why (the note is also logged as a warning).
    """
    check_names(metrics)
    no_mask = [n for n in metrics if not METRICS[n].supports_mask]
    if no_mask:
        supported = sorted(n for n in METRICS if METRICS[n].supports_mask)
        raise ConfigError(f"metric(s) {no_mask} do not support masks; choose from {supported}")
    x, y, _ = prepare(sr, hr)
    inside = as_mask(mask, x.shape).to(x.device)
    x, y, inside = (crop_border(t, border) for t in (x, y, inside))
    outside = ~inside
    h, w = x.shape[-2:]
    nan = torch.full((x.shape[0],), math.nan, dtype=torch.float64, device=x.device)
    results: dict[str, RegionValues] = {}
    for name in metrics:
        spec = METRICS[name]
        if min(h, w) < spec.min_size:
            note = (
                f"{name}: the {h}x{w} image is smaller than the metric's minimum of "
                f"{spec.min_size}x{spec.min_size}; values are NaN"
            )
            logger.warning(note)
            results[name] = RegionValues(nan, nan, nan, note)
            continue
        v_in = spec(x, y, data_range=data_range, mask=inside)
        v_out = spec(x, y, data_range=data_range, mask=outside)
        notes = []
        for label, region, values in (("inside", inside, v_in), ("outside", outside, v_out)):
            present = region.flatten(1).any(1)
            nan_at = torch.isnan(values)
            empty = _indices(~present)
            unusable = _indices(nan_at & present)
            if empty:
                notes.append(f"{name} {label}: the region is empty in image(s) {empty}: NaN")
            if unusable:
                notes.append(
                    f"{name} {label}: NaN in image(s) {unusable}: the metric is undefined on "
                    "this region (a windowed metric whose valid windows all miss it, e.g. "
                    "within 5 pixels of the border for ssim or 80 for ms_ssim at the coarsest "
                    "scale; a constant ground truth for nrmse_range; or non-finite input)"
                )
        note = "; ".join(notes)
        if note:
            logger.warning(note)
        results[name] = RegionValues(v_in, v_out, v_in - v_out, note)
    return results


def region_columns(results: dict[str, RegionValues]) -> dict[str, Tensor]:
    """Flatten :func:`region_metrics` output to ``{"ssim_inside": ..., "ssim_outside": ...,
    "ssim_difference": ...}`` for one-row-per-image tables."""
    out: dict[str, Tensor] = {}
    for name, v in results.items():
        out[f"{name}_inside"] = v.inside
        out[f"{name}_outside"] = v.outside
        out[f"{name}_difference"] = v.difference
    return out
