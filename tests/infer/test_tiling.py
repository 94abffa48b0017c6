from __future__ import annotations

import itertools

import pytest
import torch

from medsr.errors import ConfigError
from medsr.infer.tiling import axis_weights, plan_tiles, tile_layout, tiled_apply


@pytest.mark.parametrize("length", [1, 7, 40, 41, 64, 100, 257, 512, 513, 1000])
@pytest.mark.parametrize(("tile", "overlap"), [(40, 8), (64, 16), (256, 16), (33, 0)])
def test_layout_covers_the_axis_with_the_overlap(length, tile, overlap):
    size, starts = tile_layout(length, tile, overlap)
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    covered = torch.zeros(length, dtype=torch.bool)
    for a, b in itertools.pairwise(starts):
        assert b > a and a + size - b >= overlap  # neighbours overlap enough
    for s in starts:
        covered[s : s + size] = True
    assert bool(covered.all())


def test_layout_shrinks_tiles_instead_of_tripling_the_work():
    size, starts = tile_layout(512, 256, 16)
    assert len(starts) == 3 and size == 182  # not 3 tiles of 256 (2.25x the pixels)


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_blend_weights_are_a_partition_of_unity(scale):
    size, starts = tile_layout(300, 64, 16)
    weights = axis_weights(starts, size, 300, scale)
    total = torch.zeros(300 * scale)
    for s, w in zip(starts, weights, strict=True):
        assert w.min() >= 0 and w.numel() == size * scale
        total[s * scale : s * scale + w.numel()] += w
    torch.testing.assert_close(total, torch.ones_like(total))
    # each tile gives no weight to the outer quarter of the overlap next to its cut edges
    overlap = (starts[0] + size - starts[1]) * scale
    assert float(weights[1][: overlap // 4].max()) == 0.0
    assert float(weights[0][-(overlap // 4) :].max()) == 0.0


def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(small_conv):
    model = small_conv(scale=2, num_convs=4).eval()  # receptive-field radius 4 pixels
    x = torch.rand(2, 1, 97, 75, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model(x)
        tiled = tiled_apply(model, x, scale=2, out_channels=1, tile=40, overlap=16, batch_size=3)
        seams = tiled_apply(model, x, scale=2, out_channels=1, tile=40, overlap=4, batch_size=3)
    assert plan_tiles(97, 75, tile=40, overlap=16, scale=2).count > 4
    assert float((tiled - whole).abs().max()) < 1e-4
    # too little overlap: the cut edges' zero padding shows (so the first check can fail)
    assert float((seams - whole).abs().max()) > 1e-3


def test_batching_tiles_does_not_change_the_result(small_conv):
    model = small_conv(scale=3, num_convs=2).eval()
    x = torch.rand(3, 1, 50, 61, generator=torch.Generator().manual_seed(2))
    calls = []
    with torch.no_grad():
        one = tiled_apply(model, x, scale=3, out_channels=1, tile=24, overlap=8, batch_size=1)
        many = tiled_apply(
            model,
            x,
            scale=3,
            out_channels=1,
            tile=24,
            overlap=8,
            batch_size=7,
            on_batch=calls.append,
        )
    torch.testing.assert_close(one, many)
    plan = plan_tiles(50, 61, tile=24, overlap=8, scale=3)
    assert sum(calls) == 3 * plan.count and max(calls) == 7


def test_untiled_when_the_tile_covers_the_image():
    calls = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return t.repeat_interleave(2, -1).repeat_interleave(2, -2)

    x = torch.rand(4, 1, 20, 30)
    y = tiled_apply(fn, x, scale=2, out_channels=1, tile=0, overlap=8, batch_size=2)
    assert calls == [(2, 1, 20, 30), (2, 1, 20, 30)] and y.shape == (4, 1, 40, 60)


def test_overlap_must_leave_room_for_the_tile():
    with pytest.raises(ConfigError, match="overlap"):
        plan_tiles(100, 100, tile=32, overlap=16, scale=2)
    with pytest.raises(ConfigError, match="overlap"):
        plan_tiles(100, 100, tile=32, overlap=-1, scale=2)
