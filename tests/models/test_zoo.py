"""Loops over the name tables: shapes, scales, channels, gradients, determinism, configs."""

from __future__ import annotations

import json

import pytest
import torch

from medsr.errors import ConfigError
from medsr.models import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    count_parameters_of,
)

SCALES = (2, 3, 4, 8)


def test_every_table_entry_has_tiny_settings(tiny_tables):
    tiny_generators, tiny_discriminators = tiny_tables
    assert set(tiny_generators) == set(GENERATORS)
    assert set(tiny_discriminators) == set(DISCRIMINATORS)


@pytest.mark.parametrize("arch", list(GENERATORS))
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_forward_shape(tiny_generator, arch, scale, channels):
    cls = GENERATORS[arch]
    if scale not in cls.supported_scales:
        with pytest.raises(ConfigError, match="supported scales"):
            tiny_generator(arch, scale=scale, in_channels=channels)
        return
    model = tiny_generator(arch, scale=scale, in_channels=channels).eval()
    assert (model.scale, model.in_channels, model.out_channels) == (scale, channels, channels)
    lr = torch.rand(2, channels, 8, 7)
    with torch.no_grad():
        sr = model(lr)
    assert sr.shape == (2, channels, 8 * scale, 7 * scale)
    assert torch.isfinite(sr).all()


@pytest.mark.parametrize("arch", list(GENERATORS))
def test_generator_25d_predicts_one_channel(tiny_generator, arch):
    model = tiny_generator(arch, scale=2, in_channels=3, out_channels=1).eval()
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        sr = model(lr)
    assert sr.shape == (1, 1, 16, 16)
    if count_parameters(model) == 0:
        # Interpolation baselines upsample the centre slice only.
        alone = build_generator(arch, {"scale": 2, "in_channels": 1})(lr[:, 1:2])
        assert torch.equal(sr, alone)


@pytest.mark.parametrize("arch", ["edsr", "bicubic"])
def test_generator_rejects_impossible_channel_pairs(arch):
    with pytest.raises(ConfigError, match="out_channels"):
        build_generator(arch, {"in_channels": 2, "out_channels": 1})
    with pytest.raises(ConfigError, match="out_channels"):
        build_generator(arch, {"in_channels": 1, "out_channels": 3})


@pytest.mark.parametrize("arch", list(GENERATORS))
def test_generator_backward_is_finite(tiny_generator, arch):
    model = tiny_generator(arch, scale=2, in_channels=1).train()
    lr = torch.rand(2, 1, 8, 8, requires_grad=True)
    model(lr).square().mean().backward()
    assert lr.grad is not None and torch.isfinite(lr.grad).all() and lr.grad.abs().sum() > 0
    params = list(model.parameters())
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    if params:
        assert any(p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("arch", list(GENERATORS))
def test_generator_eval_is_deterministic(tiny_generator, arch):
    model = tiny_generator(arch, scale=4, in_channels=1).eval()
    lr = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(lr), model(lr))


@pytest.mark.parametrize("arch", list(GENERATORS))
def test_generator_hparams_rebuild_the_model(tiny_generator, arch):
    model = tiny_generator(arch, scale=2, in_channels=3, out_channels=1)
    hparams = model.hparams()
    assert hparams["scale"] == 2 and hparams["in_channels"] == 3 and hparams["out_channels"] == 1
    via_json = json.loads(json.dumps(hparams))
    rebuilt = build_generator(arch, via_json)
    assert type(rebuilt) is type(model)
    assert rebuilt.hparams() == hparams
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("arch", list(DISCRIMINATORS))
def test_discriminator_hparams_rebuild_the_model(tiny_discriminator, arch):
    model = tiny_discriminator(arch, in_channels=3)
    hparams = json.loads(json.dumps(model.hparams()))
    rebuilt = build_discriminator(arch, hparams)
    assert rebuilt.hparams() == model.hparams()


def test_build_errors_name_the_bad_value_and_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown generator 'edsrr'.*edsr.*rrdbnet"):
        build_generator("edsrr", {})
    with pytest.raises(ConfigError, match=r"'num_featurs'.*valid:.*num_features"):
        build_generator("edsr", {"num_featurs": 8})
    with pytest.raises(ConfigError, match=r"scale must be int, got '4'"):
        build_generator("edsr", {"scale": "4"})
    with pytest.raises(ConfigError, match=r"scale must be int"):
        build_generator("edsr", {"scale": True})
    with pytest.raises(ConfigError, match=r"num_blocks must be positive"):
        build_generator("edsr", {"num_blocks": 0})
    with pytest.raises(ConfigError, match=r"unknown discriminator 'patchgan'.*srgan"):
        build_discriminator("patchgan", {})
    with pytest.raises(ConfigError, match=r"rrdbnet: scale 3 is not supported.*1, 2, 4, 8"):
        build_generator("rrdbnet", {"scale": 3})
    # A float hyper-parameter accepts an int (YAML writes 1 for 1.0).
    assert build_generator("edsr", {"res_scale": 1, "num_blocks": 1}).res_scale == 1


@pytest.mark.parametrize(
    ("arch", "expected", "tolerance"),
    [
        ("rrdbnet", 16_697_987, 0),  # official ESRGAN / Real-ESRGAN x4
        ("edsr", 1_500_000, 0.03),  # EDSR baseline, "1.5 M"
        ("edsr_full", 43_000_000, 0.01),  # EDSR, "43 M"
        ("rcan", 15_600_000, 0.01),  # RCAN, "about 16 M" (15.59 M in the reference code)
        ("srresnet", 1_550_000, 0.01),  # SRGAN's generator, "1.5 M"
    ],
)
def test_parameter_counts_match_the_papers(arch, expected, tolerance):
    count = count_parameters_of(arch, {"in_channels": 3, "scale": 4})
    assert abs(count - expected) <= tolerance * expected, count


def test_interpolation_baselines_have_no_parameters():
    for arch in ("nearest", "bilinear", "bicubic", "lanczos"):
        assert count_parameters_of(arch) == 0


@pytest.mark.parametrize("arch", list(DISCRIMINATORS))
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminator_logits_and_features(tiny_discriminator, arch, channels):
    model = tiny_discriminator(arch, in_channels=channels).eval()
    hr = torch.rand(2, channels, 32, 24)
    lr = torch.rand(2, channels, 8, 6)
    with torch.no_grad():
        logits, features = model.forward_features(hr, lr=lr)
        again = model(hr, lr=lr)
    if arch == "unet":
        assert logits.shape == (2, 1, 32, 24)
    else:
        assert logits.shape == (2, 1)
    assert torch.equal(logits, again)
    assert len(features) >= 4
    assert all(f.shape[0] == 2 and torch.isfinite(f).all() for f in features)


@pytest.mark.parametrize("arch", list(DISCRIMINATORS))
def test_discriminator_backward_is_finite(tiny_discriminator, arch):
    model = tiny_discriminator(arch, in_channels=1).train()
    hr = torch.rand(2, 1, 16, 16, requires_grad=True)
    lr = torch.rand(2, 1, 4, 4)
    logits, features = model.forward_features(hr, lr=lr)
    (logits.mean() + sum(f.mean() for f in features)).backward()
    assert torch.isfinite(hr.grad).all() and hr.grad.abs().sum() > 0
    for p in model.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_paired_discriminator_needs_lr_of_the_right_size(tiny_discriminator):
    model = tiny_discriminator("medsrgan", in_channels=1, scale=4)
    assert model.paired
    hr = torch.rand(1, 1, 32, 32)
    with pytest.raises(ConfigError, match="lr=lr"):
        model(hr)
    with pytest.raises(ConfigError, match="not 4 x the LR size"):
        model(hr, lr=torch.rand(1, 1, 16, 16))
    # The LR half of the pair matters: another LR gives another score.
    model.eval()
    lr = torch.rand(1, 1, 8, 8)
    assert not torch.equal(model(hr, lr=lr), model(hr, lr=1 - lr))


@pytest.mark.parametrize("scale", SCALES)
def test_paired_discriminator_scales_and_25d(tiny_discriminator, scale):
    model = tiny_discriminator("medsrgan", in_channels=1, lr_channels=3, scale=scale).eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 8 * scale, 8 * scale), lr=torch.rand(1, 3, 8, 8))
    assert logits.shape == (1, 1)


def test_unpaired_discriminators_ignore_lr(tiny_discriminator):
    for arch in ("srgan", "unet", "dcgan"):
        model = tiny_discriminator(arch, in_channels=1).eval()
        hr = torch.rand(1, 1, 16, 16)
        assert not model.paired
        assert torch.equal(model(hr), model(hr, lr=torch.rand(1, 1, 4, 4)))


def test_unet_discriminator_has_the_official_key_layout():
    keys = set(build_discriminator("unet", {"in_channels": 3}).state_dict())
    assert {"conv0.weight", "conv1.weight_orig", "conv1.weight_u", "conv9.bias"} <= keys
