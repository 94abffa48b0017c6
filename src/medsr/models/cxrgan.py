"""The generator of the chest X-ray GAN (Baraiya & Kothari, "Deep learning for medical image
super-resolution for precision diagnosis"): a DCGAN-style generator with six residual blocks.
"""

from __future__ import annotations

from torch import Tensor, nn

from medsr.models.layers import Generator, check_positive, scale_steps

__all__ = ["CXRGANGenerator"]


class _ResidualBlock(nn.Module):
    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1, bias=False),
            nn.BatchNorm2d(num_features),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1, bias=False),
            nn.BatchNorm2d(num_features),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CXRGANGenerator(Generator):
    """Head conv + ReLU, ``num_blocks`` residual blocks (conv-BN-ReLU-conv-BN), a long skip,
    then DCGAN-style upsampling: per x2 (or x3) step a transposed convolution (kernel
    ``step + 2``, stride ``step``; 4x4 stride 2 as in DCGAN) with BN and ReLU, and a 3x3 tail.

    The paper states only "a variant of DCGAN with six residual blocks" and a feature-matching
    loss; the layer details are our reading of that, and the output is linear (no tanh) since
    our images live in [0, 1].
    """

    arch = "cxrgan"
    paper = "Baraiya & Kothari (chest X-ray CNN vs GAN)"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_blocks: int = 6,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        self.num_features = num_features
        self.num_blocks = num_blocks
        nf = num_features
        self.head = nn.Sequential(nn.Conv2d(in_channels, nf, 3, padding=1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            *[_ResidualBlock(nf) for _ in range(num_blocks)],
            nn.Conv2d(nf, nf, 3, padding=1, bias=False),
            nn.BatchNorm2d(nf),
        )
        upsample: list[nn.Module] = []
        for step in scale_steps(scale):
            upsample += [
                nn.ConvTranspose2d(nf, nf, step + 2, stride=step, padding=1, bias=False),
                nn.BatchNorm2d(nf),
                nn.ReLU(inplace=True),
            ]
        self.upsample = nn.Sequential(*upsample)
        self.tail = nn.Conv2d(nf, self.out_channels, 3, padding=1)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(lr)
        feat = feat + self.body(feat)
        return self.tail(self.upsample(feat))
