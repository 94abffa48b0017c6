"""RLFN (Kong et al., "Residual Local Feature Network for Efficient Super-Resolution", CVPR
Workshops 2022; winner of the NTIRE 2022 efficient SR challenge, runtime track).

Residual local feature blocks (three 3x3 convolutions with a local residual, a 1x1
convolution and enhanced spatial attention, ESA), all in LR space, one sub-pixel convolution
at the end. Plain convolutions only: nothing to re-parameterise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.models.layers import Generator, bicubic_upsample, centre_channels, check_positive

__all__ = ["RLFN"]


class _ESA(nn.Module):
    """Enhanced spatial attention (Liu et al., RFANet, CVPR 2020) as RLFN uses it: a 1x1
    reduction, a strided 3x3 and a 7x7/3 max-pool for a large receptive field, one 3x3,
    bilinear upsampling back, a 1x1 expansion and a sigmoid mask."""

    def __init__(self, num_features: int, esa_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(num_features, esa_channels, 1)
        self.skip = nn.Conv2d(esa_channels, esa_channels, 1)
        self.down = nn.Conv2d(esa_channels, esa_channels, 3, stride=2)
        self.conv = nn.Conv2d(esa_channels, esa_channels, 3, padding=1)
        self.expand = nn.Conv2d(esa_channels, num_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        low = self.down(reduced)
        # small inputs (tiles, smoke tests): the pool cannot be larger than the map
        kernel = min(7, low.shape[-2], low.shape[-1])
        low = F.max_pool2d(low, kernel_size=kernel, stride=3)
        low = self.conv(low)
        low = F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False)
        mask = torch.sigmoid(self.expand(low + self.skip(reduced)))
        return x * mask


class _RLFB(nn.Module):
    """Residual local feature block: (conv3x3-LeakyReLU) x 3 + input, conv1x1, ESA."""

    def __init__(self, num_features: int, esa_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(num_features, num_features, 3, padding=1) for _ in range(3)
        )
        self.fuse = nn.Conv2d(num_features, num_features, 1)
        self.esa = _ESA(num_features, esa_channels)

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for conv in self.convs:
            out = F.leaky_relu(conv(out), 0.05)
        return self.esa(self.fuse(out + x))


class RLFN(Generator):
    """RLFN; the paper's model has 6 blocks of 52 features and ESA width 16 (0.32 M parameters
    at x4, RGB).

    Differences: one centring constant (0.5) instead of an RGB mean; optional
    ``global_skip`` (VDSR's global residual, as medsr's EDSR and SPAN): the bicubic
    upsampling of the input (its centre channel for 2.5D) is added and the last convolution
    starts at zero, so the untrained network is bicubic interpolation.
    """

    arch = "rlfn"
    paper = "Kong et al., CVPRW 2022"
    supported_scales = (2, 3, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 52,
        num_blocks: int = 6,
        esa_channels: int = 16,
        global_skip: bool = False,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        check_positive("esa_channels", esa_channels)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.esa_channels = esa_channels
        self.global_skip = global_skip
        self.head = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.blocks = nn.Sequential(*[_RLFB(num_features, esa_channels) for _ in range(num_blocks)])
        self.body_tail = nn.Conv2d(num_features, num_features, 3, padding=1)
        self.upsample = nn.Conv2d(num_features, self.out_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        if global_skip:
            nn.init.zeros_(self.upsample.weight)
            nn.init.zeros_(self.upsample.bias)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        head = self.head(lr - 0.5)
        feat = self.body_tail(self.blocks(head)) + head
        out = self.shuffle(self.upsample(feat))
        if self.global_skip:
            return out + bicubic_upsample(centre_channels(lr, self.out_channels), self.scale)
        return out + 0.5
