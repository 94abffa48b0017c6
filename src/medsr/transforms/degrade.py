"""HR -> LR degradations: pure functions with explicit randomness, composable from YAML.

Conventions (every function and stage here follows them):

* **Shapes.** Images are float tensors ``(B, C, H, W)``; ``(H, W)`` and ``(C, H, W)`` are
  accepted too and the output keeps the input's number of dimensions. A 3D volume
  ``(Z, Y, X)`` is degraded with :func:`along_axis` (resample one axis, e.g. through-plane)
  or :func:`slicewise` (degrade every 2D slice normal to an axis).
* **Scale.** ``scale`` is an integer (both in-plane axes) or a pair ``(s_h, s_w)`` where 1
  leaves that axis alone. The LR size is *exactly* the HR size divided by the scale; an HR
  size that is not divisible raises :class:`~medsr.errors.ConfigError` naming the shape
  (nothing is cropped silently). Crop first with :func:`crop_to_multiple`, which keeps the
  first rows/columns so the image origin (and any DICOM geometry) does not move.
* **Grid.** Every resampling keeps pixel *centres* aligned the way MATLAB ``imresize``,
  PIL and ``F.interpolate(align_corners=False)`` do: LR pixel ``i`` sits at HR coordinate
  ``(i + 0.5) * s - 0.5``. All degradations therefore produce LR images on the same grid,
  and a model trained on one is evaluated on the grid of another without a shift.
* **Values.** Inputs are normalised to [0, 1] (see ``medsr.transforms.intensity``). Steps
  that can overshoot (bicubic's negative lobes, Gibbs ringing of k-space truncation, noise)
  clip to [0, 1] unless told ``clip=False``; convex ones (bilinear, Gaussian blur, thick
  slices) cannot leave the input's range and are not clipped.
* **Randomness.** Random steps take ``generator=`` (a ``torch.Generator`` or an ``int``
  seed); nothing reads the global RNG, so the same seed gives the same LR image.

The YAML form is a list of stages, e.g.::

    - {name: gaussian_blur, scale: 4, sigma: 1.7}
    - {name: rician_noise, snr: 20}

built by :func:`build_degradation` from the :data:`DEGRADATIONS` name table into a
:class:`Degradation` (``deg(hr, generator=seed) -> lr``, ``deg.scale``,
``deg.downsample_only()`` for the noise-free consistency check).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import numbers
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.schema import convert

logger = logging.getLogger(__name__)

Scale = int | tuple[int, int]
Seed = torch.Generator | int
Range = float | tuple[float, float]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548...


# -- small helpers -----------------------------------------------------------------------------
def as_generator(seed: Seed | None, *, what: str = "this degradation") -> torch.Generator:
    """``torch.Generator`` from a generator (returned as is) or an integer seed."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return torch.Generator().manual_seed(int(seed))
    raise ConfigError(
        f"{what} is random: pass generator= a torch.Generator or an int seed, got {seed!r}"
    )


def _to4d(x: torch.Tensor, op: str) -> tuple[torch.Tensor, int]:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(
            f"{op}: expected a float tensor in [0, 1], got dtype {x.dtype}; "
            "normalise it first (medsr.transforms.intensity)"
        )
    if x.ndim == 2:
        return x[None, None], 2
    if x.ndim == 3:
        return x[None], 3
    if x.ndim == 4:
        return x, 4
    raise ConfigError(
        f"{op}: expected shape (H, W), (C, H, W) or (B, C, H, W), got {tuple(x.shape)}; "
        "use along_axis() or slicewise() for volumes"
    )


def _from4d(y: torch.Tensor, ndim: int) -> torch.Tensor:
    if ndim == 2:
        return y[0, 0]
    if ndim == 3:
        return y[0]
    return y


def _pair(scale: Scale, op: str) -> tuple[int, int]:
    if isinstance(scale, int) and not isinstance(scale, bool):
        pair = (scale, scale)
    elif (
        isinstance(scale, tuple | list)
        and len(scale) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in scale)
    ):
        pair = (int(scale[0]), int(scale[1]))
    else:
        raise ConfigError(f"{op}: scale must be an int or a pair of ints, got {scale!r}")
    if min(pair) < 1:
        raise ConfigError(f"{op}: scale must be >= 1, got {scale!r}")
    return pair


def _check_divisible(x4: torch.Tensor, factors: tuple[int, int], op: str) -> None:
    h, w = x4.shape[-2:]
    if h % factors[0] or w % factors[1]:
        raise ConfigError(
            f"{op}: HR shape {tuple(x4.shape)} is not divisible by the scale {factors} "
            f"(H, W); crop it first, e.g. crop_to_multiple(x, {factors})"
        )


def crop_to_multiple(
    x: torch.Tensor | np.ndarray,
    multiple: int | Sequence[int],
    *,
    dims: Sequence[int] = (-2, -1),
) -> torch.Tensor | np.ndarray:
    """Crop ``x`` along ``dims`` to the largest multiple of ``multiple`` (per dim or for all).

    The first rows/columns are kept and the excess is dropped at the end, so index 0 (the
    image origin) stays where it was. Works on tensors and numpy arrays; returns a view.
    """
    dims = tuple(dims)
    mults = (
        (multiple,) * len(dims) if isinstance(multiple, int) else tuple(int(m) for m in multiple)
    )
    if len(mults) != len(dims) or min(mults) < 1:
        raise ConfigError(f"crop_to_multiple: need {len(dims)} positive multiples, got {multiple}")
    index: list[slice] = [slice(None)] * x.ndim
    for d, m in zip(dims, mults, strict=True):
        n = x.shape[d]
        if n < m:
            raise ConfigError(f"crop_to_multiple: axis {d} of shape {tuple(x.shape)} is < {m}")
        index[d] = slice(0, n - n % m)
    return x[tuple(index)]


def _pad(x4: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding (no dark border), replicate where the image is too small to reflect."""
    if not any(pad):
        return x4
    h, w = x4.shape[-2:]
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x4, pad, mode=mode)


def _randn(shape: Sequence[int], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    # Drawn on the generator's device and moved, so a CPU generator also drives CUDA data.
    return torch.randn(tuple(shape), generator=g, device=g.device, dtype=like.dtype).to(like.device)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, device=g.device))


def _per_sample(spec: Range, n: int, g: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """One value per batch element, shape (B, 1, 1, 1): the constant or uniform in the range."""
    if isinstance(spec, tuple | list):
        assert g is not None
        lo, hi = float(spec[0]), float(spec[1])
        u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64)
        values = lo + (hi - lo) * u
    else:
        values = torch.full((n,), float(spec), dtype=torch.float64)
    return values.to(device=like.device, dtype=like.dtype).view(n, 1, 1, 1)


def _is_range(spec: Range) -> bool:
    return isinstance(spec, tuple | list)


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
    x4, nd = _to4d(x, "bicubic")
    factors = _pair(scale, "bicubic")
    _check_divisible(x4, factors, "bicubic")
    h, w = x4.shape[-2:]
    y = F.interpolate(
        x4,
        size=(h // factors[0], w // factors[1]),
        mode="bicubic",
        align_corners=False,
        antialias=antialias,
    )
    if clip:
        y = y.clamp(0.0, 1.0)
    return _from4d(y, nd)


def bilinear(x: torch.Tensor, scale: Scale, *, antialias: bool = False) -> torch.Tensor:
    """Bilinear downsampling.

    The BraTS Real-ESRGAN work (seed 3) makes its x4 LR images "by down-sampling the 2D MRI
    scans by a factor of four using bilinear interpolation" without naming the library; the
    default ``antialias=False`` is plain bilinear interpolation at the LR pixel centres
    (OpenCV ``INTER_LINEAR``, ``F.interpolate(mode="bilinear")``), which at x4 averages the
    2 x 2 HR pixels around each centre and aliases. ``antialias=True`` stretches the triangle
    filter by the scale (PIL ``BILINEAR``). Convex, so never leaves the input range.
    """
    x4, nd = _to4d(x, "bilinear")
    factors = _pair(scale, "bilinear")
    _check_divisible(x4, factors, "bilinear")
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
    x4, nd = _to4d(x, "gaussian_blur")
    factors = _pair(scale, "gaussian_blur")
    _check_divisible(x4, factors, "gaussian_blur")
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
    x4, nd = _to4d(x, "kspace")
    factors = _pair(scale, "kspace")
    _check_divisible(x4, factors, "kspace")
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
    if clip:
        y = y.clamp(0.0, 1.0)
    return _from4d(y, nd)


# -- thick slices ------------------------------------------------------------------------------
SliceProfile = Literal["gaussian", "rect"]


def _slice_step(thickness: float, gap: float, input_spacing: float, op: str) -> int:
    if thickness <= 0 or input_spacing <= 0:
        raise ConfigError(
            f"{op}: thickness and input_spacing must be > 0, got {thickness}, {input_spacing}"
        )
    spacing = thickness + gap
    if spacing <= 0:
        raise ConfigError(f"{op}: thickness + gap must be > 0, got {thickness} + {gap}")
    step = spacing / input_spacing
    if abs(step - round(step)) > 1e-6 * max(1.0, step) or round(step) < 1:
        raise ConfigError(
            f"{op}: the slice spacing thickness + gap = {spacing:g} mm is {step:g} input "
            f"voxels of {input_spacing:g} mm; it must be a whole number of voxels (resample "
            "the volume first, or choose thickness and gap accordingly)"
        )
    return round(step)


def slice_profile_weights(
    n: int,
    *,
    thickness: float,
    gap: float = 0.0,
    input_spacing: float = 1.0,
    profile: SliceProfile = "gaussian",
) -> torch.Tensor:
    """Weights ``(n_out, n)`` mapping ``n`` thin slices to thick ones (float64, rows sum to 1).

    Lengths are in mm with ``input_spacing`` the thin-slice spacing (leave it at 1 to give
    them in voxels). Thick slice ``j`` is centred at ``(j + 0.5) * (thickness + gap)`` from
    the start of the volume (the same centre alignment as the in-plane resamplings) and
    weighs thin voxel ``i`` (covering ``[i d, (i + 1) d]``) by the integral of the slice
    profile over it: a Gaussian of FWHM ``thickness`` or a rectangle of width
    ``thickness``. Rows are renormalised where the profile runs past the volume's ends.
    ``gap`` may be negative (overlapping slices) as long as ``thickness + gap > 0``.
    """
    step = _slice_step(thickness, gap, input_spacing, "thick_slice")
    if n % step:
        raise ConfigError(
            f"thick_slice: {n} slices are not divisible by the step of {step} voxels; crop "
            f"first, e.g. crop_to_multiple(volume, {step}, dims=(axis,))"
        )
    n_out = n // step
    d = float(input_spacing)
    edges = torch.arange(n + 1, dtype=torch.float64) * d
    centres = (torch.arange(n_out, dtype=torch.float64) + 0.5) * step * d
    lo = edges[None, :-1] - centres[:, None]
    hi = edges[None, 1:] - centres[:, None]
    if profile == "gaussian":
        sigma = thickness / FWHM_PER_SIGMA
        scale = 1.0 / (sigma * math.sqrt(2.0))
        weights = 0.5 * (torch.special.erf(hi * scale) - torch.special.erf(lo * scale))
    elif profile == "rect":
        half = thickness / 2.0
        weights = (hi.clamp(max=half) - lo.clamp(min=-half)).clamp(min=0.0)
    else:
        raise ConfigError(f"thick_slice: unknown profile {profile!r}; valid: 'gaussian', 'rect'")
    return weights / weights.sum(dim=1, keepdim=True)


def thick_slices(
    x: torch.Tensor,
    *,
    thickness: float,
    gap: float = 0.0,
    input_spacing: float = 1.0,
    profile: SliceProfile = "gaussian",
    axis: int = -2,
) -> torch.Tensor:
    """Simulate thick slices along ``axis``: convolve with the slice profile, then sample.

    For a volume ``(Z, Y, X)`` use ``axis=0`` (through-plane); for 2D slices ``(B, C, H, W)``
    (e.g. sagittal reformats) the default ``axis=-2`` (H). ``thickness`` is the FWHM of the
    profile and ``thickness + gap`` the distance between thick-slice centres, both in mm
    with ``input_spacing`` the thin spacing in mm (or all in voxels with ``input_spacing=1``).
    The step ``(thickness + gap) / input_spacing`` must be a whole number of voxels and
    divide the axis length. Output spacing along ``axis``: ``thickness + gap``. Convex.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ConfigError("thick_slice: expected a float torch.Tensor")
    n = x.shape[axis]
    weights = slice_profile_weights(
        n, thickness=thickness, gap=gap, input_spacing=input_spacing, profile=profile
    ).to(device=x.device, dtype=x.dtype)
    moved = torch.movedim(x, axis, -1)
    return torch.movedim(moved @ weights.T, -1, axis)


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
    if clip:
        y = y.clamp(0.0, 1.0)
    return _from4d(y, nd)


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
    if clip:
        y = y.clamp(0.0, 1.0)
    return _from4d(y, nd)


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
    if clip:
        y = y.clamp(0.0, 1.0)
    return _from4d(y, nd)


# -- JPEG --------------------------------------------------------------------------------------
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def _jpeg_roundtrip(plane: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    mode = "RGB" if plane.ndim == 3 else "L"
    Image.fromarray(plane, mode=mode).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert(mode))


def jpeg(
    x: torch.Tensor,
    quality: int | tuple[int, int],
    *,
    generator: Seed | None = None,
    color: bool = False,
) -> torch.Tensor:
    """JPEG compression with Pillow at ``quality`` (1..100), or a range drawn per image.

    The image is quantised to 8 bits first (JPEG baseline is 8-bit; 12/16-bit medical data
    lose their extra precision here). Each channel is coded as its own greyscale image, so
    the slices of a 2.5D stack do not bleed into each other; ``color=True`` codes 3-channel
    images as RGB (with chroma subsampling). Output on the 1/255 grid, in [0, 1].
    """
    x4, nd = _to4d(x, "jpeg")
    if _is_range(quality):
        g = as_generator(generator, what="jpeg with a quality range")
        lo, hi = int(quality[0]), int(quality[1])  # type: ignore[index]
        qualities = torch.randint(lo, hi + 1, (x4.shape[0],), generator=g, device=g.device)
        qs = [int(q) for q in qualities]
    else:
        qs = [int(quality)] * x4.shape[0]  # type: ignore[arg-type]
    for q in qs:
        if not 1 <= q <= 100:
            raise ConfigError(f"jpeg: quality must be in 1..100, got {q}")
    planes = _to_uint8(x4)
    out = np.empty_like(planes)
    for b, q in enumerate(qs):
        if color and planes.shape[1] == 3:
            out[b] = _jpeg_roundtrip(
                np.ascontiguousarray(planes[b].transpose(1, 2, 0)), q
            ).transpose(2, 0, 1)
        else:
            for c in range(planes.shape[1]):
                out[b, c] = _jpeg_roundtrip(planes[b, c], q)
    y = torch.from_numpy(out).to(device=x4.device, dtype=x4.dtype) / 255.0
    return _from4d(y, nd)


# -- Real-ESRGAN second-order pipeline ---------------------------------------------------------
KERNEL_TYPES = (
    "iso",
    "aniso",
    "generalized_iso",
    "generalized_aniso",
    "plateau_iso",
    "plateau_aniso",
)


def _choice(g: torch.Generator, probs: Sequence[float]) -> int:
    p = torch.tensor(list(probs), dtype=torch.float64)
    return int(torch.multinomial(p / p.sum(), 1, generator=g))


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


# -- volumes -----------------------------------------------------------------------------------
def _call(fn: Callable[..., torch.Tensor], x: torch.Tensor, generator: Seed | None) -> torch.Tensor:
    return fn(x) if generator is None else fn(x, generator=generator)


def along_axis(
    fn: Callable[..., torch.Tensor],
    volume: torch.Tensor,
    *,
    axis: int,
    generator: Seed | None = None,
) -> torch.Tensor:
    """Apply a 2D degradation to a volume ``(Z, Y, X)`` so that its H axis is ``axis``.

    The volume is cut into 2D slices that contain ``axis`` (as H) and the last of the other
    two axes (as W); the first other axis becomes the batch. So a degradation with scale
    ``(s, 1)`` (or ``thick_slice``, which acts on H) resamples only ``axis``: e.g.
    ``along_axis(build_degradation({"name": "bicubic", "scale": [4, 1]}), vol, axis=0)``
    gives ``(Z/4, Y, X)``. ``generator`` is passed on when given (``fn(x, generator=...)``).
    """
    if volume.ndim != 3:
        raise ConfigError(f"along_axis: expected a volume (Z, Y, X), got {tuple(volume.shape)}")
    axis %= 3
    others = [a for a in range(3) if a != axis]
    perm = (others[0], axis, others[1])
    y = _call(fn, volume.permute(*perm).unsqueeze(1), generator).squeeze(1)
    return y.permute(*np.argsort(perm).tolist())


def slicewise(
    fn: Callable[..., torch.Tensor],
    volume: torch.Tensor,
    *,
    axis: int = 0,
    generator: Seed | None = None,
) -> torch.Tensor:
    """Apply a 2D degradation to every slice of a volume normal to ``axis`` (in-plane).

    ``slicewise(bicubic_x4, vol, axis=0)`` turns ``(Z, Y, X)`` into ``(Z, Y/4, X/4)``. The
    slices form one batch, so random steps draw independent noise for each slice.
    """
    if volume.ndim != 3:
        raise ConfigError(f"slicewise: expected a volume (Z, Y, X), got {tuple(volume.shape)}")
    axis %= 3
    others = [a for a in range(3) if a != axis]
    perm = (axis, *others)
    y = _call(fn, volume.permute(*perm).unsqueeze(1), generator).squeeze(1)
    return y.permute(*np.argsort(perm).tolist())


# -- config coercion ---------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


# -- stages ------------------------------------------------------------------------------------
class Stage:
    """One step of a :class:`Degradation` (a frozen dataclass of its YAML parameters).

    ``name`` is its key in :data:`DEGRADATIONS`; ``random`` says whether it draws random
    numbers; ``is_noise`` whether :meth:`Degradation.downsample_only` drops it.
    """

    name: ClassVar[str]
    random: ClassVar[bool] = False
    is_noise: ClassVar[bool] = False

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = convert(getattr(self, f.name), hints[f.name], f"{self.name}.{f.name}")
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Range checks beyond the types (raise ConfigError)."""

    def factors(self) -> tuple[int, int]:
        """How many HR pixels per LR pixel along (H, W)."""
        return (1, 1)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def deterministic(self) -> Stage | None:
        """The noise-free counterpart used by ``downsample_only`` (None: drop the stage)."""
        return None if self.is_noise else self

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            cfg[f.name] = _plain(getattr(self, f.name))
        return cfg


def _check_range(name: str, value: Range, *, low: float, inclusive: bool = False) -> None:
    values = value if isinstance(value, tuple) else (value,)
    bad = [v for v in values if (v < low if inclusive else v <= low)]
    if bad or (isinstance(value, tuple) and value[0] > value[1]):
        op = ">=" if inclusive else ">"
        raise ConfigError(f"{name} must be {op} {low} (a range as [low, high]), got {value!r}")


@dataclass(frozen=True)
class Bicubic(Stage):
    """Antialiased bicubic downsampling (see :func:`bicubic`)."""

    name: ClassVar[str] = "bicubic"
    scale: int | tuple[int, int]
    antialias: bool = True
    clip: bool = True

    def _check(self) -> None:
        _pair(self.scale, self.name)

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return bicubic(x4, self.scale, antialias=self.antialias, clip=self.clip)


@dataclass(frozen=True)
class Bilinear(Stage):
    """Bilinear downsampling, by default without antialiasing (see :func:`bilinear`)."""

    name: ClassVar[str] = "bilinear"
    scale: int | tuple[int, int]
    antialias: bool = False

    def _check(self) -> None:
        _pair(self.scale, self.name)

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return bilinear(x4, self.scale, antialias=self.antialias)


@dataclass(frozen=True)
class GaussianBlur(Stage):
    """Gaussian blur then downsampling (see :func:`blur_downsample`); ``scale: 1`` = blur."""

    name: ClassVar[str] = "gaussian_blur"
    scale: int | tuple[int, int]
    sigma: float | tuple[float, float] | None = None

    def _check(self) -> None:
        _blur_sigmas(self.sigma, _pair(self.scale, self.name), self.name)

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return blur_downsample(x4, self.scale, sigma=self.sigma)


@dataclass(frozen=True)
class KSpaceTruncation(Stage):
    """Central k-space crop (see :func:`kspace_truncate`)."""

    name: ClassVar[str] = "kspace"
    scale: int | tuple[int, int]
    window: KSpaceWindow = "none"
    tukey_alpha: float = 0.5
    magnitude: bool = False
    clip: bool = True

    def _check(self) -> None:
        _pair(self.scale, self.name)
        if not 0.0 < self.tukey_alpha <= 1.0:
            raise ConfigError(f"kspace.tukey_alpha must be in (0, 1], got {self.tukey_alpha}")

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return kspace_truncate(
            x4,
            self.scale,
            window=self.window,
            tukey_alpha=self.tukey_alpha,
            magnitude=self.magnitude,
            clip=self.clip,
        )


MIXED_KINDS = ("bicubic", "bilinear", "gaussian_blur", "kspace")
"""The downsampling kernels :class:`MixedDownsample` draws from."""


@dataclass(frozen=True)
class MixedDownsample(Stage):
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
        _pair(self.scale, self.name)
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

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)

    def _downsample(self, kind: str, x4: torch.Tensor) -> torch.Tensor:
        if kind == "bicubic":
            return bicubic(x4, self.scale, antialias=True, clip=True)
        if kind == "bilinear":
            return bilinear(x4, self.scale, antialias=False)
        if kind == "gaussian_blur":
            return blur_downsample(x4, self.scale)
        return kspace_truncate(x4, self.scale, window="tukey", clip=True)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        probs = self.probs or (1.0,) * len(self.kinds)
        out = []
        for i in range(x4.shape[0]):
            lr = self._downsample(self.kinds[_choice(generator, probs)], x4[i : i + 1])
            if self.noise_prob > 0 and _uniform(generator, 0.0, 1.0) < self.noise_prob:
                lr = rician_noise(lr, self.snr, generator=generator)
            out.append(lr)
        return torch.cat(out)

    def deterministic(self) -> Stage | None:
        return Bicubic(scale=self.scale)


@dataclass(frozen=True)
class ThickSlice(Stage):
    """Thick slices along H of ``(B, C, H, W)`` (see :func:`thick_slices`; use
    :func:`along_axis` to act on the through-plane axis of a volume)."""

    name: ClassVar[str] = "thick_slice"
    thickness: float
    gap: float = 0.0
    input_spacing: float = 1.0
    profile: SliceProfile = "gaussian"

    def _check(self) -> None:
        _slice_step(self.thickness, self.gap, self.input_spacing, self.name)

    def factors(self) -> tuple[int, int]:
        return (_slice_step(self.thickness, self.gap, self.input_spacing, self.name), 1)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return thick_slices(
            x4,
            thickness=self.thickness,
            gap=self.gap,
            input_spacing=self.input_spacing,
            profile=self.profile,
            axis=-2,
        )


@dataclass(frozen=True)
class RicianNoise(Stage):
    """Rician noise at ``snr`` (see :func:`rician_noise`)."""

    name: ClassVar[str] = "rician_noise"
    random: ClassVar[bool] = True
    is_noise: ClassVar[bool] = True
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

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        return rician_noise(
            x4,
            self.snr,
            generator=generator,
            reference=self.reference,
            foreground_threshold=self.foreground_threshold,
            clip=self.clip,
        )


@dataclass(frozen=True)
class GaussianNoise(Stage):
    """Additive white Gaussian noise (see :func:`gaussian_noise`)."""

    name: ClassVar[str] = "gaussian_noise"
    random: ClassVar[bool] = True
    is_noise: ClassVar[bool] = True
    sigma: float | tuple[float, float]
    clip: bool = True

    def _check(self) -> None:
        _check_range("gaussian_noise.sigma", self.sigma, low=0.0, inclusive=True)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        return gaussian_noise(x4, self.sigma, generator=generator, clip=self.clip)


@dataclass(frozen=True)
class PoissonNoise(Stage):
    """Poisson noise with ``peak`` counts at intensity 1 (see :func:`poisson_noise`)."""

    name: ClassVar[str] = "poisson_noise"
    random: ClassVar[bool] = True
    is_noise: ClassVar[bool] = True
    peak: float | tuple[float, float]
    clip: bool = True

    def _check(self) -> None:
        _check_range("poisson_noise.peak", self.peak, low=0.0)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None
        return poisson_noise(x4, self.peak, generator=generator, clip=self.clip)


@dataclass(frozen=True)
class JPEGCompression(Stage):
    """JPEG compression with Pillow (see :func:`jpeg`)."""

    name: ClassVar[str] = "jpeg"
    random: ClassVar[bool] = True
    is_noise: ClassVar[bool] = True
    quality: int | tuple[int, int] = (30, 95)
    color: bool = False

    def _check(self) -> None:
        values = self.quality if isinstance(self.quality, tuple) else (self.quality,)
        if any(not 1 <= q <= 100 for q in values) or values[0] > values[-1]:
            raise ConfigError(f"jpeg.quality must be in 1..100 (or [low, high]), got {values}")

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return jpeg(x4, self.quality, generator=generator, color=self.color)


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


DEGRADATIONS: dict[str, type[Stage]] = {
    "bicubic": Bicubic,
    "bilinear": Bilinear,
    "gaussian_blur": GaussianBlur,
    "kspace": KSpaceTruncation,
    "mixed_downsample": MixedDownsample,
    "thick_slice": ThickSlice,
    "rician_noise": RicianNoise,
    "gaussian_noise": GaussianNoise,
    "poisson_noise": PoissonNoise,
    "jpeg": JPEGCompression,
    "realesrgan": RealESRGAN,
}
"""Name table: the ``name`` of a stage in a YAML degradation -> its class."""


# -- pipeline ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Degradation:
    """A sequence of stages: ``deg(hr, generator=seed) -> lr``.

    ``hr`` is ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]; the output has the same
    number of dimensions and ``H / factors[0]`` x ``W / factors[1]`` pixels. ``generator``
    (a ``torch.Generator`` or an int seed) is required when any stage is random.
    """

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise ConfigError("a degradation needs at least one stage")
        object.__setattr__(self, "stages", stages)

    @property
    def factors(self) -> tuple[int, int]:
        """HR pixels per LR pixel along (H, W): the product over the stages."""
        fh, fw = 1, 1
        for stage in self.stages:
            sh, sw = stage.factors()
            fh, fw = fh * sh, fw * sw
        return fh, fw

    @property
    def scale(self) -> int:
        """The (isotropic) scale factor; raises ConfigError for anisotropic pipelines."""
        fh, fw = self.factors
        if fh != fw:
            raise ConfigError(
                f"this degradation is anisotropic (factors {fh, fw} along H, W); "
                "use .factors, or along_axis() for through-plane degradation of volumes"
            )
        return fh

    @property
    def random(self) -> bool:
        return any(stage.random for stage in self.stages)

    def __call__(self, hr: torch.Tensor, *, generator: Seed | None = None) -> torch.Tensor:
        x4, nd = _to4d(hr, "degradation")
        _check_divisible(x4, self.factors, "degradation")
        g = None
        if self.random:
            names = [s.name for s in self.stages if s.random]
            g = as_generator(generator, what=f"this degradation (random stages {names})")
        out = x4
        for stage in self.stages:
            out = stage.apply(out, g)
        return _from4d(out, nd)

    def downsample_only(self) -> Degradation:
        """The same resampling without noise or compression: deterministic, needs no seed.

        Use it for the consistency check (downsample SR with it and compare with the LR).
        Noise and JPEG stages are dropped; ``realesrgan`` becomes antialiased bicubic at its
        scale (its random blur and resize have no single deterministic counterpart).
        """
        kept = [s.deterministic() for s in self.stages]
        stages = tuple(s for s in kept if s is not None)
        if not stages:
            fh, fw = self.factors
            stages = (Bicubic(scale=(fh, fw)),)
        return Degradation(stages)

    def to_config(self) -> list[dict[str, Any]]:
        """The YAML/JSON form (every parameter spelled out); ``build_degradation`` reads it."""
        return [stage.to_config() for stage in self.stages]


def build_stage(config: Mapping[str, Any]) -> Stage:
    """One stage from its mapping ``{"name": ..., <parameters>}``, strictly checked."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a degradation stage must be a mapping with a 'name', got {config!r}")
    params = dict(config)
    name = params.pop("name", None)
    if name not in DEGRADATIONS:
        raise ConfigError(
            f"unknown degradation {name!r}; valid names: {', '.join(sorted(DEGRADATIONS))}"
        )
    cls = DEGRADATIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ConfigError(
            f"degradation {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(fields)}"
        )
    missing = [
        f.name
        for f in fields.values()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in params
    ]
    if missing:
        raise ConfigError(
            f"degradation {name!r}: missing required key(s) {', '.join(map(repr, missing))}; "
            f"valid keys: {', '.join(fields)}"
        )
    return cls(**params)


def build_degradation(config: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Degradation:
    """A :class:`Degradation` from a list of stage mappings (or a single one), e.g. parsed
    YAML ``[{name: bicubic, scale: 4}]``. Unknown names or keys raise ConfigError listing
    the valid ones."""
    if isinstance(config, Mapping):
        config = [config]
    if isinstance(config, str | bytes) or not isinstance(config, Sequence):
        raise ConfigError(f"a degradation config is a list of stages, got {config!r}")
    return Degradation(tuple(build_stage(c) for c in config))


def load_degradation(path: str | Path) -> Degradation:
    """Read a YAML degradation file (a list of stages, or one stage) and build it."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the degradation config ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    try:
        return build_degradation(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


__all__ = [
    "DEGRADATIONS",
    "MIXED_KINDS",
    "Bicubic",
    "Bilinear",
    "Degradation",
    "GaussianBlur",
    "GaussianNoise",
    "JPEGCompression",
    "KSpaceTruncation",
    "MixedDownsample",
    "PoissonNoise",
    "RealESRGAN",
    "RicianNoise",
    "Stage",
    "ThickSlice",
    "along_axis",
    "as_generator",
    "bicubic",
    "bilinear",
    "blur_downsample",
    "build_degradation",
    "build_stage",
    "crop_to_multiple",
    "default_blur_sigma",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "kspace_truncate",
    "kspace_window",
    "load_degradation",
    "noise_reference",
    "poisson_noise",
    "random_blur_kernel",
    "realesrgan",
    "rician_noise",
    "sinc_kernel",
    "slice_profile_weights",
    "slicewise",
    "thick_slices",
]
