"""SRResNet, the generator of SRGAN (Ledig et al., "Photo-Realistic Single Image
Super-Resolution Using a Generative Adversarial Network", CVPR 2017)."""

from __future__ import annotations

from torch import Tensor, nn

from medsr.models.layers import Generator, PixelShuffleUpsampler, check_positive

__all__ = ["SRResNet"]


class _ResidualBlockBN(nn.Module):
    """conv-BN-PReLU-conv-BN with an identity skip."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
            nn.PReLU(),
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.BatchNorm2d(num_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(Generator):
    """9x9 head with PReLU, ``num_blocks`` residual blocks with batch norm, a conv-BN with a
    long skip, sub-pixel x2 steps with PReLU (one x3 step for scale 3), 9x9 tail.

    Scale 3 and 8 are our extension (the paper shows x4 only).
    """

    arch = "srresnet"
    paper = "Ledig et al., CVPR 2017"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_blocks: int = 16,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_features, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[_ResidualBlockBN(num_features) for _ in range(num_blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1), nn.BatchNorm2d(num_features)
        )
        self.upsample = PixelShuffleUpsampler(
            scale=scale, num_features=num_features, activation="prelu"
        )
        self.tail = nn.Conv2d(num_features, self.out_channels, 9, padding=4)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(lr)
        feat = feat + self.body_tail(self.body(feat))
        return self.tail(self.upsample(feat))
