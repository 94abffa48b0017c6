"""One optimisation step: the PSNR-oriented step and the adversarial (GAN) step.

**Content step** (a stage without adversarial losses): ``sr = G(lr)``, loss = pixel +
perceptual, backward, gradient norm (clipped when ``grad_clip``), optimiser step.

**Adversarial step** (ESRGAN / BasicSR order): ``sr = G(lr)`` once, then

1. generator update with the discriminator frozen: content losses + adversarial loss on
   ``D(sr)`` (+ feature matching between ``D``'s features of HR and SR, and ``D(hr)`` for
   the relativistic loss);
2. discriminator update on ``D(hr)`` and ``D(sr.detach())``.

Paired discriminators (MedSRGAN) also get the LR input: ``D(x, lr=lr)``.

**Non-finite guard**: after backward, the loss and the gradient norm are checked (one
all-reduce under DDP so every rank decides alike, since gradients are all-reduced already
and a NaN on one rank reaches all). A non-finite network update is skipped (no optimiser
step, no EMA update) and reported in :class:`StepOutcome`; the loop counts them.

Under DDP the generator is wrapped once; the discriminator's own update goes through a DDP
wrapper of :class:`DiscriminatorPair` (both of its forward passes in one DDP call, so one
gradient all-reduce), while the frozen discriminator of the generator update is the plain
module (no communication: its gradients are not wanted).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from medsr.distributed import DistInfo, any_true
from medsr.errors import ConfigError
from medsr.losses import (
    AdversarialLoss,
    CharbonnierLoss,
    FeatureMatchingLoss,
    L1Loss,
    MSELoss,
    PerceptualLoss,
)
from medsr.train.config import LossesConfig, OptimizerConfig
from medsr.train.schedules import Schedule

__all__ = [
    "DiscriminatorPair",
    "StageLosses",
    "StepOutcome",
    "Stepper",
    "build_losses",
    "build_optimizer",
]


# ------------------------------------------------------------------------------------ losses
@dataclass
class StageLosses:
    """The built loss modules of one stage (None = off)."""

    pixel: nn.Module | None = None
    perceptual: PerceptualLoss | None = None
    adversarial: AdversarialLoss | None = None
    feature_matching: FeatureMatchingLoss | None = None

    @property
    def adversarial_stage(self) -> bool:
        return self.adversarial is not None

    def content(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Pixel + perceptual terms: ``(total, parts)``."""
        total = sr.new_zeros(())
        parts: dict[str, Tensor] = {}
        for loss in (self.pixel, self.perceptual):
            if loss is not None:
                value, terms = loss(sr, hr)
                total = total + value
                parts.update(terms)
        return total, parts


def build_losses(config: LossesConfig, device: torch.device) -> StageLosses:
    """The loss modules of a stage, on ``device`` (the perceptual loss reads its VGG
    weights file here: a missing file fails before any training)."""
    losses = StageLosses()
    if config.pixel is not None:
        p = config.pixel
        if p.kind == "l1":
            losses.pixel = L1Loss(weight=p.weight)
        elif p.kind == "mse":
            losses.pixel = MSELoss(weight=p.weight)
        else:
            losses.pixel = CharbonnierLoss(weight=p.weight, eps=p.eps)
    if config.perceptual is not None:
        q = config.perceptual
        losses.perceptual = PerceptualLoss(
            arch=q.arch,
            layers=q.layers,
            weights=q.weights,
            normalization=q.normalization,
            criterion=q.criterion,
            weight=q.weight,
        ).to(device)
    if config.adversarial is not None:
        losses.adversarial = AdversarialLoss(
            kind=config.adversarial.kind, weight=config.adversarial.weight
        )
    if config.feature_matching is not None:
        losses.feature_matching = FeatureMatchingLoss(
            weight=config.feature_matching.weight, criterion=config.feature_matching.criterion
        )
    return losses


def build_optimizer(params: list[nn.Parameter], config: OptimizerConfig) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum) over ``params``."""
    if not params:
        raise ConfigError("the optimiser has no trainable parameters (an interpolation model?)")
    if config.name in ("adam", "adamw"):
        adam = torch.optim.Adam if config.name == "adam" else torch.optim.AdamW
        return adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=config.weight_decay,
        )
    if config.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    raise ConfigError(f"unknown optimizer {config.name!r}")  # pragma: no cover


# ----------------------------------------------------------------------------- discriminator
class DiscriminatorPair(nn.Module):
    """``D`` applied to the real and the fake batch in one call, so that DDP sees one
    forward and one backward for the discriminator update."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, real: Tensor, fake: Tensor, lr: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.discriminator(real, lr=lr), self.discriminator(fake, lr=lr)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require gradients inside the block."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


# -------------------------------------------------------------------------------------- step
@dataclass
class StepOutcome:
    """What one step did: detached loss terms, and which updates were skipped."""

    parts: dict[str, Tensor] = field(default_factory=dict)
    g_skipped: bool = False
    d_skipped: bool = False

    @property
    def skipped(self) -> bool:
        return self.g_skipped or self.d_skipped


class Stepper:
    """Runs the steps of one stage (see the module docstring)."""

    def __init__(
        self,
        *,
        generator: nn.Module,
        generator_raw: nn.Module,
        losses: StageLosses,
        g_optimizer: torch.optim.Optimizer,
        g_schedule: Schedule,
        grad_clip: float | None,
        autocast: Callable[[], contextlib.AbstractContextManager],
        dist: DistInfo,
        discriminator_pair: nn.Module | None = None,
        discriminator_raw: nn.Module | None = None,
        d_optimizer: torch.optim.Optimizer | None = None,
        d_schedule: Schedule | None = None,
    ) -> None:
        if losses.adversarial_stage and (
            discriminator_pair is None or discriminator_raw is None or d_optimizer is None
        ):
            raise ConfigError("an adversarial stage needs a discriminator and its optimiser")
        self.generator = generator
        self.generator_raw = generator_raw
        self.losses = losses
        self.g_optimizer = g_optimizer
        self.g_schedule = g_schedule
        self.grad_clip = grad_clip
        self.autocast = autocast
        self.dist = dist
        self.discriminator_pair = discriminator_pair
        self.discriminator_raw = discriminator_raw
        self.d_optimizer = d_optimizer
        self.d_schedule = d_schedule
        self.paired = bool(getattr(discriminator_raw, "paired", False))
        self._g_params = [p for p in generator_raw.parameters() if p.requires_grad]
        self._d_params = (
            [p for p in discriminator_raw.parameters() if p.requires_grad]
            if discriminator_raw is not None
            else []
        )

    def __call__(self, lr: Tensor, hr: Tensor, step: int) -> StepOutcome:
        """One step at 0-based ``step`` within the stage (for the schedules)."""
        if self.losses.adversarial_stage:
            return self._adversarial_step(lr, hr, step)
        return self._content_step(lr, hr, step)

    def _update(
        self,
        loss: Tensor,
        params: list[nn.Parameter],
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        step: int,
    ) -> tuple[bool, Tensor]:
        """Backward, norm, finite check, clip, step. Returns (skipped, gradient norm)."""
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else loss.new_zeros(())
        bad = ~torch.isfinite(loss.detach().float() + norm.float())
        if any_true(bad, self.dist):
            optimizer.zero_grad(set_to_none=True)
            return True, norm.detach()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.grad_clip, norm)
        schedule.apply(step)
        optimizer.step()
        return False, norm.detach()

    def _content_step(self, lr: Tensor, hr: Tensor, step: int) -> StepOutcome:
        with self.autocast():
            sr = self.generator(lr)
        loss, parts = self.losses.content(sr.float(), hr)
        skipped, norm = self._update(loss, self._g_params, self.g_optimizer, self.g_schedule, step)
        parts = {**parts, "g_total": loss.detach(), "g_grad_norm": norm}
        return StepOutcome(parts=parts, g_skipped=skipped)

    def _adversarial_step(self, lr: Tensor, hr: Tensor, step: int) -> StepOutcome:
        assert self.discriminator_raw is not None and self.discriminator_pair is not None
        assert self.d_optimizer is not None and self.d_schedule is not None
        adversarial = self.losses.adversarial
        assert adversarial is not None
        d = self.discriminator_raw
        d_lr = lr if self.paired else None
        fm = self.losses.feature_matching
        need_real = fm is not None or adversarial.needs_real_for_generator

        # 1. generator, discriminator frozen (the plain module: no DDP communication for D)
        with self.autocast():
            sr = self.generator(lr)
        sr32 = sr.float()
        content, parts = self.losses.content(sr32, hr)
        with frozen(d), self.autocast():
            if need_real:
                with torch.no_grad():
                    real_logits, real_features = d.forward_features(hr, lr=d_lr)
            fake_logits, fake_features = d.forward_features(sr32, lr=d_lr)
        g_adv, adv_parts = adversarial.generator_loss(
            fake_logits.float(), real_logits.float() if need_real else None
        )
        g_loss = content + g_adv
        parts.update(adv_parts)
        if fm is not None:
            fm_loss, fm_parts = fm(
                [f.float() for f in real_features], [f.float() for f in fake_features]
            )
            g_loss = g_loss + fm_loss
            parts.update(fm_parts)
        g_skipped, g_norm = self._update(
            g_loss, self._g_params, self.g_optimizer, self.g_schedule, step
        )

        # 2. discriminator on real and (detached) fake
        with self.autocast():
            real, fake = self.discriminator_pair(hr, sr32.detach(), d_lr)
        d_loss, d_parts = adversarial.discriminator_loss(real.float(), fake.float())
        d_skipped, d_norm = self._update(
            d_loss, self._d_params, self.d_optimizer, self.d_schedule, step
        )
        parts.update(d_parts)
        parts.update(
            g_total=g_loss.detach(),
            d_total=d_loss.detach(),
            g_grad_norm=g_norm,
            d_grad_norm=d_norm,
        )
        return StepOutcome(parts=parts, g_skipped=g_skipped, d_skipped=d_skipped)
