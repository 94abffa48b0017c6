"""In-plane downsampling: bicubic, bilinear, Gaussian blur + decimation, k-space truncation,
and the mixed downsampling the pretrained models train on; each as a function and its stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.transforms.degrade.base import (
    FWHM_PER_SIGMA,
    Scale,
    ScaledStage,
    Stage,
    _check_range,
    _choice,
    _from4d,
    _pad,
    _to4d_scaled,
    _uniform,
)
from medsr.transforms.degrade.noise import rician_noise


# -- resampling --------------------------------------------------------------------------------
def bicubic(
    x: torch.Tensor, scale: Scale, *, antialias: bool = True, clip: bool = True
) -> torch.Tensor:
    """Bicubic downsampling, antialiased: the common SR benchmark degradation.

    With ``antialias=True`` the cubic kernel (a = -0.5) is stretched by the scale factor, as
    in MATLAB ``imresize`` and PIL ``Image.resize(BICUBIC)``; the result equals PIL's float
    resize to float precision, and MATLAB's inside the image (MATLAB mirrors the image at the
    borders, PIL and PyTorch renormalise the truncated kernel, so the outermost ~2*scale
    pixels differ slightly). ``antialias=False`` is the aliasing point-sampled cubic
    (a = -0.75) of ``F.interpolate``/OpenCV. Output clipped to [0, 1] unless ``clip=False``.
    ``(B, C, H, W) -> (B, C, H/s_h, W/s_w)``.
    """
    x4, nd, factors = _to4d_scaled(x, scale, "bicubic")
    h, w = x4.shape[-2:]
    y = F.interpolate(
        x4,
        size=(h // factors[0], w // factors[1]),
        mode="bicubic",
        align_corners=False,
        antialias=antialias,
    )
    return _from4d(y, nd, clip=clip)


def bilinear(x: torch.Tensor, scale: Scale, *, antialias: bool = False) -> torch.Tensor:
    """Bilinear downsampling.

    The BraTS Real-ESRGAN work (seed 3) makes its x4 LR images "by down-sampling the 2D MRI
    scans by a factor of four using bilinear interpolation" without naming the library; the
    default ``antialias=False`` is plain bilinear interpolation at the LR pixel centres
    (OpenCV ``INTER_LINEAR``, ``F.interpolate(mode="bilinear")``), which at x4 averages the
    2 x 2 HR pixels around each centre and aliases. ``antialias=True`` stretches the triangle
    filter by the scale (PIL ``BILINEAR``). Convex, so never leaves the input range.
    """
    x4, nd, factors = _to4d_scaled(x, scale, "bilinear")
    h, w = x4.shape[-2:]
    y = F.interpolate(
        x4,
        size=(h // factors[0], w // factors[1]),
        mode="bilinear",
        align_corners=False,
        antialias=antialias,
    )
    return _from4d(y, nd)


def default_blur_sigma(scale: int) -> float:
    """Default Gaussian sigma (HR pixels) for downsampling by ``scale``: FWHM = one LR pixel.

    A point-spread function as wide (at half maximum) as the LR pixel it produces, i.e.
    ``sigma = scale / 2.3548`` (0.85, 1.27, 1.70, 3.40 for x2, x3, x4, x8); 0 for scale 1.
    """
    return 0.0 if scale == 1 else scale / FWHM_PER_SIGMA


def _blur_decimate_1d(x4: torch.Tensor, dim: int, scale: int, sigma: float) -> torch.Tensor:
    """Blur along dim (-2 or -1) with a sampled Gaussian and keep every ``scale``-th centre.

    The kernel has ``scale + 2r`` taps centred on ``(i + 0.5) * scale - 0.5`` (between two
    HR pixels when the scale is even), so no half-pixel shift is introduced.
    """
    if sigma <= 0.0 and scale == 1:
        return x4
    radius = max(1, math.ceil(4.0 * sigma))
    length = scale + 2 * radius
    offsets = torch.arange(length, dtype=torch.float64) - (length - 1) / 2.0
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(dtype=x4.dtype, device=x4.device)
    b, c, h, w = x4.shape
    flat = x4.reshape(b * c, 1, h, w)
    if dim == -2:
        flat = _pad(flat, (0, 0, radius, radius))
        out = F.conv2d(flat, kernel.view(1, 1, length, 1), stride=(scale, 1))
    else:
        flat = _pad(flat, (radius, radius, 0, 0))
        out = F.conv2d(flat, kernel.view(1, 1, 1, length), stride=(1, scale))
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


def _blur_sigmas(
    sigma: float | tuple[float, float] | None, factors: tuple[int, int], op: str
) -> tuple[float, float]:
    if sigma is None:
        return default_blur_sigma(factors[0]), default_blur_sigma(factors[1])
    pair = (
        (float(sigma[0]), float(sigma[1]))
        if isinstance(sigma, tuple | list)
        else (float(sigma), float(sigma))
    )
    for s, f in zip(pair, factors, strict=True):
        if s < 0 or (s == 0 and f > 1):
            raise ConfigError(f"{op}: sigma must be > 0 on a downsampled axis, got {sigma!r}")
    return pair


def blur_downsample(
    x: torch.Tensor,
    scale: Scale,
    *,
    sigma: float | tuple[float, float] | None = None,
) -> torch.Tensor:
    """Gaussian blur then downsampling (the lumbar spine MedSRGAN work, seed 1).

    ``sigma`` is in HR pixels: one value for both axes, a pair ``(sigma_h, sigma_w)``, or
    ``None`` for :func:`default_blur_sigma` per axis (FWHM = one LR pixel; 1.70 at x4; no
    blur on an axis with scale 1). The seed does not give its sigma. Separable, sampled
    Gaussian truncated at 4 sigma, reflect padding; samples taken at the LR pixel centres.
    With ``scale=1`` this is a plain Gaussian blur (:func:`gaussian_blur`). Convex.
    """
    x4, nd, factors = _to4d_scaled(x, scale, "gaussian_blur")
    sig_h, sig_w = _blur_sigmas(sigma, factors, "gaussian_blur")
    y = _blur_decimate_1d(x4, -2, factors[0], sig_h)
    y = _blur_decimate_1d(y, -1, factors[1], sig_w)
    return _from4d(y, nd)


def gaussian_blur(x: torch.Tensor, sigma: float | tuple[float, float]) -> torch.Tensor:
    """Gaussian blur without resampling (sigma in pixels); see :func:`blur_downsample`."""
    return blur_downsample(x, 1, sigma=sigma)


KSpaceWindow = Literal["none", "hamming", "tukey"]


def kspace_window(n: int, kind: KSpaceWindow, *, tukey_alpha: float = 0.5) -> torch.Tensor:
    """1D apodisation window over ``n`` centred k-space samples (DC at index ``n // 2``).

    Written in terms of the normalised frequency ``r = (k - n//2) / (n/2)`` in [-1, 1), so
    the DC weight is exactly 1 and the mean intensity is preserved. Hamming:
    ``0.54 + 0.46 cos(pi r)``; Tukey: 1 for ``|r| <= 1 - alpha``, then a cosine taper to 0
    at ``|r| = 1``.
    """
    r = (torch.arange(n, dtype=torch.float64) - n // 2) / (n / 2.0)
    if kind == "none":
        return torch.ones(n, dtype=torch.float64)
    if kind == "hamming":
        return 0.54 + 0.46 * torch.cos(math.pi * r)
    if kind == "tukey":
        if not 0.0 < tukey_alpha <= 1.0:
            raise ConfigError(f"kspace: tukey_alpha must be in (0, 1], got {tukey_alpha}")
        edge = 1.0 - tukey_alpha
        taper = 0.5 * (1.0 + torch.cos(math.pi * (r.abs() - edge) / tukey_alpha))
        return torch.where(r.abs() <= edge, torch.ones_like(r), taper)
    raise ConfigError(f"kspace: unknown window {kind!r}; valid: 'none', 'hamming', 'tukey'")


def _centre_phase(n: int, big_n: int, scale: int, device: torch.device) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64) - n // 2
    shift = (scale - 1) / 2.0
    return torch.polar(torch.ones_like(k), 2.0 * math.pi * k * shift / big_n).to(device)


def kspace_truncate(
    x: torch.Tensor,
    scale: Scale,
    *,
    window: KSpaceWindow = "none",
    tukey_alpha: float = 0.5,
    magnitude: bool = False,
    clip: bool = True,
) -> torch.Tensor:
    """MRI-realistic downsampling: keep the central ``1/s`` of the 2D Fourier spectrum.

    The image's 2D DFT is cropped to its central ``(H/s_h, W/s_w)`` frequencies (what a scan
    with fewer phase/frequency encodes acquires), optionally apodised with a Hamming or
    Tukey window along the truncated axes (less Gibbs ringing, more blur), and transformed
    back on the LR grid (with a linear phase so the LR pixel centres sit at
    ``(i + 0.5) s - 0.5`` like the other degradations, not at ``i s``). The result is
    multiplied by ``(h w) / (H W)`` so intensities keep their scale (a constant image stays
    the same constant). ``magnitude=True`` returns
    ``|ifft|`` like a magnitude MR reconstruction; otherwise the real part (the imaginary
    part is only the unpaired Nyquist line). Ringing can overshoot: clipped unless
    ``clip=False``.
    """
    x4, nd, factors = _to4d_scaled(x, scale, "kspace")
    big_h, big_w = x4.shape[-2:]
    h, w = big_h // factors[0], big_w // factors[1]
    spectrum = torch.fft.fftshift(torch.fft.fft2(x4), dim=(-2, -1))
    top, left = big_h // 2 - h // 2, big_w // 2 - w // 2
    spectrum = spectrum[..., top : top + h, left : left + w]
    # DFT cropping samples at HR index i * s; a linear phase moves the samples to the pixel
    # centres (i + 0.5) * s - 0.5 that every other degradation here uses.
    phase_h = _centre_phase(h, big_h, factors[0], spectrum.device)
    phase_w = _centre_phase(w, big_w, factors[1], spectrum.device)
    spectrum = spectrum * (phase_h[:, None] * phase_w[None, :]).to(spectrum.dtype)
    if window != "none":
        ones = torch.ones
        wh = kspace_window(h, window, tukey_alpha=tukey_alpha) if factors[0] > 1 else ones(h)
        ww = kspace_window(w, window, tukey_alpha=tukey_alpha) if factors[1] > 1 else ones(w)
        weights = (wh[:, None] * ww[None, :]).to(device=spectrum.device, dtype=x4.dtype)
        spectrum = spectrum * weights
    y = torch.fft.ifft2(torch.fft.ifftshift(spectrum, dim=(-2, -1)))
    y = (y.abs() if magnitude else y.real) * ((h * w) / (big_h * big_w))
    y = y.to(x4.dtype)
    return _from4d(y, nd, clip=clip)


@dataclass(frozen=True)
class Bicubic(ScaledStage):
    """Antialiased bicubic downsampling (see :func:`bicubic`)."""

    name: ClassVar[str] = "bicubic"
    function: ClassVar = staticmethod(bicubic)
    scale: int | tuple[int, int]
    antialias: bool = True
    clip: bool = True


@dataclass(frozen=True)
class Bilinear(ScaledStage):
    """Bilinear downsampling, by default without antialiasing (see :func:`bilinear`)."""

    name: ClassVar[str] = "bilinear"
    function: ClassVar = staticmethod(bilinear)
    scale: int | tuple[int, int]
    antialias: bool = False


@dataclass(frozen=True)
class GaussianBlur(ScaledStage):
    """Gaussian blur then downsampling (see :func:`blur_downsample`); ``scale: 1`` = blur."""

    name: ClassVar[str] = "gaussian_blur"
    function: ClassVar = staticmethod(blur_downsample)
    scale: int | tuple[int, int]
    sigma: float | tuple[float, float] | None = None

    def _check(self) -> None:
        _blur_sigmas(self.sigma, self.factors(), self.name)


@dataclass(frozen=True)
class KSpaceTruncation(ScaledStage):
    """Central k-space crop (see :func:`kspace_truncate`)."""

    name: ClassVar[str] = "kspace"
    function: ClassVar = staticmethod(kspace_truncate)
    scale: int | tuple[int, int]
    window: KSpaceWindow = "none"
    tukey_alpha: float = 0.5
    magnitude: bool = False
    clip: bool = True

    def _check(self) -> None:
        super()._check()
        if not 0.0 < self.tukey_alpha <= 1.0:
            raise ConfigError(f"kspace.tukey_alpha must be in (0, 1], got {self.tukey_alpha}")


MIXED_KINDS = ("bicubic", "bilinear", "gaussian_blur", "kspace")
"""The downsampling kernels :class:`MixedDownsample` draws from."""

MIXED_KIND_TEXT = {
    "bicubic": "antialiased bicubic",
    "bilinear": "bilinear",
    "gaussian_blur": "Gaussian blur with the default sigma for the scale then decimation",
    "kspace": "MRI-like k-space truncation with a Tukey window",
}
"""Each of :data:`MIXED_KINDS` in words (model cards, benchmark tables)."""


def mixed_kind(x: torch.Tensor, scale: int, kind: str) -> torch.Tensor:
    """Downsample ``x`` by ``scale`` with one of :data:`MIXED_KINDS`, as
    :class:`MixedDownsample` does: antialiased bicubic, plain bilinear (aliased), Gaussian
    blur with the default sigma for the scale, or k-space truncation with a Tukey window."""
    if kind == "bicubic":
        return bicubic(x, scale, antialias=True, clip=True)
    if kind == "bilinear":
        return bilinear(x, scale, antialias=False)
    if kind == "gaussian_blur":
        return blur_downsample(x, scale)
    if kind == "kspace":
        return kspace_truncate(x, scale, window="tukey", clip=True)
    raise ConfigError(f"unknown downsampling kind {kind!r}; valid: {', '.join(MIXED_KINDS)}")


@dataclass(frozen=True)
class MixedDownsample(ScaledStage):
    """Per image, one downsampling drawn at random from ``kinds`` (with ``probs``), then
    Rician noise at ``snr`` with probability ``noise_prob``.

    This is how a model learns several acquisition models at once (the pretrained medsr
    models train on it): antialiased bicubic, plain bilinear, Gaussian blur with the default
    sigma for the scale, and k-space truncation with a Tukey window (MRI-like). Its
    deterministic counterpart (the fidelity check) is antialiased bicubic.
    """

    name: ClassVar[str] = "mixed_downsample"
    random: ClassVar[bool] = True
    scale: int
    kinds: tuple[str, ...] = MIXED_KINDS
    probs: tuple[float, ...] | None = None
    noise_prob: float = 0.0
    snr: float | tuple[float, float] = (20.0, 40.0)

    def _check(self) -> None:
        super()._check()
        bad = [k for k in self.kinds if k not in MIXED_KINDS]
        if not self.kinds or bad:
            raise ConfigError(
                f"mixed_downsample.kinds: unknown {bad or 'empty list'}; "
                f"valid: {', '.join(MIXED_KINDS)}"
            )
        if self.probs is not None and (
            len(self.probs) != len(self.kinds) or min(self.probs) < 0 or sum(self.probs) <= 0
        ):
            raise ConfigError(
                f"mixed_downsample.probs must be {len(self.kinds)} non-negative weights "
                f"(one per kind), got {self.probs!r}"
            )
        if not 0.0 <= self.noise_prob <= 1.0:
            raise ConfigError(
                f"mixed_downsample.noise_prob must be in [0, 1], got {self.noise_prob}"
            )
        _check_range("mixed_downsample.snr", self.snr, low=0.0)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        probs = self.probs or (1.0,) * len(self.kinds)
        out = []
        for i in range(x4.shape[0]):
            lr = mixed_kind(x4[i : i + 1], self.scale, self.kinds[_choice(generator, probs)])
            if self.noise_prob > 0 and _uniform(generator, 0.0, 1.0) < self.noise_prob:
                lr = rician_noise(lr, self.snr, generator=generator)
            out.append(lr)
        return torch.cat(out)

    def deterministic(self) -> Stage | None:
        return Bicubic(scale=self.scale)
