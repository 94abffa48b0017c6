from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.infer import area_reduce, through_plane
from medsr.infer.planes import planes_count


def test_area_reduce_averages_runs():
    y = torch.arange(12.0).reshape(1, 1, 2, 6)
    torch.testing.assert_close(area_reduce(y, 3), torch.tensor([[[[1.0, 4.0], [7.0, 10.0]]]]))
    torch.testing.assert_close(area_reduce(y, 2, dim=-2), y.reshape(1, 1, 1, 2, 6).mean(-2))
    with pytest.raises(ConfigError, match="multiple"):
        area_reduce(y, 4)


def test_through_plane_uses_both_orientations_and_keeps_only_the_slice_axis_gain():
    vol = torch.rand(3, 5, 4, generator=torch.Generator().manual_seed(0))
    seen = []

    def sr_stack(stack, reduce):
        # a "model" that upsamples linearly along H (the slice axis) and by nearest along W
        seen.append(tuple(stack.shape))
        y = F.interpolate(stack, scale_factor=(2, 1), mode="bilinear", align_corners=False)
        return reduce(y.repeat_interleave(2, dim=-1))

    out = through_plane(vol, sr_stack, scale=2, axis=0)
    assert seen == [(5, 1, 3, 4), (4, 1, 3, 5)]  # (Z, X) planes per Y, (Z, Y) planes per X
    assert out.shape == (6, 5, 4)
    # both orientations agree here: linear along Z, and the in-plane reduction undoes W
    expected = (
        F.interpolate(
            vol.permute(1, 2, 0).reshape(1, 20, 3),
            scale_factor=2,
            mode="linear",
            align_corners=False,
        )
        .reshape(5, 4, 6)
        .permute(2, 0, 1)
    )
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_orientations_are_averaged():
    vol = torch.zeros(2, 3, 4)
    calls = []

    def sr_stack(stack, reduce):
        calls.append(len(calls))
        value = 1.0 if len(calls) == 1 else 3.0  # the two orientations disagree
        n, _, h, w = stack.shape
        return reduce(torch.full((n, 1, 2 * h, 2 * w), value))

    out = through_plane(vol, sr_stack, scale=2, axis=1)
    assert out.shape == (2, 6, 4)
    torch.testing.assert_close(out, torch.full((2, 6, 4), 2.0))
    assert planes_count((2, 3, 4), axis=1) == (2, 4)


def test_through_plane_checks_its_inputs():
    with pytest.raises(ConfigError, match="volume"):
        through_plane(torch.zeros(4, 4), lambda s, r: s, scale=2)
    with pytest.raises(ConfigError, match="sr_stack returned"):
        through_plane(torch.zeros(2, 3, 4), lambda s, r: s, scale=2)
