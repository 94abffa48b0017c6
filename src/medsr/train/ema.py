"""Exponential moving average (EMA) of the generator weights.

``ema = decay * ema + (1 - decay) * weights`` after every optimiser step that was taken
(skipped non-finite steps do not update it); buffers (BatchNorm statistics) are copied. ESRGAN
and Real-ESRGAN validate and release EMA weights (decay 0.999): they are smoother than the
last iterate, especially for GANs.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """An EMA copy of ``model`` (same class, eval mode, no gradients)."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = [p for p in self.model.parameters() if p.is_floating_point()]
        params = [p.detach() for p in model.parameters() if p.is_floating_point()]
        if ema_params:
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    @torch.no_grad()
    def copy_from(self, model: nn.Module) -> None:
        """Restart the average at ``model``'s weights."""
        self.model.load_state_dict(model.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
