"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV 2018)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from medsr.models.layers import Generator, MeanShift, PixelShuffleUpsampler, check_positive

__all__ = ["RCAN", "ChannelAttention", "ResidualGroup"]


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool, 1x1 down by ``reduction``, ReLU, 1x1 up,
    sigmoid; rescales each channel."""

    def __init__(self, num_features: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, num_features // reduction)
        self.body = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(num_features, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_features, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.body(x)


class RCAB(nn.Module):
    """Residual channel attention block: conv-ReLU-conv, channel attention, identity skip."""

    def __init__(self, num_features: int, reduction: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            ChannelAttention(num_features, reduction),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResidualGroup(nn.Module):
    """``num_blocks`` blocks and a conv, with a short skip over the whole group."""

    def __init__(
        self, num_features: int, num_blocks: int, make_block: Callable[[], nn.Module]
    ) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *[make_block() for _ in range(num_blocks)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class RCAN(Generator):
    """Residual-in-residual: ``num_groups`` residual groups of ``num_blocks`` RCABs, a long
    skip, sub-pixel upsampling (about 15.6 M parameters at x4, RGB, with the defaults).

    As in our EDSR, the input mean is one constant ``mean`` (default 0.5) for all channels.
    """

    arch = "rcan"
    paper = "Zhang et al., ECCV 2018"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_groups: int = 10,
        num_blocks: int = 20,
        reduction: int = 16,
        mean: float = 0.5,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        for name, value in (
            ("num_features", num_features),
            ("num_groups", num_groups),
            ("num_blocks", num_blocks),
            ("reduction", reduction),
        ):
            check_positive(name, value)
        self.num_features = num_features
        self.num_groups = num_groups
        self.num_blocks = num_blocks
        self.reduction = reduction
        self.mean = mean
        nf = num_features
        self.sub_mean = MeanShift(mean=mean, channels=in_channels, sign=-1)
        self.add_mean = MeanShift(mean=mean, channels=self.out_channels, sign=+1)
        self.head = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.body = nn.Sequential(
            *[
                ResidualGroup(nf, num_blocks, lambda: RCAB(nf, reduction))
                for _ in range(num_groups)
            ],
            nn.Conv2d(nf, nf, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(scale=scale, num_features=nf)
        self.tail = nn.Conv2d(nf, self.out_channels, 3, padding=1)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(self.sub_mean(lr))
        feat = feat + self.body(feat)
        return self.add_mean(self.tail(self.upsample(feat)))
