"""Patch sampling, augmentation and 2.5D neighbour stacking, with explicit randomness.

Nothing here reads a global random state: every random choice draws from a
``torch.Generator`` passed in, usually :func:`item_generator` of ``(seed, epoch, index)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from medsr.errors import ConfigError

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


# -- 2.5D ----------------------------------------------------------------------------------------
def neighbour_indices(index: int, k: int, n: int) -> list[int]:
    """``index - k .. index + k`` clamped to ``0 .. n - 1`` (edge slices are replicated)."""
    if k < 0:
        raise ConfigError(f"the number of neighbours on each side must be >= 0, got {k}")
    if not 0 <= index < n:
        raise IndexError(f"slice {index} outside a volume of {n} slices")
    return [min(max(j, 0), n - 1) for j in range(index - k, index + k + 1)]


def stack_neighbours(
    volume: ArrayT,
    index: int,
    k: int,
    *,
    window: tuple[slice, slice] | None = None,
) -> ArrayT:
    """Slice ``index`` of ``volume`` ``(N, H, W)`` with ``k`` neighbours on each side stacked as
    channels: ``(2k + 1, H, W)``, the centre slice at channel ``k``; slices beyond the ends
    repeat the first or last slice. ``window`` (row and column slices) reads only that region,
    which keeps reads from a memory-mapped store small. Works for numpy arrays (including
    memory maps) and torch tensors; the result is a copy.
    """
    rows, cols = window if window is not None else (slice(None), slice(None))
    planes = [volume[j, rows, cols] for j in neighbour_indices(index, k, len(volume))]
    if isinstance(volume, torch.Tensor):
        return torch.stack(planes)
    return np.stack(planes)


# -- randomness ----------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of the SplitMix64 mixer: nearby inputs give unrelated 64-bit outputs."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample, mixed from ``(seed, epoch, index)`` with SplitMix64 (so
    nearby triples give unrelated streams; cheap enough to call for every sample)."""
    mixed = _splitmix64(_splitmix64(_splitmix64(int(seed) & _MASK64) ^ int(epoch)) ^ int(index))
    return mixed & ((1 << 63) - 1)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator every random choice of sample ``index`` in ``epoch`` draws from."""
    return torch.Generator().manual_seed(item_seed(seed, epoch, index))


# -- patch positions ------------------------------------------------------------------------------
def random_origin(shape: tuple[int, int], size: int, g: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed ``size`` x ``size`` patch in ``shape`` (a slice
    smaller than the patch gives 0 along that axis: the caller pads)."""
    return _origins(shape, size, torch.rand(1, 2, generator=g))[0]


def _origins(shape: tuple[int, int], size: int, u: torch.Tensor) -> list[tuple[int, int]]:
    """Patch corners from uniform numbers ``u`` ``(n, 2)`` in [0, 1)."""
    spans = (max(shape[0] - size, 0) + 1, max(shape[1] - size, 0) + 1)
    return [
        (min(int(a * spans[0]), spans[0] - 1), min(int(b * spans[1]), spans[1] - 1))
        for a, b in u.tolist()
    ]


def foreground_origin(
    shape: tuple[int, int],
    size: int,
    foreground: Callable[[int, int], float],
    g: torch.Generator,
    *,
    min_fraction: float = 0.5,
    tries: int = 5,
) -> tuple[int, int]:
    """A patch position biased towards the foreground.

    ``tries`` uniform positions are drawn (in one draw from ``g``, whatever happens next);
    the first whose ``foreground(top, left)`` (the fraction of foreground pixels of that
    patch) reaches ``min_fraction`` is taken, else the one with the most foreground.
    ``tries=1`` is uniform sampling.
    """
    if tries < 1:
        raise ConfigError(f"foreground tries must be >= 1, got {tries}")
    candidates = _origins(shape, size, torch.rand(tries, 2, generator=g))
    if tries == 1:
        return candidates[0]
    best, best_fraction = candidates[0], -1.0
    for origin in candidates:
        fraction = foreground(*origin)
        if fraction >= min_fraction:
            return origin
        if fraction > best_fraction:
            best, best_fraction = origin, fraction
    return best


# -- augmentation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flip:
    """Vertical flip, horizontal flip, then ``rot90`` quarter turns (counter-clockwise)."""

    vertical: bool = False
    horizontal: bool = False
    quarter_turns: int = 0

    @classmethod
    def draw(cls, g: torch.Generator) -> Flip:
        """One of the 8 symmetries of the square, uniformly (each arises from 2 of the 16 draws)."""
        bits = int(torch.randint(0, 16, (1,), generator=g))
        return cls(vertical=bool(bits & 1), horizontal=bool(bits & 2), quarter_turns=bits >> 2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``(..., H, W)``; rotations by a quarter turn need ``H == W``."""
        if self.vertical:
            x = x.flip(-2)
        if self.horizontal:
            x = x.flip(-1)
        if self.quarter_turns:
            x = torch.rot90(x, self.quarter_turns, dims=(-2, -1))
        return x


__all__ = [
    "Flip",
    "foreground_origin",
    "item_generator",
    "item_seed",
    "neighbour_indices",
    "random_origin",
    "stack_neighbours",
]
