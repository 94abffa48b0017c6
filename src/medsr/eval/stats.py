"""Summary statistics and paired tests for per-image results.

* :func:`describe`: mean, sample standard deviation (``ddof=1``) and count of the finite
  values. Non-finite values (a PSNR of ``+inf`` for an image reproduced exactly, NaN for a
  metric that could not be computed) are left out and counted apart.
* :func:`paired_wilcoxon`: the Wilcoxon signed-rank test of two methods on the same images
  (scipy), two-sided, zero differences dropped (Wilcoxon's convention). Pairs where either
  value is not finite are dropped. No correction for multiple comparisons is applied.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Description", "WilcoxonResult", "describe", "paired_wilcoxon"]


@dataclass(frozen=True)
class Description:
    """``mean`` and ``std`` (``ddof=1``; NaN for fewer than 2 values) of ``n`` finite values;
    ``non_finite`` values were left out."""

    mean: float
    std: float
    n: int
    non_finite: int = 0


def describe(values: Sequence[float] | np.ndarray) -> Description:
    """Mean, sample standard deviation and count of the finite ``values``."""
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = x[np.isfinite(x)]
    n = int(finite.size)
    mean = float(finite.mean()) if n else math.nan
    std = float(finite.std(ddof=1)) if n >= 2 else math.nan
    return Description(mean, std, n, int(x.size - n))


@dataclass(frozen=True)
class WilcoxonResult:
    """Paired Wilcoxon signed-rank test of ``x`` against ``y``.

    ``n``: pairs with both values finite; ``n_nonzero``: those with a non-zero difference
    (the ones the test ranks). ``median_difference``: median of ``x - y`` over the ``n``
    pairs. ``p_value`` is 1 when every difference is zero and NaN without any pair.
    """

    statistic: float
    p_value: float
    n: int
    n_nonzero: int
    median_difference: float


def paired_wilcoxon(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
) -> WilcoxonResult:
    """Two-sided Wilcoxon signed-rank test of paired samples ``x`` and ``y`` (same order)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    b = np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need the same length, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    if n == 0:
        return WilcoxonResult(math.nan, math.nan, 0, 0, math.nan)
    nonzero = int(np.count_nonzero(d))
    median = float(np.median(d))
    if nonzero == 0:
        return WilcoxonResult(0.0, 1.0, n, 0, median)
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        # scipy warns about normal approximations with ties or few samples; the p-value is
        # still the documented one
        warnings.simplefilter("ignore")
        result = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return WilcoxonResult(float(result.statistic), float(result.pvalue), n, nonzero, median)
