"""ESPCN (Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016)."""

from __future__ import annotations

from torch import Tensor, nn

from medsr.models.layers import Generator, check_positive

__all__ = ["ESPCN"]


class ESPCN(Generator):
    """Two tanh convolutions in LR space, then one convolution to ``out*r*r`` channels and a
    single pixel shuffle by ``r = scale`` (5-64, 3-32, 3-r*r as in the paper)."""

    arch = "espcn"
    paper = "Shi et al., CVPR 2016"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        mid_features: int = 32,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("mid_features", mid_features)
        self.num_features = num_features
        self.mid_features = mid_features
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(num_features, mid_features, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(mid_features, self.out_channels * scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        return self.body(lr)
