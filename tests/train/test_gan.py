"""The optimisation steps: content and adversarial, paired and 2.5D discriminators."""

from __future__ import annotations

import contextlib

import pytest
import torch

from medsr.distributed import DistInfo
from medsr.models import build_discriminator, build_generator
from medsr.train import parse_config, train
from medsr.train.config import (
    AdversarialLossConfig,
    FeatureMatchingLossConfig,
    LossesConfig,
    OptimizerConfig,
    PixelLossConfig,
    ScheduleConfig,
)
from medsr.train.gan import DiscriminatorPair, Stepper, build_losses, build_optimizer
from medsr.train.schedules import Schedule

from .synthetic import SyntheticSR, tiny_config


def make_stepper(losses_config, *, d_arch="dcgan", neighbours=0, d_params=None, clip=None):
    torch.manual_seed(0)
    channels = 2 * neighbours + 1
    g = build_generator(
        "edsr",
        {
            "scale": 2,
            "in_channels": channels,
            "out_channels": 1,
            "num_features": 8,
            "num_blocks": 1,
        },
    )
    d = build_discriminator(d_arch, {"in_channels": 1, "num_features": 8, **(d_params or {})})
    losses = build_losses(losses_config, torch.device("cpu"))
    g_opt = build_optimizer(list(g.parameters()), OptimizerConfig(lr=1e-3))
    d_opt = build_optimizer(list(d.parameters()), OptimizerConfig(lr=1e-3))
    stepper = Stepper(
        generator=g,
        generator_raw=g,
        losses=losses,
        g_optimizer=g_opt,
        g_schedule=Schedule(g_opt, ScheduleConfig(), base_lr=1e-3, total_steps=10),
        grad_clip=clip,
        autocast=contextlib.nullcontext,
        dist=DistInfo(),
        discriminator_pair=DiscriminatorPair(d),
        discriminator_raw=d,
        d_optimizer=d_opt,
        d_schedule=Schedule(d_opt, ScheduleConfig(), base_lr=1e-3, total_steps=10),
    )
    return stepper, g, d


def batch(neighbours=0, size=32):
    torch.manual_seed(1)
    hr = torch.rand(2, 1, size, size)
    lr = torch.rand(2, 2 * neighbours + 1, size // 2, size // 2)
    return lr, hr


@pytest.mark.parametrize(
    ("kind", "fm", "d_arch", "neighbours"),
    [
        ("vanilla", True, "dcgan", 0),  # the chest X-ray GAN: feature matching
        ("ragan", False, "srgan", 0),  # relativistic: needs D(hr) on the generator side
        ("vanilla", False, "medsrgan", 1),  # paired discriminator, 2.5D LR stack of 3
        ("lsgan", False, "unet", 0),
    ],
)
def test_adversarial_step_updates_both_networks(kind, fm, d_arch, neighbours):
    config = LossesConfig(
        pixel=PixelLossConfig(kind="l1"),
        adversarial=AdversarialLossConfig(kind=kind, weight=0.1),
        feature_matching=FeatureMatchingLossConfig() if fm else None,
    )
    d_params = {"lr_channels": 2 * neighbours + 1, "scale": 2} if d_arch == "medsrgan" else None
    stepper, g, d = make_stepper(config, d_arch=d_arch, neighbours=neighbours, d_params=d_params)
    g0 = {k: v.clone() for k, v in g.state_dict().items()}
    d0 = {k: v.clone() for k, v in d.state_dict().items()}
    outcome = stepper(*batch(neighbours), 0)
    assert not outcome.skipped
    expected = {"l1", "adversarial", "d_real", "d_fake", "g_total", "d_total"}
    if fm:
        expected.add("feature_matching")
    assert expected <= set(outcome.parts)
    assert all(torch.isfinite(v) for v in outcome.parts.values())
    total = outcome.parts["l1"] + outcome.parts["adversarial"]
    total = total + outcome.parts.get("feature_matching", 0)
    assert torch.allclose(outcome.parts["g_total"], total)
    assert any(not torch.equal(v, g0[k]) for k, v in g.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in d.state_dict().items())
    assert all(p.requires_grad for p in d.parameters())  # unfrozen again


def test_generator_update_leaves_the_discriminator_gradients_alone():
    config = LossesConfig(adversarial=AdversarialLossConfig(weight=1.0))
    stepper, _g, d = make_stepper(config)
    lr, hr = batch()
    # run only the generator half: the discriminator must get no gradient from it
    for p in d.parameters():
        p.grad = None
    stepper.d_optimizer.step = lambda: None  # type: ignore[method-assign]
    stepper.d_optimizer.zero_grad = lambda set_to_none=True: None  # type: ignore[method-assign]
    original = stepper.discriminator_pair.forward

    def no_d_step(real, fake, lr_):
        assert all(p.grad is None for p in d.parameters())
        return original(real, fake, lr_)

    stepper.discriminator_pair.forward = no_d_step  # type: ignore[method-assign]
    stepper(lr, hr, 0)


def test_gradient_clipping_bounds_the_update():
    config = LossesConfig(pixel=PixelLossConfig(kind="mse", weight=1e6))
    stepper, g, _ = make_stepper(config, clip=1e-3)
    captured = {}
    step = stepper.g_optimizer.step

    def spy():
        grads = [p.grad for p in g.parameters() if p.grad is not None]
        captured["norm"] = float(torch.nn.utils.get_total_norm(grads))
        step()

    stepper.g_optimizer.step = spy  # type: ignore[method-assign]
    outcome = stepper(*batch(), 0)
    assert float(outcome.parts["g_grad_norm"]) > 1.0  # the norm before clipping is reported
    assert captured["norm"] == pytest.approx(1e-3, rel=1e-3)


def test_sgd_and_adamw_and_schedules_in_a_run(tmp_path):
    data = tiny_config(
        **{
            "stages.0.optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "stages.0.schedule": {"name": "multistep", "milestones": [2], "gamma": 0.1},
        }
    )
    data["stages"].append(
        {
            "name": "second",
            "steps": 2,
            "losses": {"pixel": {"kind": "charbonnier"}},
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.01},
            "schedule": {"name": "cosine"},
            "grad_clip": 0.5,
            "init_from": "model",
        }
    )
    result = train(
        parse_config(data), out_dir=tmp_path, train_dataset=SyntheticSR(8), val_dataset=None
    )
    assert result.finished and result.validation is None
    assert not (tmp_path / "checkpoints" / "best").exists()  # no validation, no best
    from medsr.train.logging import read_metrics

    rates = [r["value"] for r in read_metrics(tmp_path / "metrics.csv") if r["name"] == "lr"]
    assert rates[:4] == pytest.approx([0.01, 0.01, 0.001, 0.001])
    assert rates[4] == pytest.approx(1e-3)


def test_training_reduces_the_loss(tmp_path):
    data = tiny_config(**{"stages.0.steps": 40, "stages.0.optimizer.lr": 3e-3})
    train(parse_config(data), out_dir=tmp_path, train_dataset=SyntheticSR(16), val_dataset=None)
    from medsr.train.logging import read_metrics

    l1 = [r["value"] for r in read_metrics(tmp_path / "metrics.csv") if r["name"] == "l1"]
    assert sum(l1[-5:]) / 5 < 0.5 * sum(l1[:5]) / 5
