"""The Real-ESRGAN second-order random degradation and its blur kernels."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.transforms.degrade.base import (
    Seed,
    Stage,
    _check_divisible,
    _choice,
    _from4d,
    _pad,
    _randn,
    _to4d,
    _uniform,
    as_generator,
)
from medsr.transforms.degrade.jpeg import jpeg
from medsr.transforms.degrade.resample import Bicubic

# -- Real-ESRGAN second-order pipeline ---------------------------------------------------------
KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def random_blur_kernel(
    g: torch.Generator,
    *,
    size: int,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
    kernel_prob: Sequence[float],
) -> torch.Tensor:
    """A random ``(size, size)`` blur kernel of the Real-ESRGAN family (float64, sums to 1).

    Types (chosen with ``kernel_prob``): isotropic / anisotropic Gaussian
    ``exp(-q / 2)``, generalized Gaussian ``exp(-q^beta / 2)`` and plateau
    ``1 / (1 + q^beta)``, with ``q = d^T Sigma^-1 d``, ``Sigma = R diag(sx^2, sy^2) R^T``,
    sigmas uniform in ``sigma_range`` (equal for the isotropic ones) and rotation uniform in
    [-pi, pi]. ``beta`` is uniform in ``[lo, 1]`` or ``[1, hi]`` with equal odds.
    """
    kind = KERNEL_TYPES[_choice(g, kernel_prob)]
    sx = _uniform(g, *sigma_range)
    if kind.endswith("aniso"):
        sy = _uniform(g, *sigma_range)
        theta = _uniform(g, -math.pi, math.pi)
    else:
        sy, theta = sx, 0.0
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sx * sx, sy * sy], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    d = torch.stack([xx, yy], dim=-1)
    q = torch.einsum("...i,ij,...j->...", d, inv, d)
    if kind.startswith("generalized") or kind.startswith("plateau"):
        lo, hi = betag_range if kind.startswith("generalized") else betap_range
        beta = _uniform(g, lo, 1.0) if _uniform(g, 0.0, 1.0) < 0.5 else _uniform(g, 1.0, hi)
        kernel = torch.exp(-0.5 * q**beta) if kind.startswith("generalized") else 1 / (1 + q**beta)
    else:
        kernel = torch.exp(-0.5 * q)
    return kernel / kernel.sum()


def sinc_kernel(cutoff: float, size: int) -> torch.Tensor:
    """Circular low-pass (2D jinc) kernel with angular cut-off ``cutoff`` (rad/pixel)."""
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    kernel = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    kernel = torch.where(r == 0, torch.full_like(r, cutoff**2 / (4 * math.pi)), kernel)
    return kernel / kernel.sum()


def _filter2d(x4: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    k = kernel.shape[-1]
    b, c, h, w = x4.shape
    flat = _pad(x4.reshape(b * c, 1, h, w), (k // 2, k // 2, k // 2, k // 2))
    weight = kernel.to(dtype=x4.dtype, device=x4.device)
    if k <= 7:
        return F.conv2d(flat, weight.view(1, 1, k, k)).reshape(b, c, h, w)
    # Large kernels: the same correlation through the FFT (several times faster on CPU). The
    # padded image is circularly convolved with the flipped kernel; the wrapped-around part
    # falls outside the valid region kept below.
    size = flat.shape[-2:]
    spectrum = torch.fft.rfft2(flat) * torch.fft.rfft2(weight.flip(0, 1), s=size)
    out = torch.fft.irfft2(spectrum, s=size)[..., k - 1 :, k - 1 :]
    return out.reshape(b, c, h, w)


@dataclass(frozen=True)
class RealESRGAN(Stage):
    """The Real-ESRGAN second-order random degradation (Wang et al., ICCVW 2021).

    Twice: random blur (Gaussian / generalized / plateau, iso- or anisotropic, or a sinc
    kernel), random resize (up / down / keep, mode area / bilinear / bicubic), Gaussian or
    Poisson noise, JPEG; then a final resize to exactly ``H/scale`` with an optional sinc
    filter and JPEG, in random order; output quantised to 8 bits. Defaults are the paper's
    x4 settings (noise sigmas in 8-bit units, i.e. divided by 255). Written from the paper;
    differences from the reference code: JPEG by Pillow per channel (greyscale), Poisson
    noise at 256 levels (the reference derives the level count from the image's distinct
    values, which for float medical images says nothing), all draws from one
    ``torch.Generator``. The noise-free counterpart is antialiased bicubic.
    """

    name: ClassVar[str] = "realesrgan"
    random: ClassVar[bool] = True
    scale: int = 4
    kernel_size_range: tuple[int, int] = (7, 21)
    kernel_prob: tuple[float, float, float, float, float, float] = (
        0.45,
        0.25,
        0.12,
        0.03,
        0.12,
        0.03,
    )
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[int, int] = (30, 95)
    second_blur_prob: float = 0.8
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[int, int] = (30, 95)
    final_sinc_prob: float = 0.8

    def _check(self) -> None:
        if self.scale < 1:
            raise ConfigError(f"realesrgan.scale must be >= 1, got {self.scale}")
        lo, hi = self.kernel_size_range
        if lo < 3 or lo > hi or lo % 2 == 0 or hi % 2 == 0:
            raise ConfigError(
                f"realesrgan.kernel_size_range must be odd sizes [low, high] >= 3, got {lo, hi}"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") or f.name.endswith("_prob2"):
                values = value if isinstance(value, tuple) else (value,)
                if any(not 0.0 <= v <= 1.0 for v in values):
                    raise ConfigError(f"realesrgan.{f.name} must be in [0, 1], got {value}")
            elif isinstance(value, tuple) and (value[0] > value[1] or value[0] < 0):
                raise ConfigError(f"realesrgan.{f.name} must be [low, high] >= 0, got {value}")
        for name in ("kernel_prob", "resize_prob", "resize_prob2"):
            if sum(getattr(self, name)) <= 0:
                raise ConfigError(f"realesrgan.{name} must not be all zero")
        for name in ("jpeg_range", "jpeg_range2"):
            q = getattr(self, name)
            if not 1 <= q[0] <= q[1] <= 100:
                raise ConfigError(f"realesrgan.{name} must be in 1..100, got {q}")

    def factors(self) -> tuple[int, int]:
        return (self.scale, self.scale)

    def deterministic(self) -> Stage:
        return Bicubic(scale=self.scale)

    # The per-image pipeline; every random draw comes from ``g`` in a fixed order.
    def _kernel(
        self,
        g: torch.Generator,
        sinc_prob: float,
        sigma: tuple[float, float],
        betag: tuple[float, float],
        betap: tuple[float, float],
    ) -> torch.Tensor:
        lo, hi = self.kernel_size_range
        size = lo + 2 * int(torch.randint(0, (hi - lo) // 2 + 1, (), generator=g))
        if _uniform(g, 0.0, 1.0) < sinc_prob:
            low_cut = math.pi / 3 if size < 13 else math.pi / 5
            return sinc_kernel(_uniform(g, low_cut, math.pi), size)
        return random_blur_kernel(
            g,
            size=size,
            sigma_range=sigma,
            betag_range=betag,
            betap_range=betap,
            kernel_prob=self.kernel_prob,
        )

    @staticmethod
    def _resize(x: torch.Tensor, size: tuple[int, int], g: torch.Generator) -> torch.Tensor:
        mode = ("area", "bilinear", "bicubic")[int(torch.randint(0, 3, (), generator=g))]
        size = (max(1, size[0]), max(1, size[1]))
        if mode == "area":
            return F.interpolate(x, size=size, mode="area")
        return F.interpolate(x, size=size, mode=mode, align_corners=False)

    @staticmethod
    def _noise(
        x: torch.Tensor,
        g: torch.Generator,
        gaussian_prob: float,
        sigma_range: tuple[float, float],
        poisson_range: tuple[float, float],
        gray_prob: float,
    ) -> torch.Tensor:
        c = x.shape[1]
        use_gaussian = _uniform(g, 0.0, 1.0) < gaussian_prob
        gray = _uniform(g, 0.0, 1.0) < gray_prob
        shape = (1, 1 if gray else c, *x.shape[-2:])
        if use_gaussian:
            sigma = _uniform(g, *sigma_range) / 255.0
            noise = sigma * _randn(shape, g, x)
        else:
            scale = _uniform(g, *poisson_range)
            levels = 256.0
            base = x.mean(dim=1, keepdim=True) if gray else x
            rates = (base.clamp(0.0, 1.0) * levels).double().to(g.device)
            counts = torch.poisson(rates, generator=g).to(device=x.device, dtype=x.dtype)
            noise = (counts / levels - base) * scale
        return (x + noise.expand_as(x)).clamp(0.0, 1.0)

    def _jpeg(self, x: torch.Tensor, g: torch.Generator, q_range: tuple[int, int]) -> torch.Tensor:
        quality = round(_uniform(g, float(q_range[0]), float(q_range[1])))
        return jpeg(x.clamp(0.0, 1.0), quality)

    def _one(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        h, w = x.shape[-2:]
        s = self.scale
        # first order
        out = _filter2d(
            x, self._kernel(g, self.sinc_prob, self.blur_sigma, self.betag_range, self.betap_range)
        )
        out = self._random_resize(out, g, self.resize_prob, self.resize_range, None)
        out = self._noise(
            out,
            g,
            self.gaussian_noise_prob,
            self.noise_range,
            self.poisson_scale_range,
            self.gray_noise_prob,
        )
        out = self._jpeg(out, g, self.jpeg_range)
        # second order
        if _uniform(g, 0.0, 1.0) < self.second_blur_prob:
            kernel2 = self._kernel(
                g, self.sinc_prob2, self.blur_sigma2, self.betag_range2, self.betap_range2
            )
            out = _filter2d(out, kernel2)
        out = self._random_resize(out, g, self.resize_prob2, self.resize_range2, (h / s, w / s))
        out = self._noise(
            out,
            g,
            self.gaussian_noise_prob2,
            self.noise_range2,
            self.poisson_scale_range2,
            self.gray_noise_prob2,
        )
        # final: resize to the LR size + sinc filter, and JPEG, in random order
        if _uniform(g, 0.0, 1.0) < self.final_sinc_prob:
            lo, hi = self.kernel_size_range
            size = lo + 2 * int(torch.randint(0, (hi - lo) // 2 + 1, (), generator=g))
            final_kernel: torch.Tensor | None = sinc_kernel(_uniform(g, math.pi / 3, math.pi), size)
        else:
            final_kernel = None
        jpeg_first = _uniform(g, 0.0, 1.0) < 0.5
        if jpeg_first:
            out = self._jpeg(out, g, self.jpeg_range2)
        out = self._resize(out, (h // s, w // s), g)
        if final_kernel is not None:
            out = _filter2d(out, final_kernel)
        if not jpeg_first:
            out = self._jpeg(out, g, self.jpeg_range2)
        return (out.clamp(0.0, 1.0) * 255.0).round() / 255.0

    def _random_resize(
        self,
        x: torch.Tensor,
        g: torch.Generator,
        probs: tuple[float, float, float],
        scale_range: tuple[float, float],
        base: tuple[float, float] | None,
    ) -> torch.Tensor:
        kind = _choice(g, probs)
        if kind == 0:
            factor = _uniform(g, 1.0, scale_range[1])
        elif kind == 1:
            factor = _uniform(g, scale_range[0], 1.0)
        else:
            factor = 1.0
        h, w = base if base is not None else x.shape[-2:]
        return self._resize(x, (int(h * factor), int(w * factor)), g)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        _check_divisible(x4, self.factors(), self.name)
        return torch.cat([self._one(x4[i : i + 1], generator) for i in range(x4.shape[0])])


def realesrgan(x: torch.Tensor, scale: int = 4, *, generator: Seed) -> torch.Tensor:
    """The Real-ESRGAN second-order degradation with the paper's defaults (see
    :class:`RealESRGAN`; build that class to change its options)."""
    x4, nd = _to4d(x, "realesrgan")
    g = as_generator(generator, what="realesrgan")
    return _from4d(RealESRGAN(scale=scale).apply(x4, g), nd)
