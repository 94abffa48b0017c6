"""RRDBNet, the generator of ESRGAN (Wang et al., ECCV Workshops 2018) and Real-ESRGAN
(Wang et al., ICCV Workshops 2021), in the official parameter-name layout so that official
checkpoints load directly (see :func:`medsr.models.load_official_esrgan`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.models.layers import Generator, check_positive, pad_to_multiple

__all__ = ["RRDB", "RRDBNet", "ResidualDenseBlock"]


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (``conv1``..``conv5``), LeakyReLU(0.2) after the first
    four, output scaled by 0.2 and added to the input."""

    def __init__(self, num_features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_features, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(num_features + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(num_features + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(num_features + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(num_features + 4 * growth, num_features, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x1 = self.act(self.conv1(x))
        x2 = self.act(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.act(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.act(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x + 0.2 * x5


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks (``rdb1``..``rdb3``), scaled by
    0.2 and added to the input."""

    def __init__(self, num_features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_features, growth)
        self.rdb2 = ResidualDenseBlock(num_features, growth)
        self.rdb3 = ResidualDenseBlock(num_features, growth)

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.2 * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(Generator):
    """``conv_first``, ``num_blocks`` RRDBs (``body.N``), ``conv_body`` with a long skip, then
    nearest-neighbour x2 + conv steps (``conv_up1``, ``conv_up2``, and ``conv_up3`` for x8),
    ``conv_hr`` and ``conv_last``. With the defaults at x4 and 3 channels: 16,697,987
    parameters, as the official model.

    Scales 1 and 2 follow Real-ESRGAN: the input is pixel-unshuffled by 4 or 2 first (so the
    network still upsamples by 4); such inputs are reflect-padded to a multiple of 4 or 2 and
    the output cropped back. Scale 8 adds ``conv_up3`` (as community x8 ESRGAN models).
    Scale 3 is not supported (no official layout).
    """

    arch = "rrdbnet"
    supported_scales = (1, 2, 4, 8)
    paper = "Wang et al., ECCVW 2018 (ESRGAN); ICCVW 2021 (Real-ESRGAN)"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_blocks: int = 23,
        growth: int = 32,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        for name, value in (
            ("num_features", num_features),
            ("num_blocks", num_blocks),
            ("growth", growth),
        ):
            check_positive(name, value)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.growth = growth
        self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
        nf = num_features
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, nf, 3, padding=1)
        self.body = nn.Sequential(*[RRDB(nf, growth) for _ in range(num_blocks)])
        self.conv_body = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_up3 = nn.Conv2d(nf, nf, 3, padding=1) if scale == 8 else None
        self.conv_hr = nn.Conv2d(nf, nf, 3, padding=1)
        self.conv_last = nn.Conv2d(nf, self.out_channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self._init_weights()

    def _init_weights(self) -> None:
        # ESRGAN's initialisation: Kaiming normal scaled by 0.1 keeps the 23 residual blocks
        # near identity at the start, which the paper needs for stable training.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.weight.data.mul_(0.1)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _upsample(self, conv: nn.Module, feat: Tensor) -> Tensor:
        return self.act(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        height = width = 0
        x = lr
        if self.unshuffle > 1:
            x, height, width = pad_to_multiple(x, self.unshuffle)
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self._upsample(self.conv_up1, feat)
        feat = self._upsample(self.conv_up2, feat)
        if self.conv_up3 is not None:
            feat = self._upsample(self.conv_up3, feat)
        out = self.conv_last(self.act(self.conv_hr(feat)))
        if self.unshuffle > 1:
            out = out[..., : height * self.scale, : width * self.scale]
        return out
