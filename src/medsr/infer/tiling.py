"""Tiled inference with overlap and smooth blending, for images of any size in bounded memory.

Tiles of at most ``tile x tile`` input pixels are spaced evenly so that neighbours overlap by
at least ``overlap`` pixels (the last tile ends exactly at the image edge; nothing is padded;
all tiles of an image have the same size, so they can be batched). Along
each axis, where two tiles overlap, each drops the outer quarter of the overlap (the pixels
nearest its own cut edge, which saw zero padding instead of the image) and the two are
cross-faded with a raised cosine over the central half. The 2D weight of a tile is the outer
product of its two 1D weights, and the 1D weights are normalised to sum to 1 at every pixel,
so the blend is an exact partition of unity (no weight map is stored).

Consequence: a model whose output at a pixel depends only on inputs within ``r`` LR pixels
(its receptive-field radius) gives the *same* result tiled and untiled when
``overlap >= 4 * r`` (every weighted pixel is at least ``overlap / 4`` from a cut edge).
Deep networks (RRDBNet, RCAN) have receptive fields far larger than any practical overlap:
for them the blend hides the seams but tiled and untiled outputs differ slightly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from medsr.errors import ConfigError

__all__ = [
    "TilePlan",
    "axis_weights",
    "plan_tiles",
    "tile_layout",
    "tile_starts",
    "tiled_apply",
]


def tile_layout(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """``(size, starts)`` of the tiles along one axis of ``length`` pixels.

    The fewest tiles of at most ``tile`` pixels whose neighbours overlap by at least
    ``overlap`` pixels; the tiles are then shrunk to the smallest common size that still
    gives that overlap, and spaced evenly from the first pixel to the last (so a 512-pixel
    axis with ``tile=256, overlap=16`` gets 3 tiles of 182, not 3 of 256). One tile of
    ``length`` pixels when ``length <= tile``.
    """
    if length <= tile:
        return length, [0]
    count = max(2, math.ceil((length - overlap) / (tile - overlap)))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count))
    span = length - size
    return size, [round(k * span / (count - 1)) for k in range(count)]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start indices of the tiles of :func:`tile_layout`."""
    return tile_layout(length, tile, overlap)[1]


def _ramp(n: int, rising: bool) -> Tensor:
    """Raised-cosine ramp of ``n`` samples strictly between 0 and 1."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    ramp = 0.5 - 0.5 * torch.cos(math.pi * t)
    return ramp if rising else ramp.flip(0)


def axis_weights(starts: list[int], size: int, length: int, scale: int) -> list[Tensor]:
    """1D blending weights (float32, in output pixels) of each tile along one axis.

    ``starts`` and the tile ``size`` are in input pixels; each returned vector has
    ``size * scale`` entries and together they sum to 1 at every output pixel of the axis.
    """
    out_len = length * scale
    raw = []
    for i, start in enumerate(starts):
        w = torch.ones(size * scale, dtype=torch.float64)
        for neighbour, side in ((i - 1, "left"), (i + 1, "right")):
            if not 0 <= neighbour < len(starts):
                continue
            if side == "left":
                lo, hi = starts[i], starts[neighbour] + size  # overlap in input pixels
            else:
                lo, hi = starts[neighbour], starts[i] + size
            overlap = (hi - lo) * scale
            if overlap <= 0:
                continue
            margin = overlap // 4
            fade = overlap - 2 * margin
            offset = (lo - start) * scale  # overlap start within this tile (output pixels)
            segment = torch.zeros(overlap, dtype=torch.float64)
            if side == "left":
                segment[margin : margin + fade] = _ramp(fade, rising=True)
                segment[margin + fade :] = 1.0
            else:
                segment[:margin] = 1.0
                segment[margin : margin + fade] = _ramp(fade, rising=False)
            w[offset : offset + overlap] *= segment
        raw.append(w)
    total = torch.zeros(out_len, dtype=torch.float64)
    for start, w in zip(starts, raw, strict=True):
        total[start * scale : start * scale + w.numel()] += w
    if bool((total <= 0).any()):  # only if tiles were crowded so that fades overlap
        for start, w in zip(starts, raw, strict=True):
            region = total[start * scale : start * scale + w.numel()]
            w[region <= 0] = 1.0
        total.zero_()
        for start, w in zip(starts, raw, strict=True):
            total[start * scale : start * scale + w.numel()] += w
    return [
        (w / total[start * scale : start * scale + w.numel()]).to(torch.float32)
        for start, w in zip(starts, raw, strict=True)
    ]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of an ``(H, W)`` input go and how their outputs are blended."""

    height: int
    width: int
    scale: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    weights_y: tuple[Tensor, ...]
    weights_x: tuple[Tensor, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def single(self) -> bool:
        return self.count == 1


def plan_tiles(height: int, width: int, *, tile: int | None, overlap: int, scale: int) -> TilePlan:
    """Plan the tiles of an ``(height, width)`` input; ``tile`` None or 0 means one tile."""
    if tile is None or tile <= 0:
        tile = max(height, width)
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    if tile < max(height, width) and 2 * overlap >= tile:
        raise ConfigError(
            f"overlap {overlap} must be less than half the tile ({tile}); "
            "use a larger --tile or a smaller --overlap"
        )
    tile_h, ys = tile_layout(height, tile, overlap)
    tile_w, xs = tile_layout(width, tile, overlap)
    return TilePlan(
        height=height,
        width=width,
        scale=scale,
        tile_h=tile_h,
        tile_w=tile_w,
        ys=tuple(ys),
        xs=tuple(xs),
        weights_y=tuple(axis_weights(ys, tile_h, height, scale)),
        weights_x=tuple(axis_weights(xs, tile_w, width, scale)),
    )


def tiled_apply(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    scale: int,
    out_channels: int,
    tile: int | None,
    overlap: int,
    batch_size: int = 1,
    on_batch: Callable[[int], None] | None = None,
) -> Tensor:
    """Apply ``fn`` (``(b, C, h, w) -> (b, out_channels, s*h, s*w)``) to ``x`` ``(B, C, H, W)``
    tile by tile; returns ``(B, out_channels, s*H, s*W)`` (float32, CPU).

    Tiles of all images of the batch are run ``batch_size`` at a time (all tiles have the
    same size, so they stack). ``on_batch(n)`` is called after each model call with the
    number of tiles it processed. Memory: the output plus one batch of tiles.
    """
    if x.ndim != 4:
        raise ConfigError(f"tiled_apply expects (B, C, H, W), got shape {tuple(x.shape)}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    b, _, h, w = x.shape
    plan = plan_tiles(h, w, tile=tile, overlap=overlap, scale=scale)
    if plan.single:
        parts = []
        for i in range(0, b, batch_size):
            parts.append(fn(x[i : i + batch_size]))
            if on_batch is not None:
                on_batch(parts[-1].shape[0])
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    out = torch.zeros(b, out_channels, h * scale, w * scale, dtype=torch.float32)
    jobs = [(n, i, j) for n in range(b) for i in range(len(plan.ys)) for j in range(len(plan.xs))]
    th, tw = plan.tile_h, plan.tile_w
    for k in range(0, len(jobs), batch_size):
        chunk = jobs[k : k + batch_size]
        crops = torch.stack(
            [
                x[n, :, plan.ys[i] : plan.ys[i] + th, plan.xs[j] : plan.xs[j] + tw]
                for n, i, j in chunk
            ]
        )
        ys = fn(crops)
        for (n, i, j), y in zip(chunk, ys, strict=True):
            weight = plan.weights_y[i][:, None] * plan.weights_x[j][None, :]
            oy, ox = plan.ys[i] * scale, plan.xs[j] * scale
            out[n, :, oy : oy + th * scale, ox : ox + tw * scale].addcmul_(y, weight)
        if on_batch is not None:
            on_batch(len(chunk))
    return out
