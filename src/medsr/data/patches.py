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
def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample, mixed from ``(seed, epoch, index)`` by NumPy's SeedSequence
    (so nearby triples give unrelated streams)."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator every random choice of sample ``index`` in ``epoch`` draws from."""
    return torch.Generator().manual_seed(item_seed(seed, epoch, index))


def _randint(high: int, g: torch.Generator) -> int:
    """Uniform in ``0 .. high - 1``."""
    return int(torch.randint(high, (1,), generator=g))


# -- patch positions ------------------------------------------------------------------------------
def random_origin(shape: tuple[int, int], size: int, g: torch.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly placed ``size`` x ``size`` patch in ``shape`` (a slice
    smaller than the patch gives 0 along that axis: the caller pads)."""
    return _randint(max(shape[0] - size, 0) + 1, g), _randint(max(shape[1] - size, 0) + 1, g)


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

    Up to ``tries`` uniform positions are drawn; the first whose ``foreground(top, left)``
    (the fraction of foreground pixels of that patch) reaches ``min_fraction`` is taken, else
    the one with the most foreground. ``tries=1`` is uniform sampling. The number of draws is
    fixed per accepted try, so the result depends only on the generator.
    """
    if tries < 1:
        raise ConfigError(f"foreground tries must be >= 1, got {tries}")
    best, best_fraction = (0, 0), -1.0
    for _ in range(tries):
        origin = random_origin(shape, size, g)
        if tries == 1:
            return origin
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
        v, h = (bool(x) for x in torch.randint(0, 2, (2,), generator=g))
        return cls(vertical=v, horizontal=h, quarter_turns=_randint(4, g))

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
