"""EDSR's optional global bicubic skip (used by the shipped medsr models)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsr.models import build_generator, load, save


@pytest.mark.parametrize("scale", [2, 4])
def test_global_skip_starts_as_bicubic_and_learns_a_residual(scale: int, tmp_path) -> None:
    params = {"scale": scale, "num_features": 8, "num_blocks": 1, "global_skip": True}
    model = build_generator("edsr", params).eval()
    lr = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(0))
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.equal(model(lr), bicubic)  # the last convolution starts at zero
        model.tail.bias.fill_(0.25)
        assert torch.allclose(model(lr), bicubic + 0.25)
    folder = save(model, tmp_path / "ckpt")
    again = load(folder)
    assert again.global_skip and torch.equal(again(lr), model(lr))
    plain = build_generator("edsr", {**params, "global_skip": False})
    assert not plain.global_skip and plain.tail.weight.abs().sum() > 0


def test_global_skip_uses_the_centre_slice_in_2_5d() -> None:
    params = {"in_channels": 3, "out_channels": 1, "num_features": 8, "num_blocks": 1}
    model = build_generator("edsr", {**params, "scale": 2, "global_skip": True}).eval()
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = F.interpolate(lr[:, 1:2], scale_factor=2, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.equal(model(lr), expected)
