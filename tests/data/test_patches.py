from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from medsr.data.patches import (
    Flip,
    foreground_origin,
    item_generator,
    item_seed,
    neighbour_indices,
    random_origin,
    stack_neighbours,
)
from medsr.errors import ConfigError


def test_neighbour_indices_replicate_the_edges() -> None:
    assert neighbour_indices(0, 2, 10) == [0, 0, 0, 1, 2]
    assert neighbour_indices(5, 1, 10) == [4, 5, 6]
    assert neighbour_indices(9, 2, 10) == [7, 8, 9, 9, 9]
    assert neighbour_indices(0, 3, 1) == [0] * 7
    assert neighbour_indices(4, 0, 10) == [4]
    with pytest.raises(IndexError):
        neighbour_indices(10, 1, 10)
    with pytest.raises(ConfigError):
        neighbour_indices(0, -1, 10)


def test_stack_neighbours_numpy_memmap_and_torch(tmp_path) -> None:
    volume = np.arange(6 * 4 * 5, dtype=np.int16).reshape(6, 4, 5)
    stack = stack_neighbours(volume, 0, 1)
    assert stack.shape == (3, 4, 5)
    assert np.array_equal(stack, volume[[0, 0, 1]])
    np.save(tmp_path / "v.npy", volume)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    window = (slice(1, 3), slice(2, 5))
    part = stack_neighbours(mapped, 5, 2, window=window)
    assert type(part) is np.ndarray and part.shape == (5, 2, 3)
    assert np.array_equal(part, volume[[3, 4, 5, 5, 5], 1:3, 2:5])
    tensor = stack_neighbours(torch.from_numpy(volume), 3, 1)
    assert isinstance(tensor, torch.Tensor) and torch.equal(tensor[1], torch.from_numpy(volume[3]))


def test_item_seeds_are_deterministic_and_distinct() -> None:
    assert item_seed(0, 0, 0) == item_seed(0, 0, 0)
    seeds = {item_seed(s, e, i) for s in range(3) for e in range(3) for i in range(50)}
    assert len(seeds) == 450 and all(0 <= s < 2**63 for s in seeds)
    a = torch.rand(4, generator=item_generator(1, 2, 3))
    assert torch.equal(a, torch.rand(4, generator=item_generator(1, 2, 3)))
    assert not torch.equal(a, torch.rand(4, generator=item_generator(1, 3, 2)))


def test_random_origin_covers_the_slice_and_handles_small_slices() -> None:
    g = torch.Generator().manual_seed(0)
    origins = [random_origin((10, 12), 8, g) for _ in range(400)]
    assert {o[0] for o in origins} == set(range(3)) and {o[1] for o in origins} == set(range(5))
    assert random_origin((4, 20), 8, g)[0] == 0


def test_foreground_bias() -> None:
    fg = np.zeros((64, 64), bool)
    fg[:16, :16] = True  # a small bright corner

    def fraction(top: int, left: int) -> float:
        return float(fg[top : top + 16, left : left + 16].mean())

    g = torch.Generator().manual_seed(0)
    uniform = np.mean(
        [fraction(*foreground_origin(fg.shape, 16, fraction, g, tries=1)) for _ in range(300)]
    )
    biased = np.mean(
        [
            fraction(*foreground_origin(fg.shape, 16, fraction, g, tries=8, min_fraction=0.5))
            for _ in range(300)
        ]
    )
    assert uniform < 0.1 and biased > 3 * uniform
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert foreground_origin(fg.shape, 16, fraction, g1) == foreground_origin(
        fg.shape, 16, fraction, g2
    )
    with pytest.raises(ConfigError):
        foreground_origin(fg.shape, 16, fraction, g, tries=0)


def test_flips_cover_the_eight_symmetries_uniformly() -> None:
    x = torch.arange(9.0).reshape(1, 3, 3)
    g = torch.Generator().manual_seed(0)
    seen = Counter(tuple(Flip.draw(g)(x).flatten().tolist()) for _ in range(4000))
    assert len(seen) == 8
    assert min(seen.values()) > 400 and max(seen.values()) < 600
    flip = Flip(vertical=True, horizontal=False, quarter_turns=1)
    assert torch.equal(flip(x), torch.rot90(x.flip(-2), 1, dims=(-2, -1)))
    assert torch.equal(Flip()(x), x)
