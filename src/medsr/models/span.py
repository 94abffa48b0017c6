"""SPAN (Wan et al., "Swift Parameter-free Attention Network for Efficient Super-Resolution",
CVPR Workshops 2024; winner of the NTIRE 2024 efficient SR challenge).

Every 3x3 convolution is a re-parameterisable ``Conv3XC`` block: trained as a 1x1 expansion,
a 3x3 convolution and a 1x1 projection plus a 1x1 shortcut, deployed as one plain 3x3
convolution (:meth:`SPAN.fuse`). Attention is parameter-free: ``sigmoid(f) - 0.5`` of the
block's own features, so the deployed network is nothing but 3x3/1x1 convolutions,
element-wise products and a pixel shuffle: the fastest kind of network on a CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.models.layers import Generator, bicubic_upsample, centre_channels, check_positive

__all__ = ["SPAN", "Conv3XC"]


class Conv3XC(nn.Module):
    """A 3x3 convolution that trains as ``1x1 -> 3x3 -> 1x1`` (+ a 1x1 shortcut).

    The input is zero-padded once and the three convolutions run unpadded, so the training
    form is exactly a 3x3 convolution with zero padding 1 (borders included) and
    :meth:`fuse` can fold it into one. After :meth:`fuse` the module holds only ``conv``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, gain: int = 2) -> None:
        super().__init__()
        mid = in_channels * gain
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.expand: nn.Conv2d | None = nn.Conv2d(in_channels, mid, 1)
        self.spatial: nn.Conv2d | None = nn.Conv2d(mid, out_channels * gain, 3)
        self.project: nn.Conv2d | None = nn.Conv2d(out_channels * gain, out_channels, 1)
        self.shortcut: nn.Conv2d | None = nn.Conv2d(in_channels, out_channels, 1)
        self.conv: nn.Conv2d | None = None

    @property
    def fused(self) -> bool:
        return self.conv is not None

    def forward(self, x: Tensor) -> Tensor:
        if self.conv is not None:
            return self.conv(x)
        assert self.expand and self.spatial and self.project and self.shortcut
        branch = self.project(self.spatial(self.expand(F.pad(x, (1, 1, 1, 1)))))
        return branch + self.shortcut(x)

    @torch.no_grad()
    def fuse(self) -> None:
        """Replace the branches by the one equivalent 3x3 convolution (idempotent)."""
        if self.conv is not None:
            return
        assert self.expand and self.spatial and self.project and self.shortcut
        w_a = self.expand.weight[:, :, 0, 0]  # (M, I)
        w_3 = self.spatial.weight  # (N, M, 3, 3)
        w_b = self.project.weight[:, :, 0, 0]  # (O, N)
        # expand then 3x3: weights (N, I, 3, 3); the expansion's bias reaches every tap
        weight = torch.einsum("nmhw,mi->nihw", w_3, w_a)
        bias = self.spatial.bias + torch.einsum("nmhw,m->n", w_3, self.expand.bias)
        # then the 1x1 projection
        weight = torch.einsum("on,nihw->oihw", w_b, weight)
        bias = self.project.bias + w_b @ bias
        # the shortcut is the centre tap
        weight[:, :, 1, 1] += self.shortcut.weight[:, :, 0, 0]
        bias = bias + self.shortcut.bias
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1)
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
        conv.to(device=w_3.device, dtype=w_3.dtype)
        self.conv = conv
        self.expand = self.spatial = self.project = self.shortcut = None


class _SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC with SiLU between them, then
    ``(f3 + x) * (sigmoid(f3) - 0.5)``. Returns the block output and ``f1`` (SPAN
    concatenates the first block's intermediate features at the end)."""

    def __init__(self, num_features: int, gain: int) -> None:
        super().__init__()
        self.c1 = Conv3XC(num_features, num_features, gain=gain)
        self.c2 = Conv3XC(num_features, num_features, gain=gain)
        self.c3 = Conv3XC(num_features, num_features, gain=gain)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f1 = F.silu(self.c1(x))
        f2 = F.silu(self.c2(f1))
        f3 = self.c3(f2)
        attention = torch.sigmoid(f3) - 0.5
        return (f3 + x) * attention, f1


class SPAN(Generator):
    """SPAN with ``num_blocks`` attention blocks of ``num_features`` channels, all in LR space,
    and one sub-pixel convolution (a single pixel shuffle by ``scale``) at the end.

    The paper's model: 6 blocks, 48 features, ``expansion`` 2 (the width factor inside each
    Conv3XC while training; 1 trains about 3x faster on a CPU and deploys to the same network
    size) (0.43 M parameters at x4, RGB). Differences: any
    number of blocks (the feature concatenation takes the head, the first block's first
    features, the second-to-last and the last block); optional ``global_skip`` (VDSR's global
    residual, as medsr's EDSR): the bicubic upsampling of the input (its centre channel for
    2.5D) is added and the last convolution starts at zero, so the untrained network is
    bicubic interpolation.

    :meth:`fuse` turns every Conv3XC into a plain 3x3 convolution for inference; the fused
    network gives the same output (within float rounding) and runs 2-3x faster.
    """

    arch = "span"
    paper = "Wan et al., CVPRW 2024"
    supported_scales = (2, 3, 4)

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 48,
        num_blocks: int = 6,
        expansion: int = 2,
        global_skip: bool = False,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        check_positive("expansion", expansion)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.expansion = expansion
        self.global_skip = global_skip
        self.head = Conv3XC(in_channels, num_features, gain=expansion)
        self.blocks = nn.ModuleList(_SPAB(num_features, expansion) for _ in range(num_blocks))
        self.body_tail = Conv3XC(num_features, num_features, gain=expansion)
        self.concat = nn.Conv2d(num_features * 4, num_features, 1)
        self.upsample = nn.Conv2d(num_features, self.out_channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)
        if global_skip:
            nn.init.zeros_(self.upsample.weight)
            nn.init.zeros_(self.upsample.bias)

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        # centred input: the data are in [0, 1]
        head = self.head(lr - 0.5)
        feat = head
        first = head
        before_last = head
        for index, block in enumerate(self.blocks):
            before_last = feat
            feat, f1 = block(feat)
            if index == 0:
                first = f1
        last = self.body_tail(feat)
        mixed = self.concat(torch.cat([head, last, first, before_last], dim=1))
        out = self.shuffle(self.upsample(mixed))
        if self.global_skip:
            return out + bicubic_upsample(centre_channels(lr, self.out_channels), self.scale)
        return out + 0.5

    def fuse(self) -> SPAN:
        """Fold every Conv3XC into one 3x3 convolution in place (for inference); returns self.

        Training after fusing trains the plain network; a checkpoint of a fused model loads
        into an unfused one only after fusing that one too.
        """
        for module in self.modules():
            if isinstance(module, Conv3XC):
                module.fuse()
        return self
