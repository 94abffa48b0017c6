"""RWMAN, the generator of MedSRGAN (Gu et al., "MedSRGAN: medical images super-resolution
using generative adversarial networks", Multimedia Tools and Applications 2020): RCAN with
residual whole-map attention blocks instead of channel attention."""

from __future__ import annotations

from torch import Tensor, nn

from medsr.models.layers import Generator, MeanShift, PixelShuffleUpsampler, check_positive
from medsr.models.rcan import ResidualGroup

__all__ = ["RWMAB", "RWMAN"]


class RWMAB(nn.Module):
    """Residual whole-map attention block: conv-ReLU-conv gives ``y``; a 1x1 conv and a
    sigmoid turn ``y`` into a weight for every pixel of every channel (the whole map, not one
    number per channel as in RCAN); output ``x + y * weight``."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.attention = nn.Sequential(nn.Conv2d(num_features, num_features, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        return x + y * self.attention(y)


class RWMAN(Generator):
    """Head conv, ``num_groups`` residual groups of ``num_blocks`` RWMABs (short skips), a
    long skip, sub-pixel upsampling, tail conv. Defaults follow MedSRGAN: 8 groups of 16
    blocks, 64 features.

    Differences from the paper: the long skip is an addition (as in RCAN; MedSRGAN's reference
    code concatenates and fuses with a 1x1 conv), the output has no sigmoid, and the input
    mean ``mean`` is subtracted/added as in our RCAN.
    """

    arch = "rwman"
    paper = "Gu et al., MTAP 2020 (MedSRGAN)"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_groups: int = 8,
        num_blocks: int = 16,
        mean: float = 0.5,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        for name, value in (
            ("num_features", num_features),
            ("num_groups", num_groups),
            ("num_blocks", num_blocks),
        ):
            check_positive(name, value)
        self.num_features = num_features
        self.num_groups = num_groups
        self.num_blocks = num_blocks
        self.mean = mean
        nf = num_features
        self.sub_mean = MeanShift(mean=mean, channels=in_channels, sign=-1)
        self.add_mean = MeanShift(mean=mean, channels=self.out_channels, sign=+1)
        self.head = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.body = nn.Sequential(
            *[ResidualGroup(nf, num_blocks, lambda: RWMAB(nf)) for _ in range(num_groups)],
            nn.Conv2d(nf, nf, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(scale=scale, num_features=nf)
        self.tail = nn.Conv2d(nf, self.out_channels, 3, padding=1)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(self.sub_mean(lr))
        feat = feat + self.body(feat)
        return self.add_mean(self.tail(self.upsample(feat)))
