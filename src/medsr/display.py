"""Display windows: physical pixel values to 8-bit grey, and MR window presets.

Display only: nothing here changes pixel values that are computed on, saved or scored. Used
by the web app (the PNG download, the MR presets of the comparison view) and the reader
study (its PNGs), so that both show a window the same way. numpy only.

MR presets. MR intensities have no physical unit (they depend on the scanner, the coil and
the sequence), so a fixed centre/width like CT's is meaningless across scanners: vendors ship
absolute MR presets for their own scale (e.g. T1 300/700, T2 155/475) and, besides those,
*dynamic* presets computed from the image's histogram. :data:`MR_PRESETS` are dynamic ones:
percentiles of the image's *foreground* (the voxels above the robust threshold of FSL's brain
extraction tool, ``p2 + 0.1 (p98 - p2)``, so that the air around the body, often half the
volume, does not pull the window down, while dark tissue still counts):

* ``brain``: 1st-98th: the brain's grey/white contrast over most of the grey range; bright
  vessels, enhancement and fat (the top 2 %) saturate;
* ``spine``: 0.5th-99.5th: wider, so that bright CSF and fat (T2) and marrow keep detail;
* ``soft-tissue``: 5th-95th: narrower, for contrast within muscle and organs.
"""

from __future__ import annotations

import math

import numpy as np

from medsr.errors import ConfigError

__all__ = ["MR_PRESETS", "Window", "check_window", "foreground_mask", "mr_windows", "to_uint8"]

Window = tuple[float, float]
"""``(low, high)`` in the image's units: ``low`` shows black, ``high`` white."""

MR_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (1.0, 98.0),
    "spine": (0.5, 99.5),
    "soft-tissue": (5.0, 95.0),
}
"""MR preset name -> (low, high) percentiles of the foreground (see the module docstring)."""

# Enough voxels for stable percentiles; a larger image is subsampled evenly (cheap on 10^7+).
_SAMPLE = 2_000_000


def check_window(window: object, where: str) -> Window:
    """``window`` as ``(low, high)`` floats; :class:`ConfigError` unless finite and low < high."""
    try:
        low, high = (float(v) for v in window)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: a window is (low, high), got {window!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"{where}: window needs finite low < high, got ({low}, {high})")
    return low, high


def to_uint8(array: np.ndarray, *, window: Window) -> np.ndarray:
    """Map ``array`` (H, W) linearly so that ``window`` spans 0..255, clipping outside it.

    NaN pixels become 0 (black).
    """
    low, high = check_window(window, "to_uint8")
    values = np.asarray(array, dtype=np.float64)
    scaled = (values - low) * (255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
    return np.rint(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def _sample(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array, dtype=np.float32).ravel()
    if values.size > _SAMPLE:
        values = values[:: values.size // _SAMPLE + 1]
    return values[np.isfinite(values)]


def foreground_mask(values: np.ndarray) -> np.ndarray:
    """The voxels of ``values`` (1-D, finite) above BET's robust threshold
    ``p2 + 0.1 * (p98 - p2)`` (Smith, Hum. Brain Mapp. 2002): low enough to keep dark tissue,
    high enough to drop the air around the body; all of them when that leaves fewer than 1%
    (an image without background)."""
    if values.size == 0 or values.min() == values.max():
        return np.ones(values.shape, bool)
    p2, p98 = np.percentile(values, [2, 98])
    mask = values > p2 + 0.1 * (p98 - p2)
    return mask if mask.sum() >= 0.01 * values.size else np.ones(values.shape, bool)


def mr_windows(array: np.ndarray) -> dict[str, list[float]]:
    """Each of :data:`MR_PRESETS` as a ``[low, high]`` window for ``array`` (any shape; RGB
    is treated as its values). Empty when the image has no finite value; a window with no
    width gets width 1 around its value."""
    values = _sample(array)
    if values.size == 0:
        return {}
    fg = values[foreground_mask(values)]
    windows: dict[str, list[float]] = {}
    for name, (p_low, p_high) in MR_PRESETS.items():
        low, high = (float(v) for v in np.percentile(fg, [p_low, p_high]))
        if not high > low:
            low, high = low - 0.5, low + 0.5
        windows[name] = [low, high]
    return windows
