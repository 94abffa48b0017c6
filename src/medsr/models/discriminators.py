"""Discriminators: SRGAN VGG-style, Real-ESRGAN U-Net with spectral norm, the paired
MedSRGAN discriminator and the 4-conv DCGAN-style discriminator of the chest X-ray GAN.

All share the interface of :class:`medsr.models.layers.Discriminator`:
``forward(x, *, lr=None) -> logits`` and ``forward_features(x, *, lr=None) ->
(logits, features)``. Logits are raw scores (no sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm

from medsr.errors import ConfigError
from medsr.models.layers import Discriminator, check_positive, scale_steps

__all__ = [
    "DCGANDiscriminator",
    "MedSRGANDiscriminator",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
]


def _conv_bn_lrelu(c_in: int, c_out: int, stride: int, *, kernel: int = 3) -> nn.Sequential:
    padding = (kernel - 1) // 2 if stride == 1 or kernel % 2 == 1 else 1
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


def _run(layers: nn.Sequential, x: Tensor, features: list[Tensor]) -> Tensor:
    for layer in layers:
        x = layer(x)
        features.append(x)
    return x


class VGGStyleDiscriminator(Discriminator):
    """SRGAN's discriminator: a 3x3 conv + LeakyReLU, then seven conv-BN-LeakyReLU blocks
    (64, 64/2, 128, 128/2, 256, 256/2, 512, 512/2 features), a dense 1024 layer, LeakyReLU
    and a dense output.

    Works for any input size: an adaptive average pool brings the last feature map to
    ``pool_size`` x ``pool_size`` (6 x 6 is what a 96 x 96 patch gives in the paper).
    Features: the output of each of the eight conv blocks.
    """

    arch = "srgan"
    paper = "Ledig et al., CVPR 2017"

    def __init__(self, *, in_channels: int = 1, num_features: int = 64, pool_size: int = 6):
        super().__init__(in_channels=in_channels)
        check_positive("num_features", num_features)
        check_positive("pool_size", pool_size)
        self.num_features = num_features
        self.pool_size = pool_size
        nf = num_features
        widths = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf]
        blocks: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, nf, 3, padding=1), nn.LeakyReLU(0.2, True))
        ]
        for i in range(1, len(widths)):
            blocks.append(_conv_bn_lrelu(widths[i - 1], widths[i], stride=1 + i % 2))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * pool_size * pool_size, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward_features(
        self, x: Tensor, *, lr: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """x (B, C, H, W) -> logits (B, 1) and the 8 block outputs."""
        features: list[Tensor] = []
        x = _run(self.features, x, features)
        return self.classifier(self.pool(x)), features


class UNetDiscriminatorSN(Discriminator):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation, in the official key
    layout (``conv0``..``conv9``; spectral-normed convs hold ``weight_orig``, ``weight_u``,
    ``weight_v``), so official discriminator checkpoints load.

    Per-pixel logits ``(B, 1, H, W)``. Upsampling goes to the exact size of the skip, so any
    input size works (the official code needs multiples of 8). Features: the 9 activations
    before ``conv9``.
    """

    arch = "unet"
    paper = "Wang et al., ICCVW 2021 (Real-ESRGAN)"

    def __init__(
        self, *, in_channels: int = 1, num_features: int = 64, skip_connection: bool = True
    ):
        super().__init__(in_channels=in_channels)
        check_positive("num_features", num_features)
        self.num_features = num_features
        self.skip_connection = skip_connection
        nf = num_features
        self.conv0 = nn.Conv2d(in_channels, nf, 3, padding=1)
        self.conv1 = spectral_norm(nn.Conv2d(nf, 2 * nf, 4, 2, 1, bias=False))
        self.conv2 = spectral_norm(nn.Conv2d(2 * nf, 4 * nf, 4, 2, 1, bias=False))
        self.conv3 = spectral_norm(nn.Conv2d(4 * nf, 8 * nf, 4, 2, 1, bias=False))
        self.conv4 = spectral_norm(nn.Conv2d(8 * nf, 4 * nf, 3, 1, 1, bias=False))
        self.conv5 = spectral_norm(nn.Conv2d(4 * nf, 2 * nf, 3, 1, 1, bias=False))
        self.conv6 = spectral_norm(nn.Conv2d(2 * nf, nf, 3, 1, 1, bias=False))
        self.conv7 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = spectral_norm(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    @staticmethod
    def _up_to(x: Tensor, like: Tensor) -> Tensor:
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward_features(
        self, x: Tensor, *, lr: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """x (B, C, H, W) -> logits (B, 1, H, W) and 9 feature maps."""
        if min(x.shape[-2:]) < 8:
            raise ConfigError(
                f"unet discriminator needs inputs of at least 8x8, got {tuple(x.shape)}"
            )
        act = F.leaky_relu
        x0 = act(self.conv0(x), 0.2)
        x1 = act(self.conv1(x0), 0.2)
        x2 = act(self.conv2(x1), 0.2)
        x3 = act(self.conv3(x2), 0.2)
        x4 = act(self.conv4(self._up_to(x3, x2)), 0.2)
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(self._up_to(x4, x1)), 0.2)
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(self._up_to(x5, x0)), 0.2)
        if self.skip_connection:
            x6 = x6 + x0
        x7 = act(self.conv7(x6), 0.2)
        x8 = act(self.conv8(x7), 0.2)
        return self.conv9(x8), [x0, x1, x2, x3, x4, x5, x6, x7, x8]


class MedSRGANDiscriminator(Discriminator):
    """MedSRGAN's paired discriminator: scores a pair (LR, HR) or (LR, SR), so it judges
    whether the high-resolution image is consistent with its low-resolution input.

    - HR path: 3x3 conv + LeakyReLU, then strided conv-BN-LeakyReLU blocks (one per x2/x3
      step of ``scale``) down to the LR size, ending with ``2F`` features.
    - LR path: 3x3 conv + LeakyReLU and a conv-BN-LeakyReLU block to ``2F`` features.
    - The two maps are concatenated (``4F``) and go through six conv-BN-LeakyReLU blocks
      (4F, 4F/2, 8F, 8F/2, 16F, 16F/2), an adaptive average pool to ``pool_size``, a dense
      layer of 100, LeakyReLU and a dense output.

    Call as ``d(sr_or_hr, lr=lr)``. Features: every block output of both paths and the trunk.
    The paper's figure gives the layout; the adaptive pool (any input size) is ours.
    """

    arch = "medsrgan"
    paired = True
    paper = "Gu et al., MTAP 2020 (MedSRGAN)"

    def __init__(
        self,
        *,
        in_channels: int = 1,
        lr_channels: int | None = None,
        scale: int = 4,
        num_features: int = 64,
        pool_size: int = 4,
    ) -> None:
        super().__init__(in_channels=in_channels)
        steps = scale_steps(scale)
        resolved_lr = in_channels if lr_channels is None else lr_channels
        check_positive("lr_channels", resolved_lr)
        check_positive("num_features", num_features)
        check_positive("pool_size", pool_size)
        self.lr_channels = resolved_lr
        self.scale = scale
        self.num_features = num_features
        self.pool_size = pool_size
        nf = num_features
        hr_blocks: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, nf, 3, padding=1), nn.LeakyReLU(0.2, True))
        ]
        for i, step in enumerate(steps):
            c_out = 2 * nf if i == len(steps) - 1 else nf
            hr_blocks.append(
                _conv_bn_lrelu(nf, c_out, stride=step, kernel=step + 2 if step == 3 else 3)
            )
        self.hr_path = nn.Sequential(*hr_blocks)
        self.lr_path = nn.Sequential(
            nn.Sequential(nn.Conv2d(resolved_lr, nf, 3, padding=1), nn.LeakyReLU(0.2, True)),
            _conv_bn_lrelu(nf, 2 * nf, stride=1),
        )
        widths = [4 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf, 16 * nf, 16 * nf]
        self.trunk = nn.Sequential(
            *[
                _conv_bn_lrelu(widths[i], widths[i + 1], stride=1 + i % 2)
                for i in range(len(widths) - 1)
            ]
        )
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * pool_size * pool_size, 100),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(100, 1),
        )

    def forward_features(
        self, x: Tensor, *, lr: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """x: HR or SR (B, C, s*H, s*W); lr: (B, C_lr, H, W) -> logits (B, 1) and features."""
        if lr is None:
            raise ConfigError("the medsrgan discriminator is paired: call it as d(hr_or_sr, lr=lr)")
        if tuple(x.shape[-2:]) != (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale):
            raise ConfigError(
                f"medsrgan discriminator (scale {self.scale}): HR/SR size {tuple(x.shape[-2:])} "
                f"is not {self.scale} x the LR size {tuple(lr.shape[-2:])}"
            )
        features: list[Tensor] = []
        hr_feat = _run(self.hr_path, x, features)
        lr_feat = _run(self.lr_path, lr, features)
        y = _run(self.trunk, torch.cat((lr_feat, hr_feat), 1), features)
        return self.classifier(self.pool(y)), features


class DCGANDiscriminator(Discriminator):
    """The 4-conv discriminator of the chest X-ray GAN, DCGAN-style: 4x4 stride-2 convs with
    64, 128, 256, 512 features, LeakyReLU(0.2), batch norm on all but the first; then a
    global average pool and a dense output (instead of DCGAN's size-specific last conv, so any
    input size of at least 16 x 16 works). Features: the four conv outputs.
    """

    arch = "dcgan"
    paper = "Baraiya & Kothari (chest X-ray CNN vs GAN); Radford et al., ICLR 2016 (DCGAN)"

    def __init__(self, *, in_channels: int = 1, num_features: int = 64):
        super().__init__(in_channels=in_channels)
        check_positive("num_features", num_features)
        self.num_features = num_features
        nf = num_features
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, nf, 4, 2, 1), nn.LeakyReLU(0.2, True)),
            _conv_bn_lrelu(nf, 2 * nf, stride=2, kernel=4),
            _conv_bn_lrelu(2 * nf, 4 * nf, stride=2, kernel=4),
            _conv_bn_lrelu(4 * nf, 8 * nf, stride=2, kernel=4),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * nf, 1))

    def forward_features(
        self, x: Tensor, *, lr: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """x (B, C, H, W) -> logits (B, 1) and the 4 conv-block outputs."""
        features: list[Tensor] = []
        x = _run(self.features, x, features)
        return self.classifier(x), features
