"""The residual CNN of the chest X-ray study (Baraiya & Kothari, "Deep learning for medical
image super-resolution for precision diagnosis"): five 3x3 convolutions with 64 filters,
batch normalisation and residual connections."""

from __future__ import annotations

from torch import Tensor, nn

from medsr.errors import ConfigError
from medsr.models.layers import Generator, bicubic_upsample, centre_channels, check_positive

__all__ = ["ResCNN"]


class _ConvBNReLU(nn.Module):
    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_features, num_features, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(num_features)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act(self.bn(self.conv(x)))


class ResCNN(Generator):
    """Pre-upsampling residual CNN: bicubic upsampling, ``num_layers`` 3x3 convolutions
    (the inner ones conv-BN-ReLU with an identity skip each), and a global residual to the
    bicubic image, so the network learns the missing detail.

    The paper gives only "five conv layers, 64 filters, 3x3, batch norm, residual
    connections"; where upsampling happens is not stated: pre-upsampling (as in SRCNN/VDSR)
    is our choice.
    """

    arch = "rescnn"
    paper = "Baraiya & Kothari (chest X-ray CNN vs GAN)"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_layers: int = 5,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        if num_layers < 2:
            raise ConfigError(f"num_layers must be at least 2, got {num_layers!r}")
        self.num_features = num_features
        self.num_layers = num_layers
        self.head = nn.Sequential(
            nn.Conv2d(in_channels, num_features, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.body = nn.Sequential(*[_ConvBNReLU(num_features) for _ in range(num_layers - 2)])
        self.tail = nn.Conv2d(num_features, self.out_channels, 3, padding=1)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        up = bicubic_upsample(lr, self.scale)
        return centre_channels(up, self.out_channels) + self.tail(self.body(self.head(up)))
