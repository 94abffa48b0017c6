"""Small models with known properties for the inference tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn


class SmallConv(nn.Module):
    """``num_convs`` 3x3 convolutions (zero padded) then a pixel shuffle: receptive-field
    radius ``num_convs`` input pixels. Random weights from ``seed``."""

    def __init__(self, *, scale: int = 2, in_channels: int = 1, num_convs: int = 4, seed: int = 0):
        super().__init__()
        self.scale, self.in_channels, self.out_channels = scale, in_channels, 1
        g = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        channels = in_channels
        for k in range(num_convs):
            out = scale * scale if k == num_convs - 1 else 6
            conv = nn.Conv2d(channels, out, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
            layers += [conv, nn.Tanh()] if k < num_convs - 1 else [conv]
            channels = out
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.body(x), self.scale)


@pytest.fixture
def small_conv():
    return SmallConv
