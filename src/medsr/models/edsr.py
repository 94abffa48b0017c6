"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017): baseline (16 blocks, 64 features) and full (32 blocks, 256 features, residual
scaling 0.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.models.layers import (
    Generator,
    MeanShift,
    PixelShuffleUpsampler,
    centre_channels,
    check_positive,
)

__all__ = ["EDSR", "EDSRFull"]


class _ResBlock(nn.Module):
    """conv-ReLU-conv without batch norm, scaled by ``res_scale`` before the skip."""

    def __init__(self, num_features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_features, num_features, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(Generator):
    """EDSR; the defaults are the paper's baseline model (about 1.5 M parameters at x4, RGB).

    Differences from the paper: the mean subtracted at the input and added back at the output
    is one constant ``mean`` for all channels (default 0.5 for data in [0, 1]) instead of the
    DIV2K RGB mean; x8 uses three x2 sub-pixel steps.

    ``global_skip=True`` (not in the paper; VDSR's global residual) adds the bicubic
    upsampling of the input (its centre channel for 2.5D) to the output, and starts the last
    convolution at zero: the untrained network is exactly bicubic interpolation and learns only
    the missing detail, which converges much faster on small data and budgets (the shipped
    medsr models use it).
    """

    arch = "edsr"
    paper = "Lim et al., CVPRW 2017"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 64,
        num_blocks: int = 16,
        res_scale: float = 1.0,
        mean: float = 0.5,
        global_skip: bool = False,
    ) -> None:
        super().__init__(scale=scale, in_channels=in_channels, out_channels=out_channels)
        check_positive("num_features", num_features)
        check_positive("num_blocks", num_blocks)
        check_positive("res_scale", res_scale)
        self.num_features = num_features
        self.num_blocks = num_blocks
        self.res_scale = res_scale
        self.mean = mean
        self.sub_mean = MeanShift(mean=mean, channels=in_channels, sign=-1)
        self.add_mean = MeanShift(mean=mean, channels=self.out_channels, sign=+1)
        self.head = nn.Conv2d(in_channels, num_features, 3, padding=1)
        self.body = nn.Sequential(
            *[_ResBlock(num_features, res_scale) for _ in range(num_blocks)],
            nn.Conv2d(num_features, num_features, 3, padding=1),
        )
        self.upsample = PixelShuffleUpsampler(scale=scale, num_features=num_features)
        self.tail = nn.Conv2d(num_features, self.out_channels, 3, padding=1)
        self.global_skip = global_skip
        if global_skip:
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)
        self.fused = False

    def forward(self, lr: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, out_channels, scale*H, scale*W)."""
        feat = self.head(self.sub_mean(lr))
        feat = feat + self.body(feat)
        if self.fused:
            if self.training and torch.is_grad_enabled():
                raise RuntimeError(
                    "this EDSR is in its deploy form (fuse()), which is for inference only: "
                    "train the model as loaded by medsr.models.load, not by load_model"
                )
            out = self._phases(self.upsample(feat))  # the phases of the last sub-pixel step
            if not self.global_skip:
                return F.pixel_shuffle(out, self.last_step)
            # the bicubic phases of the whole scale, from the input resolution
            up = self.skip(
                F.pad(centre_channels(lr, self.out_channels), (2,) * 4, mode="replicate")
            )
            if self.last_step == self.scale:  # one step: add the phases, shuffle once
                return F.pixel_shuffle(out + up, self.scale)
            return F.pixel_shuffle(out, self.last_step) + F.pixel_shuffle(up, self.scale)
        out = self.tail(self.upsample(feat))
        if not self.global_skip:
            return self.add_mean(out)
        up = F.interpolate(
            centre_channels(lr, self.out_channels),
            scale_factor=self.scale,
            mode="bicubic",
            align_corners=False,
        )
        return up + out

    def _phases(self, feat: Tensor) -> Tensor:
        """Deploy form: the last sub-pixel convolution and the folded last convolution as
        one 5x5 convolution; its outermost ring of pixels, where the zero padding between the
        two differs, recomputed from strips three pixels wide by the two convolutions."""
        out = self.merged(feat)

        def exact(strip: Tensor) -> Tensor:
            return self.tail(self.last_conv(strip))

        out = torch.cat([exact(feat[..., :3])[..., :1], out[..., 1:]], dim=-1)
        out = torch.cat([out[..., :-1], exact(feat[..., -3:])[..., -1:]], dim=-1)
        out = torch.cat([exact(feat[..., :3, :])[..., :1, :], out[..., 1:, :]], dim=-2)
        return torch.cat([out[..., :-1, :], exact(feat[..., -3:, :])[..., -1:, :]], dim=-2)

    def deepening_problem(self, source: Generator) -> str | None:
        """Why :meth:`deepen_from` cannot start this EDSR from ``source``, or None if it can."""
        if type(source) is not type(self):
            return f"an EDSR deepens only from an EDSR, not a {type(source).__name__}"
        own = {k: v for k, v in self.hparams().items() if k != "num_blocks"}
        theirs = {k: v for k, v in source.hparams().items() if k != "num_blocks"}
        if own != theirs:
            return (
                f"an EDSR deepens only from an EDSR with the same hyper-parameters but "
                f"num_blocks, not {type(source).__name__} {source.hparams()}"
            )
        if source.num_blocks >= self.num_blocks:
            return (
                f"deepening needs fewer blocks in the source: it has {source.num_blocks}, "
                f"this EDSR {self.num_blocks}"
            )
        if self.fused or source.fused:
            return "deepen_from works on the training form, not a fuse()-d EDSR"
        return None

    @torch.no_grad()
    def deepen_from(self, source: EDSR) -> None:
        """Start this EDSR from a shallower trained one (Net2DeeperNet, Chen et al., "Net2Net:
        Accelerating Learning via Knowledge Transfer", ICLR 2016): its head, residual blocks
        (as this model's first ones), the body's last convolution, upsampler and tail are
        copied, and each extra block starts as the identity (its last convolution zero), so
        this model computes exactly what ``source`` does and training goes on from there.

        ``source`` must have every hyper-parameter of this model but fewer blocks, and both
        must be in the training form (not :meth:`fuse`-d).
        """
        problem = self.deepening_problem(source)
        if problem is not None:
            raise ValueError(problem)
        last = f"body.{source.num_blocks}."
        state = {
            (f"body.{self.num_blocks}." + name[len(last) :] if name.startswith(last) else name): t
            for name, t in source.state_dict().items()
        }
        for block in self.body[source.num_blocks : self.num_blocks]:
            nn.init.zeros_(block.body[2].weight)
            nn.init.zeros_(block.body[2].bias)
        result = self.load_state_dict(state, strict=False)
        fresh = {
            f"body.{i}.body.{j}.{kind}"
            for i in range(source.num_blocks, self.num_blocks)
            for j in (0, 2)
            for kind in ("weight", "bias")
        }
        assert not result.unexpected_keys and set(result.missing_keys) == fresh, result

    @torch.no_grad()
    def fuse(self) -> EDSR:
        """Switch to the deploy form in place (same output within float rounding); returns
        self. Nothing is computed at the high resolution any more:

        - the last convolution, which ran on the pixel-shuffled map, becomes a convolution
          on the map before the last shuffle, with one output channel per sub-pixel phase
          (exact: the zero padding is the same pixels);
        - with the last sub-pixel convolution before it (no activation between them) it
          becomes one 5x5 convolution from the features to the phases (a tenth of the
          multiply-adds of the two); only the outermost ring of pixels, where the two
          convolutions' zero padding differs from one 5x5's, is recomputed by the pair;
        - the bicubic skip becomes a fixed 5x5 convolution of the replicate-padded input
          with one output per phase (PyTorch's bicubic clamps indices at the border, which
          is replicate padding), added before the shuffle;
        - the output mean (no skip) goes into the last bias.

        Training after fusing is not supported (the deploy form is for inference).
        """
        if self.fused:
            return self
        last_conv, shuffle = self.upsample[-2], self.upsample[-1]
        step = int(shuffle.upscale_factor)
        phases = step * step
        weight = self.tail.weight  # (out, F, 3, 3) on the shuffled map
        out_ch, feats = weight.shape[:2]
        folded = torch.zeros(out_ch * phases, feats * phases, 3, 3, dtype=weight.dtype)
        for py in range(step):
            for px in range(step):
                rows = torch.arange(out_ch) * phases + py * step + px
                for ky in range(3):
                    for kx in range(3):
                        dy, i = divmod(py + ky - 1, step)
                        dx, j = divmod(px + kx - 1, step)
                        cols = torch.arange(feats) * phases + i * step + j
                        folded[rows[:, None], cols[None, :], dy + 1, dx + 1] = weight[:, :, ky, kx]
        tail = nn.Conv2d(feats * phases, out_ch * phases, 3, padding=1)
        tail.weight.copy_(folded)
        bias = self.tail.bias.repeat_interleave(phases)
        tail.bias.copy_(bias if self.global_skip else bias + self.mean)
        self.tail = tail.to(weight.device)
        self.last_conv = last_conv
        self.merged = _compose(last_conv, self.tail)
        self.upsample = nn.Sequential(*list(self.upsample)[:-2])
        self.last_step = step
        if self.global_skip:
            self.skip = _bicubic_phases(self.scale, self.out_channels).to(weight.device)
        self.fused = True
        return self


def _compose(first: nn.Conv2d, second: nn.Conv2d) -> nn.Conv2d:
    """The 5x5 convolution (padding 2) equal to two 3x3 ones (padding 1) in a row, away from
    the outermost ring of pixels; computed in float64."""
    w1, w2 = first.weight.double(), second.weight.double()
    kernel = torch.zeros(w2.shape[0], w1.shape[1], 5, 5, dtype=torch.float64)
    for ky in range(3):
        for kx in range(3):
            for ly in range(3):
                for lx in range(3):
                    kernel[:, :, ky + ly, kx + lx] += w2[:, :, ky, kx] @ w1[:, :, ly, lx]
    bias = second.bias.double() + torch.einsum("ocij,c->o", w2, first.bias.double())
    conv = nn.Conv2d(w1.shape[1], w2.shape[0], 5, padding=2).to(first.weight.device)
    conv.weight.data.copy_(kernel)
    conv.bias.data.copy_(bias)
    return conv


def _bicubic_phases(scale: int, channels: int) -> nn.Conv2d:
    """PyTorch's bicubic upsampling by ``scale`` (align_corners=False) as a fixed 5x5
    convolution of the input padded by 2 (replicate), one output per channel and sub-pixel
    phase, in the order of ``pixel_shuffle(.., scale)``.

    The taps are read off PyTorch's own interpolation of a 1D impulse (bicubic is separable
    and, away from the borders, shift invariant), so they match its arithmetic exactly.
    """
    impulse = torch.zeros(1, 1, 1, 16, dtype=torch.float64)
    impulse[..., 8] = 1.0
    line = F.interpolate(impulse, size=(1, 16 * scale), mode="bicubic", align_corners=False)
    taps = torch.zeros(scale, 5, dtype=torch.float64)  # phase p, input offset d (-2..2)
    for p in range(scale):
        for d in range(-2, 3):
            # output pixel scale*k + p reads input k + d; the impulse is at input 8
            taps[p, d + 2] = line[0, 0, 0, scale * (8 - d) + p]
    phases = scale * scale
    conv = nn.Conv2d(channels, channels * phases, 5, bias=False, groups=channels)
    kernel = torch.einsum("ai,bj->abij", taps, taps).reshape(phases, 1, 5, 5)
    conv.weight.data.copy_(kernel.repeat(channels, 1, 1, 1).float())
    conv.weight.requires_grad_(False)
    return conv


class EDSRFull(EDSR):
    """EDSR, the paper's full model: 32 blocks, 256 features, residual scaling 0.1 (~43 M)."""

    arch = "edsr_full"

    def __init__(
        self,
        *,
        scale: int = 4,
        in_channels: int = 1,
        out_channels: int | None = None,
        num_features: int = 256,
        num_blocks: int = 32,
        res_scale: float = 0.1,
        mean: float = 0.5,
        global_skip: bool = False,
    ) -> None:
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            out_channels=out_channels,
            num_features=num_features,
            num_blocks=num_blocks,
            res_scale=res_scale,
            mean=mean,
            global_skip=global_skip,
        )
