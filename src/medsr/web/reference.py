"""Scores against a high-resolution reference for the comparison view: PSNR and SSIM of SR
and of bicubic, over the whole output and inside/outside a region drawn on one slice.

Pure functions on arrays (the job manager stores and loads them). The metrics are
:mod:`medsr.metrics` (``psnr``, ``ssim``, ``region_metrics``, as the region scores of the
seed reproductions), in the reference's physical units with ``data_range`` = the reference's
value range (max - min over the whole reference), so SR and bicubic are scored alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medsr.errors import ConfigError

__all__ = ["REFERENCE_METRICS", "check_reference", "polygon_mask", "region_scores", "scores"]

REFERENCE_METRICS = ("psnr", "ssim")
"""What the page shows: PSNR (dB, from the mean squared error over all voxels) and SSIM
(Gaussian 11x11 window, mean over the in-plane slices of a volume)."""


def check_reference(reference: np.ndarray, output_shape: Sequence[int], color: bool) -> None:
    """Raise :class:`ConfigError` unless ``reference`` lies on the output grid (same shape as
    the SR output) and is grey; the message names both shapes."""
    if color or reference.ndim != len(output_shape):
        kind = "colour" if color else f"{reference.ndim}D"
        raise ConfigError(
            f"the reference has shape {_shape(reference.shape)} ({kind}) but the SR output "
            f"has shape {_shape(output_shape)}: a reference must be a grey image on the "
            "output grid"
        )
    if tuple(reference.shape) != tuple(output_shape):
        raise ConfigError(
            f"the reference has shape {_shape(reference.shape)} but the SR output has shape "
            f"{_shape(output_shape)}: upload a reference on the output grid (the same number "
            "of slices, rows and columns)"
        )


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(int(n)) for n in shape)


def data_range(reference: np.ndarray) -> float:
    """The reference's value range (max - min), at least a tiny positive number."""
    finite = reference[np.isfinite(reference)]
    if finite.size == 0:
        raise ConfigError("the reference has no finite value")
    return max(float(finite.max() - finite.min()), 1e-12)


def _planes(array: np.ndarray) -> np.ndarray:
    """(Y, X) or (Z, Y, X) as (B, 1, H, W) for the metrics."""
    a = np.asarray(array, dtype=np.float32)
    return a[None, None] if a.ndim == 2 else a[:, None]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None  # JSON has no NaN or infinity


def scores(image: np.ndarray, reference: np.ndarray, width: float) -> dict[str, float | None]:
    """PSNR (dB) and SSIM of ``image`` against ``reference`` (same shape) with data range
    ``width``; a volume's SSIM is the mean over its slices (None: not computable, e.g.
    identical images for PSNR, or a slice under 11x11 for SSIM)."""
    from medsr.metrics import mse, ssim

    x, y = _planes(image), _planes(reference)
    err = float(mse(x.reshape(1, 1, -1, x.shape[-1]), y.reshape(1, 1, -1, y.shape[-1]))[0])
    psnr = math.inf if err == 0 else 10.0 * math.log10(width**2 / err)
    try:
        s = float(ssim(x, y, data_range=width).mean())
    except ConfigError:
        s = math.nan
    return {"psnr": _finite(psnr), "ssim": _finite(s)}


def polygon_mask(shape: tuple[int, int], points: Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of the pixels whose centre lies inside the polygon ``points``
    ((x, y) in pixel units of that grid: x along columns, y along rows, pixel ``(r, c)``
    covering ``[c, c + 1] x [r, r + 1]``; even-odd rule). A rectangle is four points; at
    least 3 points, all finite."""
    if len(points) < 3:
        raise ConfigError(f"a region needs at least 3 points, got {len(points)}")
    for point in points:
        if len(point) != 2 or not all(math.isfinite(float(v)) for v in point):
            raise ConfigError(f"a region point is (x, y) with finite numbers, got {point!r}")
    px = np.array([float(p[0]) for p in points])
    py = np.array([float(p[1]) for p in points])
    h, w = shape
    cx, cy = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    inside = np.zeros((h, w), dtype=bool)
    for i in range(len(px)):
        x0, y0, x1, y1 = px[i - 1], py[i - 1], px[i], py[i]
        if y0 == y1:
            continue  # a horizontal edge crosses no horizontal ray
        spans = (y0 > cy) != (y1 > cy)
        crossing = x0 + (cy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= spans & (cx < crossing)
    return inside


def region_scores(
    views: dict[str, np.ndarray], reference: np.ndarray, mask: np.ndarray, width: float
) -> dict[str, Any]:
    """PSNR and SSIM inside and outside ``mask`` for each of ``views`` (name -> one slice
    ``(H, W)``) against the reference slice; ``{name: {metric: {inside, outside}}}``, plus
    ``pixels`` (inside) and ``notes`` (why a value is missing)."""
    from medsr.metrics import region_metrics

    result: dict[str, Any] = {"pixels": int(mask.sum()), "notes": []}
    for name, array in views.items():
        values = region_metrics(
            np.asarray(array, np.float32),
            np.asarray(reference, np.float32),
            mask=mask,
            data_range=width,
            metrics=REFERENCE_METRICS,
        )
        result[name] = {
            metric: {
                "inside": _finite(float(v.inside[0])),
                "outside": _finite(float(v.outside[0])),
            }
            for metric, v in values.items()
        }
        for v in values.values():
            if v.note and v.note not in result["notes"]:
                result["notes"].append(v.note)
    return result
