from __future__ import annotations

import math

import pytest
import torch

from medsr.errors import ConfigError
from medsr.losses import ADVERSARIAL_KINDS, AdversarialLoss, FeatureMatchingLoss

LOG2 = math.log(2)


@pytest.mark.parametrize(
    ("kind", "g_at_zero", "d_at_zero"),
    [("vanilla", LOG2, 2 * LOG2), ("lsgan", 1.0, 1.0), ("ragan", LOG2, LOG2), ("hinge", 0.0, 2.0)],
)
def test_known_values_at_zero_logits(kind, g_at_zero, d_at_zero):
    zeros = torch.zeros(4, 1)
    loss = AdversarialLoss(kind=kind)
    assert loss.generator_loss(zeros, zeros)[0].item() == pytest.approx(g_at_zero)
    total, parts = loss.discriminator_loss(zeros, zeros)
    assert total.item() == pytest.approx(d_at_zero)
    assert set(parts) == {"d_real", "d_fake"}
    assert (parts["d_real"] + parts["d_fake"]).item() == pytest.approx(total.item())


def test_confident_correct_discriminator_has_small_loss():
    real, fake = torch.full((4, 1), 20.0), torch.full((4, 1), -20.0)
    for kind in ("vanilla", "ragan"):
        assert AdversarialLoss(kind=kind).discriminator_loss(real, fake)[0].item() < 1e-6
    assert AdversarialLoss(kind="hinge").discriminator_loss(real, fake)[0].item() == 0.0
    lsgan = AdversarialLoss(kind="lsgan").discriminator_loss(torch.ones(4, 1), torch.zeros(4, 1))
    assert lsgan[0].item() == 0.0


@pytest.mark.parametrize("kind", ADVERSARIAL_KINDS)
def test_gradients_point_the_right_way(kind):
    loss = AdversarialLoss(kind=kind, weight=0.1)
    fake = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    real = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    g_total, g_parts = loss.generator_loss(fake, real)
    g_total.backward()
    # The generator gains by making its fakes look more real...
    assert fake.grad.sum() < 0 and torch.isfinite(fake.grad).all()
    assert real.grad is None  # ...and never pushes on the discriminator's real scores
    assert g_parts["adversarial"].item() == pytest.approx(g_total.item())
    fake.grad = None
    d_total, _ = loss.discriminator_loss(real, fake)
    d_total.backward()
    assert real.grad.sum() < 0 and fake.grad.sum() > 0


def test_weight_scales_the_generator_side_only():
    fake, real = torch.randn(4, 1), torch.randn(4, 1)
    one, ten = AdversarialLoss(kind="vanilla"), AdversarialLoss(kind="vanilla", weight=10.0)
    assert ten.generator_loss(fake)[0].item() == pytest.approx(
        10 * one.generator_loss(fake)[0].item()
    )
    assert ten.discriminator_loss(real, fake)[0].item() == pytest.approx(
        one.discriminator_loss(real, fake)[0].item()
    )


def test_errors():
    with pytest.raises(ConfigError, match=r"unknown adversarial loss 'wgan'.*hinge"):
        AdversarialLoss(kind="wgan")
    with pytest.raises(ConfigError, match="real logits"):
        AdversarialLoss(kind="ragan").generator_loss(torch.zeros(2, 1))
    assert AdversarialLoss(kind="ragan").needs_real_for_generator
    assert not AdversarialLoss(kind="hinge").needs_real_for_generator


def test_feature_matching():
    real = [torch.ones(2, 3, 4, 4), torch.zeros(2, 5, 2, 2)]
    fake = [torch.full((2, 3, 4, 4), 3.0, requires_grad=True), torch.zeros(2, 5, 2, 2)]
    loss = FeatureMatchingLoss(weight=0.5)
    total, parts = loss(real, fake)
    assert total.item() == pytest.approx(0.5 * (2.0 + 0.0) / 2)
    assert parts == {"feature_matching": pytest.approx(total.detach())}
    total.backward()
    assert fake[0].grad.sum() > 0
    same, _ = loss(real, [r.clone() for r in real])
    assert same.item() == 0.0
    with pytest.raises(ConfigError, match="same non-zero number"):
        loss(real, fake[:1])
