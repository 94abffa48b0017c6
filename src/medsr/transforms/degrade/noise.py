"""Noise: white Gaussian, Poisson (shot) and Rician (magnitude MR) noise, each as a function
and its stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from medsr.errors import ConfigError
from medsr.transforms.degrade.base import (
    NoiseStage,
    Range,
    Seed,
    _check_range,
    _from4d,
    _per_sample,
    _randn,
    _to4d,
    as_generator,
)


# -- noise -------------------------------------------------------------------------------------
def gaussian_noise(
    x: torch.Tensor, sigma: Range, *, generator: Seed, clip: bool = True
) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (in [0, 1] intensity units).

    ``sigma`` may be a range ``(lo, hi)``: one value per image, uniform in the range.
    Independent per channel (neighbouring slices of a 2.5D stack have independent noise).
    """
    x4, nd = _to4d(x, "gaussian_noise")
    g = as_generator(generator, what="gaussian_noise")
    sig = _per_sample(sigma, x4.shape[0], g, x4)
    y = x4 + sig * _randn(x4.shape, g, x4)
    return _from4d(y, nd, clip=clip)


def poisson_noise(
    x: torch.Tensor, peak: Range, *, generator: Seed, clip: bool = True
) -> torch.Tensor:
    """Poisson (shot) noise: ``Poisson(x * peak) / peak``.

    ``peak`` is the expected photon count at intensity 1.0, so the SNR at intensity ``v`` is
    ``sqrt(v * peak)`` (larger peak = less noise). May be a range (one value per image).
    """
    x4, nd = _to4d(x, "poisson_noise")
    g = as_generator(generator, what="poisson_noise")
    pk = _per_sample(peak, x4.shape[0], g, x4).to(g.device)
    rates = (x4.to(g.device).clamp(min=0.0) * pk).double()
    y = (torch.poisson(rates, generator=g) / pk.double()).to(dtype=x4.dtype, device=x4.device)
    return _from4d(y, nd, clip=clip)


RicianReference = Literal["foreground_mean", "max"]


def noise_reference(
    x4: torch.Tensor, reference: RicianReference, foreground_threshold: float = 0.1
) -> torch.Tensor:
    """Per-image signal level ``(B,)`` that an SNR refers to.

    ``"foreground_mean"``: mean over the pixels above ``foreground_threshold`` times the
    image's maximum (the object, not the air around it); ``"max"``: the image's maximum.
    """
    flat = x4.reshape(x4.shape[0], -1)
    peak = flat.amax(dim=1)
    if reference == "max":
        return peak
    if reference == "foreground_mean":
        fg = flat > (foreground_threshold * peak)[:, None]
        count = fg.sum(dim=1).clamp(min=1)
        return (flat * fg).sum(dim=1) / count
    raise ConfigError(
        f"rician_noise: unknown reference {reference!r}; valid: 'foreground_mean', 'max'"
    )


def rician_noise(
    x: torch.Tensor,
    snr: Range,
    *,
    generator: Seed,
    reference: RicianReference = "foreground_mean",
    foreground_threshold: float = 0.1,
    clip: bool = True,
) -> torch.Tensor:
    """Rician noise of a magnitude MR image at a given SNR.

    ``SNR = S / sigma`` where ``S`` is :func:`noise_reference` (by default the mean of the
    foreground: pixels above 10 % of the image's maximum) and ``sigma`` the standard
    deviation of the Gaussian noise added to the real and the imaginary channel:
    ``y = sqrt((x + n_r)^2 + n_i^2)``. On a flat region of level ``S`` the measured
    mean/std is close to ``SNR`` (for SNR >~ 5); the background gets the Rayleigh floor
    ``sigma sqrt(pi / 2)``. ``snr`` may be a range (one value per image). Clipped to [0, 1].
    """
    x4, nd = _to4d(x, "rician_noise")
    g = as_generator(generator, what="rician_noise")
    snrs = _per_sample(snr, x4.shape[0], g, x4)
    ref = noise_reference(x4, reference, foreground_threshold).view(-1, 1, 1, 1)
    sigma = ref / snrs
    real = x4 + sigma * _randn(x4.shape, g, x4)
    imag = sigma * _randn(x4.shape, g, x4)
    y = torch.sqrt(real * real + imag * imag)
    return _from4d(y, nd, clip=clip)


@dataclass(frozen=True)
class RicianNoise(NoiseStage):
    """Rician noise at ``snr`` (see :func:`rician_noise`)."""

    name: ClassVar[str] = "rician_noise"
    function: ClassVar = staticmethod(rician_noise)
    snr: float | tuple[float, float]
    reference: RicianReference = "foreground_mean"
    foreground_threshold: float = 0.1
    clip: bool = True

    def _check(self) -> None:
        _check_range("rician_noise.snr", self.snr, low=0.0)
        if not 0.0 <= self.foreground_threshold < 1.0:
            raise ConfigError(
                f"rician_noise.foreground_threshold must be in [0, 1), "
                f"got {self.foreground_threshold}"
            )


@dataclass(frozen=True)
class GaussianNoise(NoiseStage):
    """Additive white Gaussian noise (see :func:`gaussian_noise`)."""

    name: ClassVar[str] = "gaussian_noise"
    function: ClassVar = staticmethod(gaussian_noise)
    sigma: float | tuple[float, float]
    clip: bool = True

    def _check(self) -> None:
        _check_range("gaussian_noise.sigma", self.sigma, low=0.0, inclusive=True)


@dataclass(frozen=True)
class PoissonNoise(NoiseStage):
    """Poisson noise with ``peak`` counts at intensity 1 (see :func:`poisson_noise`)."""

    name: ClassVar[str] = "poisson_noise"
    function: ClassVar = staticmethod(poisson_noise)
    peak: float | tuple[float, float]
    clip: bool = True

    def _check(self) -> None:
        _check_range("poisson_noise.peak", self.peak, low=0.0)
