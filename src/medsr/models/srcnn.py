"""SRCNN (Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", 2014/2016)."""

from __future__ import annotations

from torch import Tensor, nn

from medsr.models.layers import Generator, bicubic_upsample, check_positive

__all__ = ["SRCNN"]


class SRCNN(Generator):
    """Three convolutions on a bicubic-upsampled input: patch extraction, non-linear mapping,
    reconstruction (the 9-5-5 variant by default; ``mid_kernel_size=1`` gives 9-1-5).

    Unlike the paper the bicubic upsampling happens inside the model (the contract is LR in)
    and the convolutions are zero-padded, so the output keeps the full size.
    """

    arch = "srcnn"
    paper = "Dong et al., ECCV 2014 / TPAMI 2016"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        mid_features: int = 32,
        mid_kernel_size: int = 5,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        for name, value in (
            ("num_features", num_features),
            ("mid_features", mid_features),
            ("mid_kernel_size", mid_kernel_size),
        ):
            check_positive(name, value)
        self.num_features = num_features
        self.mid_features = mid_features
        self.mid_kernel_size = mid_kernel_size
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 9, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, mid_features, mid_kernel_size, padding=mid_kernel_size // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_features, self.out_channels, 5, padding=2),
        )

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        return self.body(bicubic_upsample(lr, self.scale))
