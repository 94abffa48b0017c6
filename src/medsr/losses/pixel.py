"""Pixel losses. Each returns ``(total, parts)``: the weighted loss (a scalar with gradient)
and a dict of its weighted terms, detached, for logging (their sum is ``total``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medsr.errors import ConfigError

__all__ = ["PIXEL_LOSSES", "CharbonnierLoss", "L1Loss", "MSELoss"]


def _check_pair(sr: Tensor, hr: Tensor) -> None:
    if sr.shape != hr.shape:
        raise ConfigError(f"sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")


class _PixelLoss(nn.Module):
    name: str

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def distance(self, sr: Tensor, hr: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, sr: Tensor, hr: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """sr, hr: (B, C, H, W) -> (weight * mean distance, {name: same, detached})."""
        _check_pair(sr, hr)
        total = self.weight * self.distance(sr, hr)
        return total, {self.name: total.detach()}


class L1Loss(_PixelLoss):
    """Mean absolute error."""

    name = "l1"

    def distance(self, sr: Tensor, hr: Tensor) -> Tensor:
        return (sr - hr).abs().mean()


class MSELoss(_PixelLoss):
    """Mean squared error."""

    name = "mse"

    def distance(self, sr: Tensor, hr: Tensor) -> Tensor:
        return (sr - hr).square().mean()


class CharbonnierLoss(_PixelLoss):
    """Charbonnier (smooth L1): mean of ``sqrt((sr - hr)^2 + eps^2)``, as in LapSRN; minus
    ``eps`` so identical images give exactly 0."""

    name = "charbonnier"

    def __init__(self, *, weight: float = 1.0, eps: float = 1e-3) -> None:
        super().__init__(weight=weight)
        if eps <= 0:
            raise ConfigError(f"charbonnier eps must be positive, got {eps!r}")
        self.eps = eps

    def distance(self, sr: Tensor, hr: Tensor) -> Tensor:
        return (torch.sqrt((sr - hr).square() + self.eps**2) - self.eps).mean()


PIXEL_LOSSES: dict[str, type[_PixelLoss]] = {
    "l1": L1Loss,
    "mse": MSELoss,
    "charbonnier": CharbonnierLoss,
}
