"""Through-plane: thick slices with a slice profile, and applying 2D degradations to volumes
(:func:`along_axis` for one axis, :func:`slicewise` for every slice).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from medsr.errors import ConfigError
from medsr.transforms.degrade.base import FWHM_PER_SIGMA, Seed, Stage

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


@dataclass(frozen=True)
class ThickSlice(Stage):
    """Thick slices along H of ``(B, C, H, W)`` (see :func:`thick_slices`; use
    :func:`along_axis` to act on the through-plane axis of a volume)."""

    name: ClassVar[str] = "thick_slice"
    function: ClassVar = staticmethod(thick_slices)
    thickness: float
    gap: float = 0.0
    input_spacing: float = 1.0
    profile: SliceProfile = "gaussian"

    def _check(self) -> None:
        _slice_step(self.thickness, self.gap, self.input_spacing, self.name)

    def factors(self) -> tuple[int, int]:
        return (_slice_step(self.thickness, self.gap, self.input_spacing, self.name), 1)


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
