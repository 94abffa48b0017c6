"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017): baseline (16 blocks, 64 features) and full (32 blocks, 256 features, residual
scaling 0.1)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from medsr.models.layers import Generator, MeanShift, PixelShuffleUpsampler, check_positive

__all__ = ["EDSR", "EDSRFull"]


class _ResBlock(nn.Module):
    """conv-ReLU-conv without batch norm, scaled by ``res_scale`` before the skip."""

    def __init__(self, num_features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(Generator):
    """EDSR; the defaults are the paper's baseline model (about 1.5 M parameters at x4, RGB).

    Differences from the paper: the mean subtracted at the input and added back at the output
    is one constant ``mean`` for all channels (default 0.5 for data in [0, 1]) instead of the
    DIV2K RGB mean; x8 uses three x2 sub-pixel steps.

    ``global_skip=True`` (not in the paper; VDSR's global residual) adds the bicubic
    upsampling of the input (its centre channel for 2.5D) to the output, and starts the last
    convolution at zero: the untrained network is exactly bicubic interpolation and learns only
    the missing detail, which converges much faster on small data and budgets (the shipped
    medsr models use it).
    """

    arch = "edsr"
    paper = "Lim et al., CVPRW 2017"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_blocks: int = 16,
        res_scale: float = 1.0,
        mean: float = 0.5,
        global_skip: bool = False,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        check_positive("res_scale", res_scale)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.res_scale = res_scale
        self.mean = mean
        self.sub_mean = MeanShift(mean=mean, channels=in_channels, sign=-1)
        self.add_mean = MeanShift(mean=mean, channels=self.out_channels, sign=+1)
        self.head = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.body = nn.Sequential(
            *[_ResBlock(num_features, res_scale) for _ in range(num_blocks)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(scale=scale, num_features=num_features)
        self.tail = nn.Conv2d(num_features, self.out_channels, 3, padding=1)
        self.global_skip = global_skip
        if global_skip:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(self.sub_mean(lr))
        feat = feat + self.body(feat)
        out = self.tail(self.upsample(feat))
        if not self.global_skip:
            return self.add_mean(out)
        if self.out_channels != self.in_channels:
            centre = self.in_channels // 2
            lr = lr[:, centre : centre + 1]
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + out


class EDSRFull(EDSR):
    """EDSR, the paper's full model: 32 blocks, 256 features, residual scaling 0.1 (~43 M)."""

    arch = "edsr_full"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 256,
        num_blocks: int = 32,
        res_scale: float = 0.1,
        mean: float = 0.5,
        global_skip: bool = False,
    ) -> None:
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            out_channels=out_channels,
            num_features=num_features,
            num_blocks=num_blocks,
            res_scale=res_scale,
            mean=mean,
            global_skip=global_skip,
        )
