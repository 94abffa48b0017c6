"""EDSR's optional global bicubic skip (used by the shipped medsr models)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsr.models import build_generator, load, save
from medsr.models.layers import scale_steps


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


def _randomise(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("global_skip", [False, True])
@pytest.mark.parametrize(
    ("cin", "cout", "size"), [(1, None, (13, 10)), (3, 1, (2, 5)), (2, None, (1, 1))]
)
def test_fused_edsr_equals_the_training_form(scale, global_skip, cin, cout, size) -> None:
    params = {"scale": scale, "num_features": 8, "num_blocks": 2, "global_skip": global_skip}
    model = build_generator("edsr", {**params, "in_channels": cin, "out_channels": cout}).eval()
    _randomise(model)  # the skip's zero-started tail would hide a wrong fold
    lr = torch.rand(2, cin, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        trained = model(lr)
        assert model.fuse() is model and model.fuse() is model  # idempotent
        deployed = model(lr)
    assert deployed.shape == trained.shape == (2, cout or cin, size[0] * scale, size[1] * scale)
    assert (trained - deployed).abs().max() < 1e-5
    # the last sub-pixel step's convolution is merged into the 5x5 one
    assert len(model.upsample) == 2 * (len(scale_steps(scale)) - 1)
    assert model.merged.kernel_size == (5, 5)
    with pytest.raises(RuntimeError, match="deploy form"):
        model.train()(lr)  # training the deploy form would train two copies of one layer


def test_bicubic_phases_match_pytorch_everywhere() -> None:
    from medsr.models.edsr import _bicubic_phases

    lr = torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(3))
    for scale in (2, 3, 4):
        conv = _bicubic_phases(scale, 1)
        ours = F.pixel_shuffle(conv(F.pad(lr, (2,) * 4, mode="replicate")), scale)
        theirs = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
        assert (ours - theirs).abs().max() < 1e-6


@pytest.mark.parametrize("global_skip", [False, True])
def test_deepened_edsr_computes_what_the_shallower_one_did_and_can_learn(global_skip) -> None:
    params = {"scale": 2, "num_features": 8, "global_skip": global_skip}
    shallow = build_generator("edsr", {**params, "num_blocks": 2}).eval()
    _randomise(shallow)
    deep = build_generator("edsr", {**params, "num_blocks": 5})
    deep.deepen_from(shallow)
    lr = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(deep.eval()(lr), shallow(lr), atol=1e-6)
    assert torch.equal(deep.body[1].body[0].weight, shallow.body[1].body[0].weight)
    assert torch.equal(deep.body[5].weight, shallow.body[2].weight)  # the body's last conv
    # the new blocks' first convolutions keep their random start, so each block learns
    assert deep.body[3].body[0].weight.abs().sum() > 0
    deep.train()(lr).square().mean().backward()
    assert deep.body[4].body[2].weight.grad.abs().sum() > 0


def test_deepening_needs_a_shallower_edsr_with_the_same_other_hyper_parameters() -> None:
    deep = build_generator("edsr", {"scale": 2, "num_features": 8, "num_blocks": 3})
    for other, message in [
        ({"num_blocks": 3}, "fewer blocks"),
        ({"num_blocks": 4}, "fewer blocks"),
        ({"num_blocks": 1, "num_features": 16}, "same hyper-parameters"),
        ({"num_blocks": 1, "scale": 4}, "same hyper-parameters"),
    ]:
        params = {"scale": 2, "num_features": 8, **other}
        with pytest.raises(ValueError, match=message):
            deep.deepen_from(build_generator("edsr", params))
    with pytest.raises(ValueError, match="training form"):
        deep.deepen_from(
            build_generator("edsr", {"scale": 2, "num_features": 8, "num_blocks": 1}).fuse()
        )
