"""Image quality metrics in physical units: ``psnr(sr, hr, *, data_range, mask=None)``.

Every metric is a pure function of ``sr`` and ``hr`` (torch tensors or numpy arrays,
``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``) returning a float64 tensor ``(B,)``, one
value per image. ``data_range`` is explicit wherever a metric needs it; ``mask`` restricts
a metric to a region. :data:`METRICS` is the name table that evaluation code loops over;
:func:`region_metrics` scores inside and outside a region; :func:`consistency_psnr`
checks the SR output against its LR input. See ``docs/metrics.md``.
"""

from __future__ import annotations

from medsr.metrics.core import (
    crop_border,
    data_range_width,
    mae,
    mse,
    nrmse_euclidean,
    nrmse_mean,
    nrmse_range,
    psnr,
)
from medsr.metrics.fidelity import consistency_psnr
from medsr.metrics.gradient import gmsd
from medsr.metrics.lpips import LpipsAvailability, lpips, lpips_available
from medsr.metrics.roi import (
    DEFAULT_REGION_METRICS,
    RegionValues,
    mask_from_labels,
    region_columns,
    region_metrics,
    threshold_mask,
)
from medsr.metrics.ssim import MS_SSIM_WEIGHTS, ms_ssim, ms_ssim_min_size, ssim, ssim_map
from medsr.metrics.table import DEFAULT_METRICS, METRICS, MetricSpec, compute_metrics
from medsr.metrics.vif import vif

__all__ = [
    "DEFAULT_METRICS",
    "DEFAULT_REGION_METRICS",
    "METRICS",
    "MS_SSIM_WEIGHTS",
    "LpipsAvailability",
    "MetricSpec",
    "RegionValues",
    "compute_metrics",
    "consistency_psnr",
    "crop_border",
    "data_range_width",
    "gmsd",
    "lpips",
    "lpips_available",
    "mae",
    "mask_from_labels",
    "ms_ssim",
    "ms_ssim_min_size",
    "mse",
    "nrmse_euclidean",
    "nrmse_mean",
    "nrmse_range",
    "psnr",
    "region_columns",
    "region_metrics",
    "ssim",
    "ssim_map",
    "threshold_mask",
    "vif",
]
