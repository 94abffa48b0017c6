"""SPAN: the deployed (fused) form equals the training form; the global bicubic skip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsr.infer import load_model
from medsr.models import build_generator, save
from medsr.models.span import SPAN, Conv3XC


def _randomise(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize(("cin", "cout"), [(1, 8), (8, 8), (8, 3)])
def test_conv3xc_fuses_into_one_3x3_convolution(cin: int, cout: int) -> None:
    block = Conv3XC(cin, cout)
    _randomise(block, 0)
    x = torch.randn(2, cin, 11, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        trained = block(x)
        block.fuse()
        deployed = block(x)
    assert block.fused and isinstance(block.conv, nn.Conv2d)
    assert block.conv.kernel_size == (3, 3) and block.expand is None
    assert (trained - deployed).abs().max() < 1e-5  # borders included (zero padding)
    block.fuse()  # idempotent
    with torch.no_grad():
        assert torch.equal(block(x), deployed)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("global_skip", [False, True])
def test_fused_span_equals_the_training_form(scale: int, global_skip: bool) -> None:
    model = SPAN(scale=scale, num_features=8, num_blocks=3, global_skip=global_skip).eval()
    _randomise(model, scale)
    lr = torch.rand(2, 1, 13, 10, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        trained = model(lr)
        assert model.fuse() is model
        deployed = model(lr)
    assert trained.shape == (2, 1, 13 * scale, 10 * scale)
    assert (trained - deployed).abs().max() < 1e-5
    kinds = {type(m) for m in model.modules()}
    assert nn.Conv2d in kinds and not any(
        isinstance(m, Conv3XC) and not m.fused for m in model.modules()
    )
    # fewer parameters once deployed: the branches are gone
    assert sum(p.numel() for p in model.parameters()) < sum(
        p.numel() for p in SPAN(scale=scale, num_features=8, num_blocks=3).parameters()
    )


def test_global_skip_starts_as_bicubic_and_2_5d_uses_the_centre_slice() -> None:
    model = build_generator(
        "span", {"scale": 2, "num_features": 8, "num_blocks": 1, "global_skip": True}
    ).eval()
    lr = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(model(lr), F.interpolate(lr, scale_factor=2, mode="bicubic"))
    stacked = build_generator(
        "span",
        {
            "scale": 2,
            "in_channels": 3,
            "out_channels": 1,
            "num_features": 8,
            "num_blocks": 1,
            "global_skip": True,
        },
    ).eval()
    lr3 = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = stacked(lr3)
    assert torch.equal(out, F.interpolate(lr3[:, 1:2], scale_factor=2, mode="bicubic"))


def test_span_rejects_bad_hyper_parameters() -> None:
    from medsr.errors import ConfigError

    with pytest.raises(ConfigError, match="num_blocks"):
        build_generator("span", {"num_blocks": 0})
    with pytest.raises(ConfigError, match="scale 8"):
        build_generator("span", {"scale": 8})


def test_inference_loads_a_training_checkpoint_in_the_deploy_form(tmp_path) -> None:
    model = SPAN(scale=2, num_features=8, num_blocks=2, global_skip=True)
    _randomise(model, 5)
    folder = save(model.eval(), tmp_path / "ckpt")
    loaded = load_model(folder)
    assert all(m.fused for m in loaded.module.modules() if isinstance(m, Conv3XC))
    lr = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert (loaded.module(lr) - model(lr)).abs().max() < 1e-5
