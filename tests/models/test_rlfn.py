"""RLFN: shapes at every scale, the global bicubic skip, small inputs (ESA pooling)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsr.models import build_generator


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(5, 6), (24, 17)])
def test_rlfn_shapes_and_starts_as_bicubic(scale: int, size: tuple[int, int]) -> None:
    params = {"scale": scale, "num_features": 8, "num_blocks": 2, "esa_channels": 4}
    model = build_generator("rlfn", {**params, "global_skip": True}).eval()
    lr = torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(lr)
    assert out.shape == (2, 1, size[0] * scale, size[1] * scale)
    assert torch.equal(out, F.interpolate(lr, scale_factor=scale, mode="bicubic"))
    plain = build_generator("rlfn", params).eval()
    with torch.no_grad():
        assert torch.isfinite(plain(lr)).all()
    assert plain.fuse() is plain  # nothing to re-parameterise


def test_rlfn_attention_changes_the_output() -> None:
    torch.manual_seed(0)
    model = build_generator(
        "rlfn", {"scale": 2, "num_features": 8, "num_blocks": 1, "esa_channels": 4}
    ).eval()
    lr = torch.rand(1, 1, 20, 20)
    with torch.no_grad():
        before = model(lr)
        model.blocks[0].esa.expand.bias.fill_(-20.0)  # mask ~0: the block's output vanishes
        after = model(lr)
    assert (before - after).abs().max() > 1e-3
