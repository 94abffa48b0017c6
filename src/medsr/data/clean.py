"""Cleaning and in-plane geometry for ``medsr prepare``: crop, pad, resize, blank and
duplicate slices, per-slice statistics.

In-plane transforms are applied to every slice of a volume in this order, and recorded in
the manifest (:class:`PlaneTransform`) so that a stored pixel can always be traced back to
the source pixel it came from:

1. **crop** (optional, ``crop_border``): to the bounding box of the volume's foreground
   (union over its slices) plus a margin, which removes large black borders;
2. **pad** (optional): centred, up to ``pad_to`` pixels per axis (never shrinks) or to the
   next multiple of ``pad_multiple``, with the volume's minimum, which every normaliser maps
   to 0 (zero in physical units would be water in CT, not background);
3. **resize** (optional): to ``(height, width)`` with antialiased bicubic interpolation,
   clipped to the volume's value range (bicubic overshoots); masks use antialiased bilinear
   interpolation thresholded at 0.5.

Stored pixel ``(r, c)`` (centre) sits at the source pixel coordinates::

    r_src = (r + 0.5) * (crop_height + pad_top + pad_bottom) / height - 0.5 - pad_top + crop_top
    c_src = (c + 0.5) * (crop_width + pad_left + pad_right) / width - 0.5 - pad_left + crop_left

(see :meth:`PlaneTransform.to_source`), and the stored spacing is the source spacing times
the resize factor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from medsr.errors import ConfigError


@dataclass(frozen=True)
class PlaneTransform:
    """Crop box (source pixels), padding and final size of every slice of one volume."""

    source_height: int
    source_width: int
    crop_top: int
    crop_left: int
    crop_height: int
    crop_width: int
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    height: int = 0
    width: int = 0

    def __post_init__(self) -> None:
        if self.height == 0:
            object.__setattr__(self, "height", self.padded_shape[0])
        if self.width == 0:
            object.__setattr__(self, "width", self.padded_shape[1])

    @classmethod
    def identity(cls, height: int, width: int) -> PlaneTransform:
        return cls(height, width, 0, 0, height, width)

    @property
    def cropped(self) -> bool:
        return (self.crop_height, self.crop_width) != (self.source_height, self.source_width)

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (
            self.crop_height + self.pad_top + self.pad_bottom,
            self.crop_width + self.pad_left + self.pad_right,
        )

    @property
    def padded(self) -> bool:
        return any((self.pad_top, self.pad_bottom, self.pad_left, self.pad_right))

    @property
    def resized(self) -> bool:
        return (self.height, self.width) != self.padded_shape

    def spacing(self, spacing_y: float, spacing_x: float) -> tuple[float, float]:
        """In-plane spacing (mm) of the stored slice, from the source spacing."""
        ph, pw = self.padded_shape
        return spacing_y * ph / self.height, spacing_x * pw / self.width

    def to_source(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source pixel coordinates of stored pixel centres ``(rows, cols)``."""
        ph, pw = self.padded_shape
        r = (np.asarray(rows, float) + 0.5) * ph / self.height - 0.5 - self.pad_top
        c = (np.asarray(cols, float) + 0.5) * pw / self.width - 0.5 - self.pad_left
        return r + self.crop_top, c + self.crop_left

    def apply(self, volume: np.ndarray, *, fill: float, mask: bool = False) -> np.ndarray:
        """Transform ``(N, H, W)`` slices; ``mask`` for boolean masks (filled with False)."""
        out = volume[
            :,
            self.crop_top : self.crop_top + self.crop_height,
            self.crop_left : self.crop_left + self.crop_width,
        ]
        if self.padded:
            widths = ((0, 0), (self.pad_top, self.pad_bottom), (self.pad_left, self.pad_right))
            out = np.pad(out, widths, mode="constant", constant_values=False if mask else fill)
        if self.resized:
            out = _resize(out, (self.height, self.width), mask=mask)
        return np.ascontiguousarray(out)


def _resize(volume: np.ndarray, size: tuple[int, int], *, mask: bool) -> np.ndarray:
    # torch only here (antialiased bicubic), so that preparing without --resize and the CLI's
    # parser do not pay its import time.
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.asarray(volume, dtype=np.float32))[:, None]
    mode = "bilinear" if mask else "bicubic"
    out = F.interpolate(t, size=size, mode=mode, antialias=True, align_corners=False)[:, 0]
    if mask:
        return (out > 0.5).numpy()
    low, high = float(volume.min()), float(volume.max())
    return out.clamp_(low, high).numpy()


def plan_transform(
    foreground: np.ndarray,
    *,
    crop_border: bool = False,
    crop_margin: int = 8,
    pad_to: int | None = None,
    pad_multiple: int | None = None,
    resize: tuple[int, int] | None = None,
) -> PlaneTransform:
    """The transform for a volume whose foreground is ``foreground``: ``(H, W)`` (the union over
    its slices) or ``(N, H, W)`` per slice."""
    if pad_to is not None and pad_multiple is not None:
        raise ConfigError("give either pad_to or pad_multiple, not both")
    for name, value in (("pad_to", pad_to), ("pad_multiple", pad_multiple)):
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive number of pixels, got {value}")
    if crop_margin < 0:
        raise ConfigError(f"crop_margin must be >= 0 pixels, got {crop_margin}")
    if resize is not None and (len(resize) != 2 or min(resize) < 1):
        raise ConfigError(f"resize needs two positive sizes (height, width), got {resize}")
    any_fg = foreground.any(axis=0) if foreground.ndim == 3 else foreground
    h, w = any_fg.shape
    top, left, ch, cw = 0, 0, h, w
    if crop_border:
        rows, cols = np.flatnonzero(any_fg.any(axis=1)), np.flatnonzero(any_fg.any(axis=0))
        if rows.size:
            top = max(0, int(rows[0]) - crop_margin)
            left = max(0, int(cols[0]) - crop_margin)
            ch = min(h, int(rows[-1]) + 1 + crop_margin) - top
            cw = min(w, int(cols[-1]) + 1 + crop_margin) - left
    pads = []
    for n in (ch, cw):
        if pad_to is not None:
            target = max(n, pad_to)
        elif pad_multiple is not None:
            target = -(-n // pad_multiple) * pad_multiple
        else:
            target = n
        extra = target - n
        pads += [extra // 2, extra - extra // 2]
    height, width = (int(resize[0]), int(resize[1])) if resize is not None else (0, 0)
    return PlaneTransform(h, w, top, left, ch, cw, *pads, height, width)


# -- per-slice facts ----------------------------------------------------------------------------
PERCENTILES = (1.0, 50.0, 99.0)


def slice_statistics(volume: np.ndarray) -> dict[str, np.ndarray]:
    """Per-slice ``min, max, mean, std, p01, p50, p99`` of ``(N, H, W)`` (physical units)."""
    flat = np.asarray(volume, dtype=np.float64).reshape(volume.shape[0], -1)
    p = np.percentile(flat, PERCENTILES, axis=1)
    return {
        "min": flat.min(axis=1),
        "max": flat.max(axis=1),
        "mean": flat.mean(axis=1),
        "std": flat.std(axis=1),
        "p01": p[0],
        "p50": p[1],
        "p99": p[2],
    }


@dataclass(frozen=True)
class SliceFacts:
    """Per-slice facts of a volume ``(N, H, W)``: ``stats`` (see :func:`slice_statistics`,
    physical units), ``foreground`` (fraction of pixels whose normalised value is above the
    threshold), ``unit_std`` (standard deviation of the normalised slice) and ``union``
    ``(H, W)``: the pixels that are foreground in any slice (for cropping)."""

    stats: dict[str, np.ndarray]
    foreground: np.ndarray
    unit_std: np.ndarray
    union: np.ndarray


def slice_facts(
    volume: np.ndarray,
    forward: Callable[[np.ndarray], np.ndarray],
    threshold: float,
    *,
    chunk_pixels: int = 2**22,
) -> SliceFacts:
    """:class:`SliceFacts` of ``volume`` with the normaliser's ``forward``, about
    ``chunk_pixels`` pixels at a time so that large volumes need little extra memory."""
    n = len(volume)
    step = max(1, chunk_pixels // max(1, volume[0].size))
    parts: list[dict[str, np.ndarray]] = []
    foreground, unit_std = np.empty(n), np.empty(n)
    union = np.zeros(volume.shape[1:], bool)
    for start in range(0, n, step):
        chunk = volume[start : start + step]
        unit = np.asarray(forward(chunk), dtype=np.float32)
        above = unit > threshold
        foreground[start : start + len(chunk)] = above.reshape(len(chunk), -1).mean(axis=1)
        unit_std[start : start + len(chunk)] = unit.reshape(len(chunk), -1).std(axis=1)
        union |= above.any(axis=0)
        parts.append(slice_statistics(chunk))
    stats = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    return SliceFacts(stats=stats, foreground=foreground, unit_std=unit_std, union=union)


def content_hash(slice_: np.ndarray) -> str:
    """32 hex digits of BLAKE2b over the slice's dtype, shape and bytes (exact duplicates)."""
    a = np.ascontiguousarray(slice_)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def store_dtype(volume: np.ndarray) -> np.dtype:
    """The smallest integer dtype holding ``volume`` exactly when its values are integers,
    else float32 (so stored slices keep physical units without growing on disk)."""
    finite = np.isfinite(volume)
    if finite.all() and np.array_equal(volume, np.round(volume)):
        low, high = float(volume.min()), float(volume.max())
        for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.dtype(dtype)
    return np.dtype(np.float32)


__all__ = [
    "PERCENTILES",
    "PlaneTransform",
    "SliceFacts",
    "content_hash",
    "plan_transform",
    "slice_facts",
    "slice_statistics",
    "store_dtype",
]
