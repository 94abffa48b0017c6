"""Adversarial losses, for both sides of the game, and the feature-matching loss.

All take discriminator logits (raw scores, any shape: ``(B, 1)`` or per-pixel
``(B, 1, H, W)``) and return ``(total, parts)``.

The caller decides what carries gradient: for the discriminator step pass logits of a
detached SR (``d(sr.detach())``); for the generator step pass ``d(sr)`` (and, for the
relativistic loss, ``d(hr)``, which is detached here).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.errors import ConfigError

__all__ = ["ADVERSARIAL_KINDS", "AdversarialLoss", "FeatureMatchingLoss"]

ADVERSARIAL_KINDS = ("vanilla", "lsgan", "ragan", "hinge")


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class AdversarialLoss(nn.Module):
    """GAN losses of four kinds:

    - ``vanilla``: binary cross-entropy on the logits (SRGAN);
    - ``lsgan``: least squares, targets 1 (real) and 0 (fake);
    - ``ragan``: relativistic average (ESRGAN): a real image should look more real than the
      average fake, and the reverse for the generator;
    - ``hinge``: D: ``relu(1 - real) + relu(1 + fake)``; G: ``-fake``.

    ``weight`` scales the generator side only (it balances the adversarial term against the
    content losses); the discriminator loss is unweighted. Discriminator parts are
    ``d_real`` and ``d_fake`` (their sum is the total); the generator part is ``adversarial``.
    """

    def __init__(self, *, kind: str = "vanilla", weight: float = 1.0) -> None:
        super().__init__()
        if kind not in ADVERSARIAL_KINDS:
            raise ConfigError(
                f"unknown adversarial loss {kind!r}; known: {', '.join(ADVERSARIAL_KINDS)}"
            )
        self.kind = kind
        self.weight = weight

    @property
    def needs_real_for_generator(self) -> bool:
        """Whether :meth:`generator_loss` needs the real logits (relativistic loss)."""
        return self.kind == "ragan"

    def generator_loss(
        self, fake: Tensor, real: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """fake = D(SR) with gradient; real = D(HR) (only ``ragan`` uses it)."""
        if self.kind == "vanilla":
            loss = _bce(fake, 1.0)
        elif self.kind == "lsgan":
            loss = (fake - 1).square().mean()
        elif self.kind == "hinge":
            loss = -fake.mean()
        else:
            if real is None:
                raise ConfigError("the ragan generator loss needs the real logits: real=d(hr)")
            real = real.detach()
            loss = 0.5 * (_bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0))
        total = self.weight * loss
        return total, {"adversarial": total.detach()}

    def discriminator_loss(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """real = D(HR), fake = D(SR.detach()), both with gradient for D."""
        if self.kind == "vanilla":
            d_real, d_fake = _bce(real, 1.0), _bce(fake, 0.0)
        elif self.kind == "lsgan":
            d_real, d_fake = (real - 1).square().mean(), fake.square().mean()
        elif self.kind == "hinge":
            d_real, d_fake = F.relu(1 - real).mean(), F.relu(1 + fake).mean()
        else:
            d_real = 0.5 * _bce(real - fake.mean(), 1.0)
            d_fake = 0.5 * _bce(fake - real.mean(), 0.0)
        return d_real + d_fake, {"d_real": d_real.detach(), "d_fake": d_fake.detach()}


class FeatureMatchingLoss(nn.Module):
    """Mean over discriminator layers of the distance between the features of the fake and
    of the real images (Salimans et al. 2016; the chest X-ray GAN uses it). The real
    features are detached. Use with ``d.forward_features``."""

    def __init__(self, *, weight: float = 1.0, criterion: str = "l1") -> None:
        super().__init__()
        if criterion not in ("l1", "mse"):
            raise ConfigError(f"unknown criterion {criterion!r}; known: l1, mse")
        self.weight = weight
        self.criterion = criterion

    def forward(
        self, real_features: Sequence[Tensor], fake_features: Sequence[Tensor]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if len(real_features) != len(fake_features) or not real_features:
            raise ConfigError(
                f"feature matching needs the same non-zero number of real and fake feature "
                f"maps, got {len(real_features)} and {len(fake_features)}"
            )
        distance = F.l1_loss if self.criterion == "l1" else F.mse_loss
        terms = [distance(f, r.detach()) for r, f in zip(real_features, fake_features, strict=True)]
        total = self.weight * torch.stack(terms).mean()
        return total, {"feature_matching": total.detach()}
