"""The name table of metrics, ``METRICS``, and :func:`compute_metrics` to loop over it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import (
    ArrayLike,
    DataRange,
    as_batch,
    as_mask,
    crop_border,
    mae,
    mse,
    nrmse_euclidean,
    nrmse_mean,
    nrmse_range,
    psnr,
)
from medsr.metrics.gradient import GMSD_MIN_SIZE, gmsd
from medsr.metrics.lpips import LPIPS_MIN_SIZE, lpips, lpips_available
from medsr.metrics.ssim import SSIM_WINDOW, ms_ssim, ms_ssim_min_size, ssim
from medsr.metrics.vif import VIF_MIN_SIZE, vif

__all__ = ["DEFAULT_METRICS", "METRICS", "MetricSpec", "check_names", "compute_metrics"]


@dataclass(frozen=True)
class MetricSpec:
    """What the evaluation code needs to know about one metric.

    Attributes:
        fn: the metric function, ``fn(sr, hr, *, [data_range], [mask]) -> Tensor[B]``.
        higher_is_better: direction of "better" (for bold-best tables).
        needs_data_range: whether ``fn`` takes the ``data_range`` keyword.
        supports_mask: whether ``fn`` takes the ``mask`` keyword.
        min_size: smallest image height and width ``fn`` accepts.
        unit: unit of the value ("dB", "intensity", "intensity^2", or "" for ratios).
        description: one line for tables and help texts.
        availability: returns why the metric cannot run here, or ``None`` when it can
            (only LPIPS has one: its weights may be absent).
    """

    fn: Callable[..., Tensor]
    higher_is_better: bool
    needs_data_range: bool
    supports_mask: bool = True
    min_size: int = 1
    unit: str = ""
    description: str = ""
    availability: Callable[[], str | None] | None = None

    def unavailable_reason(self) -> str | None:
        """Why this metric cannot run on this machine, or ``None`` when it can."""
        return None if self.availability is None else self.availability()

    def __call__(
        self,
        sr: ArrayLike,
        hr: ArrayLike,
        *,
        data_range: DataRange | None = None,
        mask: ArrayLike | None = None,
    ) -> Tensor:
        """Call ``fn`` with the keywords it takes; ``(B,)``.

        ``data_range`` is required when :attr:`needs_data_range` (and ignored otherwise);
        a ``mask`` for a metric without mask support raises :class:`ConfigError`.
        """
        kwargs: dict[str, object] = {}
        if self.needs_data_range:
            if data_range is None:
                raise ConfigError(f"{self.fn.__name__} needs an explicit data_range")
            kwargs["data_range"] = data_range
        if mask is not None:
            if not self.supports_mask:
                raise ConfigError(f"{self.fn.__name__} does not support a mask")
            kwargs["mask"] = mask
        return self.fn(sr, hr, **kwargs)


def _lpips_reason() -> str | None:
    status = lpips_available()
    return None if status.available else status.reason


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec(psnr, True, True, unit="dB", description="peak signal-to-noise ratio"),
    "ssim": MetricSpec(
        ssim, True, True, min_size=SSIM_WINDOW, description="SSIM, Gaussian 11x11, valid region"
    ),
    "ms_ssim": MetricSpec(
        ms_ssim, True, True, min_size=ms_ssim_min_size(), description="multi-scale SSIM, 5 scales"
    ),
    "mse": MetricSpec(mse, False, False, unit="intensity^2", description="mean squared error"),
    "mae": MetricSpec(mae, False, False, unit="intensity", description="mean absolute error"),
    "nrmse_mean": MetricSpec(
        nrmse_mean, False, False, description="RMSE / mean of ground truth (BraTS work)"
    ),
    "nrmse_range": MetricSpec(
        nrmse_range, False, False, description="RMSE / (max - min) of ground truth"
    ),
    "nrmse_euclidean": MetricSpec(
        nrmse_euclidean, False, False, description="RMSE / RMS of ground truth (skimage default)"
    ),
    "vif": MetricSpec(
        vif, True, True, min_size=VIF_MIN_SIZE, description="visual information fidelity, pixel"
    ),
    "gmsd": MetricSpec(
        gmsd, False, True, min_size=GMSD_MIN_SIZE, description="gradient magnitude sim. deviation"
    ),
    "lpips": MetricSpec(
        lpips,
        False,
        True,
        supports_mask=False,
        min_size=LPIPS_MIN_SIZE,
        description="LPIPS (AlexNet), local weights only",
        availability=_lpips_reason,
    ),
}

# everything that needs no optional weights; LPIPS is added by name where wanted
DEFAULT_METRICS: tuple[str, ...] = tuple(name for name in METRICS if name != "lpips")


def check_names(names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a name that is not in :data:`METRICS`."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")


def compute_metrics(
    sr: ArrayLike,
    hr: ArrayLike,
    *,
    data_range: DataRange,
    metrics: Sequence[str] = DEFAULT_METRICS,
    mask: ArrayLike | None = None,
    border: int = 0,
) -> dict[str, Tensor]:
    """Every named metric of ``sr`` against ``hr``: ``{name: Tensor[B]}``.

    Args:
        sr, hr: ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``, tensors or numpy arrays.
        data_range: width of the value range (or ``(low, high)``), passed to the metrics
            that need it.
        metrics: names from :data:`METRICS` (default :data:`DEFAULT_METRICS`).
        mask: optional boolean region, passed to every metric (all must support masks).
        border: pixels cropped from each side of images and mask first.

    A metric whose :meth:`MetricSpec.unavailable_reason` is not ``None`` or whose
    ``min_size`` the image does not reach raises :class:`ConfigError`; check those first
    to skip it instead.
    """
    check_names(metrics)
    x = as_batch(sr, name="sr")
    m = None if mask is None else crop_border(as_mask(mask, x.shape), border)
    x = crop_border(x, border)
    y = crop_border(as_batch(hr, name="hr"), border)
    out: dict[str, Tensor] = {}
    for name in metrics:
        spec = METRICS[name]
        reason = spec.unavailable_reason()
        if reason is not None:
            raise ConfigError(f"metric {name!r} cannot run: {reason}")
        out[name] = spec(x, y, data_range=data_range, mask=m)
    return out
