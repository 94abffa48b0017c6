"""Self-supervised through-plane super-resolution of a thick-slice volume from itself.

Clinical 2D multi-slice MRI (and thick-slice CT) is sharp in-plane and coarse through-plane.
Following SMORE (Zhao et al., IEEE TMI 2021) and ECLARE (Remedios et al., 2023/2025), the
volume's own in-plane slices are the training data:

1. **Acquisition model.** The through-plane axis was sampled every ``spacing`` mm with a
   slice profile of FWHM ``thickness`` (Gaussian or rectangular; ``gap = spacing -
   thickness``), read from the header (NIfTI pixdim, DICOM SliceThickness and the slice
   positions) or given.
2. **Training pairs.** An in-plane slice ``(Y, X)`` is an HR image along both axes. Degrading
   it along one in-plane axis with the same profile and sampling (:func:`profile_matrix`,
   in in-plane pixels, any real ratio) gives what the scanner would have recorded had that
   axis been the slice axis: the network input. The slice (on the network's output grid,
   :func:`cubic_matrix` when that is not the pixel grid) is the target. Both in-plane axes
   are used, with random flips and whole-pixel sampling phases.
3. **Anti-aliasing and SR in one network.** The LR training input is *sampled* at the slice
   spacing, not just blurred, so it carries the same aliasing as the real through-plane
   direction; the network (:class:`ThroughPlaneNet`, a compact residual CNN on the
   thick-slice grid with a sub-pixel layer along the slice axis) learns to undo blur and
   aliasing together. This is ECLARE's choice; SMORE's 2D variant trains a separate
   anti-aliasing network first (not done here: twice the training time on a CPU).
4. **Application.** The network runs on the two orthogonal stacks of planes that contain
   the slice axis (``(Z, X)`` per Y and ``(Z, Y)`` per X) and the two results are averaged.
   The network upsamples by the whole factor ``s = ceil(slice spacing / in-plane
   spacing)``; a last cubic resampling along the slice axis reaches ``target_spacing``
   when the ratio is not whole or another spacing is asked for.

5. **Training length.** By default a time budget, with early stopping when the PSNR on
   in-plane slices held out of training (:func:`heldout_slices`) stops improving, and a
   learning rate that always ends annealed (:class:`_Schedule`); or an exact step count.

Geometry: the output covers the input's field of view with edges aligned
(:meth:`medsr.io.image.Image.regrid`), so the slice axis has ``round(n * spacing /
target)`` samples and the affine (NIfTI) or slice positions (DICOM) follow.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medsr.errors import ConfigError
from medsr.infer.runtime import resolve_device
from medsr.infer.upscale import check_finite, padding_mask, restore_padding
from medsr.io.image import Image
from medsr.transforms.degrade import FWHM_PER_SIGMA
from medsr.transforms.intensity import Normaliser, fit_normaliser

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_PATIENCE",
    "PROFILES",
    "SelfSupConfig",
    "SelfSupProgress",
    "SelfSupResult",
    "SliceAcquisition",
    "ThroughPlaneNet",
    "cubic_matrix",
    "estimate_acquisition",
    "heldout_slices",
    "profile_matrix",
    "self_supervised_upscale",
    "through_plane_axis",
]

logger = logging.getLogger(__name__)

Profile = Literal["gaussian", "rect"]
PROFILES: tuple[str, ...] = ("gaussian", "rect")
Progress = Callable[["SelfSupProgress"], None]
"""``progress(status)``: after each training step, then after each plane applied."""

# An axis counts as through-plane only when it is this much coarser than in-plane; below,
# the in-plane slices hold no finer detail to learn from.
MIN_ANISOTROPY = 1.2


# -- the acquisition model ---------------------------------------------------------------------
@dataclass(frozen=True)
class SliceAcquisition:
    """How the through-plane axis was sampled: slice centres ``spacing`` mm apart, each
    integrating the object with a ``profile`` of FWHM (Gaussian) or width (rect)
    ``thickness`` mm. ``gap = spacing - thickness`` (negative: overlapping slices)."""

    spacing: float
    thickness: float
    profile: Profile = "gaussian"

    def __post_init__(self) -> None:
        for name in ("spacing", "thickness"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"slice {name} must be a positive number of mm, got {value!r}")
        if self.profile not in PROFILES:
            raise ConfigError(
                f"unknown slice profile {self.profile!r}; choose from {', '.join(PROFILES)}"
            )

    @property
    def gap(self) -> float:
        return self.spacing - self.thickness

    def describe(self) -> str:
        return (
            f"{self.profile} slice profile, thickness {self.thickness:.3g} mm, gap "
            f"{self.gap:.3g} mm (slices {self.spacing:.3g} mm apart)"
        )


def through_plane_axis(image: Image, axis: str | int = "through-plane") -> int:
    """The array axis to super-resolve: ``"through-plane"`` picks the coarsest axis; an
    integer 0-2 names it. Raises :class:`ConfigError` for a 2D image, ``"in-plane"``, or an
    axis that is not coarser than the other two (nothing finer to learn from in-plane)."""
    if not image.is_volume:
        raise ConfigError(
            f"self-supervised SR needs a volume (Z, Y, X); got a 2D image {image.spatial_shape}"
        )
    if image.color:
        raise ConfigError("self-supervised SR works on grey volumes, not RGB")
    if isinstance(axis, str) and axis.lstrip("-").isdigit():
        axis = int(axis)
    spacing = image.spacing
    if axis == "through-plane":
        along = int(np.argmax(spacing))
    elif isinstance(axis, int) and not isinstance(axis, bool) and -3 <= axis < 3:
        along = axis % 3
    else:
        raise ConfigError(
            f"self-supervised SR: axis {axis!r} is not a through-plane axis; choose from "
            "through-plane, 0, 1, 2"
        )
    in_plane = [spacing[a] for a in range(3) if a != along]
    if spacing[along] < MIN_ANISOTROPY * max(in_plane):
        raise ConfigError(
            f"no through-plane axis to super-resolve: spacing {tuple(round(s, 4) for s in spacing)}"
            f" mm, axis {along} ({spacing[along]:.3g} mm) is not at least {MIN_ANISOTROPY}x "
            f"coarser than the in-plane axes ({', '.join(f'{s:.3g}' for s in in_plane)} mm)"
        )
    if min(image.spatial_shape[a] for a in range(3) if a != along) < 8:
        raise ConfigError(
            f"in-plane size {image.spatial_shape} is too small to learn from (at least 8x8)"
        )
    return along


def estimate_acquisition(
    image: Image,
    axis: int,
    *,
    thickness: float | None = None,
    gap: float | None = None,
    profile: Profile = "gaussian",
) -> SliceAcquisition:
    """The slice acquisition along ``axis``: spacing from the geometry; thickness from
    ``thickness``, else ``spacing - gap``, else the header (DICOM SliceThickness, axis 0),
    else the spacing (contiguous slices, the NIfTI case: pixdim holds no thickness)."""
    spacing = float(image.spacing[axis])
    header = image.metadata.get("slice_thickness") if axis == 0 else None
    if thickness is not None and gap is not None:
        if abs(thickness + gap - spacing) > 0.02 * spacing:
            raise ConfigError(
                f"slice thickness {thickness:g} mm + gap {gap:g} mm != the slice spacing "
                f"{spacing:g} mm of axis {axis}; give one of them"
            )
    elif thickness is None and gap is not None:
        thickness = spacing - gap
    elif thickness is None and header:
        thickness = float(header)
        logger.info("slice thickness %.3g mm from the header", thickness)
    if thickness is None:
        thickness = spacing
    if not (math.isfinite(thickness) and thickness > 0):
        raise ConfigError(
            f"slice thickness must be > 0 mm, got {thickness:g} (spacing {spacing:g}, gap {gap})"
        )
    return SliceAcquisition(spacing=spacing, thickness=float(thickness), profile=profile)


# -- 1D operators -------------------------------------------------------------------------------
def profile_matrix(
    n: int,
    *,
    step: float,
    thickness: float,
    profile: Profile = "gaussian",
    offset: float = 0.0,
) -> Tensor:
    """Thick-slice sampling of ``n`` thin samples: weights ``(n_lr, n)`` (float64, rows sum to 1).

    Lengths in thin-sample units (pixels). Thin sample ``i`` covers ``[i, i + 1]``; thick
    sample ``j`` is centred at ``offset + (j + 0.5) * step`` and weighs each thin sample by
    the integral of the profile (Gaussian of FWHM ``thickness`` or a box of that width) over
    it; ``n_lr = floor((n - offset) / step)``. Any real ``step >= 1`` (unlike
    :func:`medsr.transforms.degrade.slice_profile_weights`, which needs whole voxels); with
    an integer step and ``offset=0`` the two agree.
    """
    if step <= 0 or thickness <= 0:
        raise ConfigError(
            f"profile_matrix: step and thickness must be > 0, got {step}, {thickness}"
        )
    n_lr = math.floor((n - offset) / step + 1e-9)
    if n_lr < 1:
        raise ConfigError(f"profile_matrix: {n} samples hold no slice of step {step:g}")
    edges = torch.arange(n + 1, dtype=torch.float64)
    centres = offset + (torch.arange(n_lr, dtype=torch.float64) + 0.5) * step
    lo = edges[None, :-1] - centres[:, None]
    hi = edges[None, 1:] - centres[:, None]
    if profile == "gaussian":
        scale = FWHM_PER_SIGMA / (thickness * math.sqrt(2.0))
        weights = 0.5 * (torch.special.erf(hi * scale) - torch.special.erf(lo * scale))
    elif profile == "rect":
        half = thickness / 2.0
        weights = (hi.clamp(max=half) - lo.clamp(min=-half)).clamp(min=0.0)
    else:
        raise ConfigError(f"unknown slice profile {profile!r}; choose from {', '.join(PROFILES)}")
    return weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)


def _keys(t: Tensor) -> Tensor:
    """Keys cubic convolution kernel (a = -0.5), the kernel of bicubic interpolation."""
    a = -0.5
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def cubic_matrix(n_src: int, positions: Tensor) -> Tensor:
    """Cubic interpolation weights ``(len(positions), n_src)`` (float64): sample ``k`` of the
    source sits at coordinate ``k``; ``positions`` are where to evaluate. Edge samples are
    replicated beyond the ends."""
    u = positions.to(torch.float64)
    base = torch.floor(u)
    out = torch.zeros(len(u), n_src, dtype=torch.float64)
    rows = torch.arange(len(u))
    for k in (-1, 0, 1, 2):
        idx = base + k
        w = _keys(u - idx)
        out.index_put_((rows, idx.clamp(0, n_src - 1).long()), w, accumulate=True)
    return out


def _grid_positions(n_src: int, src_spacing: float, n_dst: int, dst_spacing: float) -> Tensor:
    """Centres of ``n_dst`` samples ``dst_spacing`` apart in the source's sample coordinates,
    both grids starting at the same edge (the :meth:`Image.regrid` convention)."""
    centres_mm = (torch.arange(n_dst, dtype=torch.float64) + 0.5) * dst_spacing
    return centres_mm / src_spacing - 0.5


# -- the network --------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class ThroughPlaneNet(nn.Module):
    """Compact residual CNN that upsamples the H axis only: ``(B, 1, h, W) -> (B, 1, s*h, W)``.

    The body runs on the thick-slice grid (cheap: ``s`` times fewer pixels than the output);
    a last convolution gives ``s`` sub-rows per row, shuffled into H (ESPCN's sub-pixel
    layer along one axis), and added to the bicubic upsampling of the input. The last layer
    starts at zero, so an untrained network is bicubic interpolation along H.
    """

    def __init__(self, *, scale: int, features: int = 32, num_blocks: int = 4) -> None:
        super().__init__()
        if scale < 1 or features < 1 or num_blocks < 0:
            raise ConfigError(
                f"ThroughPlaneNet: bad size scale={scale} features={features} blocks={num_blocks}"
            )
        self.scale = scale
        self.head = nn.Conv2d(1, features, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(features) for _ in range(num_blocks)])
        self.tail = nn.Conv2d(features, scale, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        s = self.scale
        base = F.interpolate(x, scale_factor=(s, 1), mode="bicubic", align_corners=False)
        detail = self.tail(torch.relu(self.body(self.head(x))))  # (B, s, h, W)
        # sub-row k of row a becomes row a * s + k
        return base + detail.permute(0, 2, 1, 3).reshape(b, 1, h * s, w)


# -- configuration and result -------------------------------------------------------------------
DEFAULT_BUDGET = 240.0
"""Seconds of training when no step count is given (see benchmarks/selfsup/curve.md)."""
DEFAULT_PATIENCE = 6
"""Held-out checks without improvement before the run anneals and stops (no step count)."""


@dataclass(frozen=True)
class SelfSupConfig:
    """Training and inference settings.

    How long to train: with ``steps=None`` (the default) training stops at the first of a
    time budget (``budget`` seconds, default :data:`DEFAULT_BUDGET`) and early stopping
    (held-out PSNR not improved by ``min_delta`` dB for ``patience`` checks, one check every
    ``eval_every`` steps; default :data:`DEFAULT_PATIENCE`, 0 turns it off). With ``steps=N``
    exactly ``N`` steps are made, deterministic given the seed, machine and thread count;
    ``budget`` and ``patience`` then apply only when given. Either way the run ends with a
    linear anneal of the learning rate to zero over ``anneal`` of its length
    (warmup-stable-decay), so a run stopped by time or by a plateau still ends annealed.
    """

    steps: int | None = None
    budget: float | None = None
    patience: int | None = None
    eval_every: int = 100
    min_delta: float = 0.01
    heldout_patches: int = 128
    warmup: int = 100
    anneal: float = 0.2
    batch_size: int = 16
    patch: int = 48
    features: int = 32
    num_blocks: int = 4
    learning_rate: float = 1e-3
    phases: int = 4
    planes_per_call: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("batch_size", "patch", "features", "phases", "planes_per_call", "eval_every")
        for name in (*positive, "heldout_patches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"self-supervised {name} must be a positive integer, got {value!r}"
                )
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise ConfigError(
                f"self-supervised steps must be a positive integer, got {self.steps!r}"
            )
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 0):
            raise ConfigError(
                f"self-supervised patience must be an integer >= 0 (0: off), got {self.patience!r}"
            )
        if self.budget is not None and not (
            isinstance(self.budget, int | float) and math.isfinite(self.budget) and self.budget > 0
        ):
            raise ConfigError(
                f"self-supervised budget must be a positive number of seconds, got {self.budget!r}"
            )
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(
                f"self-supervised warmup must be an integer >= 0, got {self.warmup!r}"
            )
        if not (0.0 < self.anneal < 1.0):
            raise ConfigError(f"self-supervised anneal must be in (0, 1), got {self.anneal!r}")
        if not (self.min_delta >= 0):
            raise ConfigError(f"self-supervised min_delta must be >= 0 dB, got {self.min_delta!r}")
        if self.patch < 8:
            raise ConfigError(f"self-supervised patch must be at least 8 pixels, got {self.patch}")
        if not (self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")

    @property
    def time_limit(self) -> float | None:
        """The training budget in seconds in force (None: no time limit)."""
        if self.budget is not None:
            return float(self.budget)
        return DEFAULT_BUDGET if self.steps is None else None

    @property
    def stop_patience(self) -> int:
        """Held-out checks without improvement before annealing (0: no early stopping)."""
        if self.patience is not None:
            return self.patience
        return DEFAULT_PATIENCE if self.steps is None else 0


@dataclass(frozen=True)
class SelfSupProgress:
    """What :func:`self_supervised_upscale` reports to its ``progress`` callback.

    ``stage``: ``"train"`` (after each step) or ``"apply"`` (after each plane). ``done`` of
    ``total`` steps or planes; ``total`` is None while training under a time budget or early
    stopping (the step count is not known in advance). ``fraction`` of the stage done (an
    estimate under a budget), ``elapsed`` and ``seconds_left`` (estimate) in this stage;
    ``heldout_psnr`` and ``best_psnr``: the last and best check on the held-out in-plane
    patches (dB, normalised units; None before the first check or without held-out slices);
    ``ending``: why training is annealing towards its end, once it is.
    """

    stage: Literal["train", "apply"]
    done: int
    total: int | None
    fraction: float
    elapsed: float
    seconds_left: float | None
    heldout_psnr: float | None = None
    best_psnr: float | None = None
    ending: str | None = None


@dataclass(frozen=True)
class SelfSupResult:
    """The super-resolved image and how it was made.

    ``fidelity_psnr``: the output degraded again by the acquisition model against the
    normalised input (dB, data range 1); ``losses``: mean L1 training loss per tenth of the
    steps (per ``eval_every`` steps without a step count); ``steps``: steps made;
    ``stop_reason``: what ended training; ``heldout_psnr``: PSNR of the returned network on
    the held-out in-plane patches (None without held-out slices); ``history``: one entry per
    held-out check (``step``, ``seconds``, ``heldout_psnr``, ``lr``); ``threads``: the CPU
    threads used (chosen on the first steps under a time budget when not given);
    ``timings``: seconds for ``train``, ``apply``, ``total``.
    """

    image: Image
    axis: int
    acquisition: SliceAcquisition
    working_spacing: float
    fidelity_psnr: float
    normaliser: Normaliser
    losses: list[float]
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    stop_reason: str = ""
    heldout_psnr: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    threads: int | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "acquisition": {
                "spacing": self.acquisition.spacing,
                "thickness": self.acquisition.thickness,
                "gap": self.acquisition.gap,
                "profile": self.acquisition.profile,
            },
            "output_shape": list(self.image.array.shape),
            "output_spacing": list(self.image.spacing),
            "fidelity_psnr": self.fidelity_psnr,
            "losses": list(self.losses),
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "heldout_psnr": self.heldout_psnr,
            "device": self.device,
            "threads": self.threads,
            "timings": dict(self.timings),
        }


# -- training -----------------------------------------------------------------------------------
def _phases(step: float, count: int) -> list[int]:
    """Up to ``count`` whole-pixel sampling offsets spread over one slice spacing (whole
    pixels keep the targets exact pixels when the step is an integer)."""
    return sorted({round(q * step / count) % max(1, math.ceil(step)) for q in range(count)})


def heldout_slices(n: int) -> list[int]:
    """The in-plane slices kept out of training to decide when to stop: every 8th from the
    5th (one in eight; none below 8 slices, where every slice is needed for training)."""
    return list(range(4, n, 8)) if n >= 8 else []


class _PairSampler:
    """Random (input, target) patches from the in-plane slices of ``vol`` ``(Z, Y, X)``
    (slice axis first, normalised), degraded along Y or X: inputs ``(B, 1, h, p)`` on the
    thick-slice grid, targets ``(B, 1, s*h, p)`` on the network's output grid. Only the
    slices in ``slices`` are drawn from (default: all)."""

    def __init__(
        self,
        vol: Tensor,
        acq: SliceAcquisition,
        in_plane: tuple[float, float],
        scale: int,
        config: SelfSupConfig,
        generator: torch.Generator,
        slices: list[int] | None = None,
    ) -> None:
        self.vol = vol
        self.g = generator
        self.config = config
        self.scale = scale
        # per orientation (0: degrade Y, 1: degrade X): (phase, down, target) operators
        self.ops: list[list[tuple[int, Tensor, Tensor]]] = []
        self.steps: list[float] = []
        for o, d in enumerate(in_plane):
            n = vol.shape[1 + o]
            step = acq.spacing / d
            self.steps.append(step)
            ops = []
            for phase in _phases(step, config.phases):
                if n - phase < 2 * step:
                    continue
                down = profile_matrix(
                    n, step=step, thickness=acq.thickness / d, profile=acq.profile, offset=phase
                )
                k = torch.arange(down.shape[0] * scale, dtype=torch.float64)
                target = cubic_matrix(n, phase + (k + 0.5) * step / scale - 0.5)
                ops.append((phase, down.to(torch.float32), target.to(torch.float32)))
            if not ops:
                raise ConfigError(
                    f"in-plane size {n} holds fewer than 2 slices of {acq.spacing:g} mm"
                )
            self.ops.append(ops)
        # favour slices and positions with tissue: thresholded at a tenth of the range
        self.fg = vol > 0.1
        self._fg_cache: dict[tuple[int, int], Tensor] = {}
        weights = self.fg.flatten(1).sum(1).to(torch.float64) + 1.0
        if slices is not None:
            keep = torch.zeros_like(weights)
            keep[slices] = 1.0
            weights = weights * keep
        self.slice_weights = weights / weights.sum()

    def sample(self, batch: int | None = None) -> tuple[Tensor, Tensor]:
        b, g, s = batch or self.config.batch_size, self.g, self.scale
        xs, ys = [], []
        slices = torch.multinomial(self.slice_weights, b, replacement=True, generator=g)
        orient = torch.randint(2, (b,), generator=g).tolist()
        # one patch shape per batch: the orientation with the fewest thick rows decides
        rows = min(op[1].shape[0] for o in set(orient) for op in self.ops[o])
        # at most 16 thick rows: small ratios (e.g. 5 mm / 4 mm) would make tall, slow patches
        h = max(2, min(rows, 16, round(self.config.patch / max(self.steps))))
        cols = min(self.vol.shape[1] if 1 in orient else self.vol.shape[2], self.config.patch)
        cols = min(cols, self.vol.shape[2] if 0 in orient else self.vol.shape[1])
        for k, o in zip(slices.tolist(), orient, strict=True):
            phase, down, target = self.ops[o][
                int(torch.randint(len(self.ops[o]), (1,), generator=g))
            ]
            hr = self.vol[k] if o == 0 else self.vol[k].T  # degraded axis first
            flips = torch.rand(2, generator=g) < 0.5
            top, left = self._corner(self._foreground(k, o), hr.shape, cols)
            # only the patch's columns are degraded (the operators act along rows): the
            # whole slice costs as much as a training step's convolutions
            strip = hr[:, left : left + cols]
            if flips[0]:  # flip before degrading: both directions along the slice axis
                strip, top = strip.flip(0), hr.shape[0] - 1 - top
            step = self.steps[o]
            a = int((top - phase) // step) - h // 2
            a = min(max(a, 0), down.shape[0] - h)
            x = down[a : a + h] @ strip
            y = target[a * s : (a + h) * s] @ strip
            if flips[1]:
                x, y = x.flip(1), y.flip(1)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs)[:, None], torch.stack(ys)[:, None]

    def _foreground(self, k: int, o: int) -> Tensor:
        """Foreground pixels ``(N, 2)`` of slice ``k`` in orientation ``o``, found once (a
        search per patch cost a tenth of a training step)."""
        key = (k, o)
        if key not in self._fg_cache:
            fg = self.fg[k] if o == 0 else self.fg[k].T
            self._fg_cache[key] = fg.nonzero()
        return self._fg_cache[key]

    def _corner(self, idx: Tensor, shape: tuple[int, ...], cols: int) -> tuple[int, int]:
        """A foreground row and the left column of a patch around it (90 %), else random."""
        g = self.g
        h, w = shape
        if len(idx) and float(torch.rand(1, generator=g)) < 0.9:
            cy, cx = idx[int(torch.randint(len(idx), (1,), generator=g))].tolist()
            return cy, min(max(cx - cols // 2, 0), w - cols)
        cy = int(torch.randint(h, (1,), generator=g))
        return cy, int(torch.randint(w - cols + 1, (1,), generator=g))


class _Schedule:
    """Learning rate and stopping rule of one training run (warmup-stable-decay).

    The rate rises linearly from 1/25 of ``learning_rate`` over ``warmup`` steps (at most a
    tenth of a step count), stays constant, then falls linearly to zero. The fall (the
    anneal) starts at the first of: ``1 - anneal`` of the step count; ``1 - anneal`` of the
    time budget; ``patience`` held-out checks without an improvement of ``min_delta`` dB.
    It lasts ``anneal / (1 - anneal)`` of the steps made so far (the rest of the step
    count, when there is one) and is cut short by the time budget: its progress is the
    larger of its step and time fractions, so the rate reaches zero when the run ends.
    ``clock`` (seconds) is injectable for tests.
    """

    def __init__(self, config: SelfSupConfig, clock: Callable[[], float]) -> None:
        self.lr0 = config.learning_rate
        self.steps = config.steps
        self.budget = config.time_limit
        self.patience = config.stop_patience
        self.min_delta = config.min_delta
        self.f = config.anneal
        self.warmup = config.warmup if self.steps is None else min(config.warmup, self.steps // 10)
        self.clock = clock
        self.t0 = clock()
        self.best = -math.inf
        self.stale = 0
        self.anneal_from: int | None = None
        self.anneal_len = 0
        self.anneal_t0 = 0.0
        self.reason: str | None = None
        if self.steps is not None:
            length = max(1, round(self.f * self.steps))
            self._start_anneal(self.steps - length, f"{self.steps} steps")
            self.anneal_len = length

    def elapsed(self) -> float:
        return self.clock() - self.t0

    def _start_anneal(self, step: int, reason: str) -> None:
        self.anneal_from = step
        length = max(1, round(step * self.f / (1.0 - self.f)))
        if self.steps is not None:
            length = min(length, max(1, self.steps - step))
        self.anneal_len = length
        self.anneal_t0 = self.elapsed()
        self.reason = reason

    def _anneal_progress(self, step: int) -> float:
        if self.anneal_from is None:
            return 0.0
        p = (step - self.anneal_from) / self.anneal_len
        if self.budget is not None:
            span = self.budget - self.anneal_t0
            p = max(p, 1.0 if span <= 0 else (self.elapsed() - self.anneal_t0) / span)
        return min(max(p, 0.0), 1.0)

    def lr(self, step: int) -> float:
        """The rate for step ``step`` (0-based); starts the anneal when the time says so."""
        if (
            self.anneal_from is None
            and self.budget is not None
            and self.elapsed() >= (1.0 - self.f) * self.budget
        ):
            self._start_anneal(step, f"time budget {self.budget:.0f} s")
        warm = 1.0
        if self.warmup and step < self.warmup:
            warm = 1.0 / 25.0 + (1.0 - 1.0 / 25.0) * step / self.warmup
        return self.lr0 * warm * (1.0 - self._anneal_progress(step))

    def check(self, step: int, psnr: float) -> bool:
        """Record a held-out check after ``step`` steps; True if it is the best so far."""
        improved = psnr > self.best + self.min_delta
        best = psnr > self.best
        if best:
            self.best = psnr
        self.stale = 0 if improved else self.stale + 1
        if self.anneal_from is None and self.patience and self.stale >= self.patience:
            self._start_anneal(
                step,
                f"held-out PSNR not improved by {self.min_delta:g} dB in {self.patience} checks",
            )
        return best

    def finished(self, done: int) -> bool:
        """True when ``done`` steps end the run."""
        if self.steps is not None and done >= self.steps:
            return True
        if self.budget is not None and self.elapsed() >= self.budget:
            return True
        return self.anneal_from is not None and self._anneal_progress(done) >= 1.0

    def fraction(self, done: int) -> float:
        """An estimate of the fraction of the run done after ``done`` steps."""
        parts = [0.0]
        if self.steps is not None:
            parts.append(done / self.steps)
        if self.budget is not None:
            parts.append(self.elapsed() / self.budget)
        if self.anneal_from is not None:
            parts.append(done / (self.anneal_from + self.anneal_len))
        return min(1.0, max(parts))


class _ThreadProbe:
    """Picks the faster CPU thread count from the first training steps: after ``skip``
    steps, ``rounds`` steps with each candidate in turn (the first, normally 1 thread,
    first), keeping the one with the lower median step time. A candidate is dropped at its
    first step slower than 1.5 times the first's median: on a CPU shared with other jobs one
    multi-threaded step could take seconds (benchmarks/selfsup/step_time.md: one thread was
    2.5-5 times faster than two; on an idle CPU, the reverse)."""

    def __init__(self, choices: list[int], *, skip: int = 4, rounds: int = 6) -> None:
        self.choices = list(dict.fromkeys(choices))
        self.skip = skip
        self.rounds = rounds
        self.times: dict[int, list[float]] = {c: [] for c in self.choices}
        self.chosen: int | None = None if len(self.choices) > 1 else self.choices[0]

    def threads(self, step: int) -> int:
        """The thread count for step ``step`` (0-based)."""
        if self.chosen is not None:
            return self.chosen
        turn = max(0, step - self.skip) // self.rounds
        return self.choices[min(turn, len(self.choices) - 1)]

    def record(self, step: int, seconds: float) -> None:
        """Step ``step`` took ``seconds``; picks the thread count once it can."""
        if self.chosen is not None or step < self.skip:
            return
        threads = self.threads(step)
        self.times[threads].append(seconds)
        first = self.choices[0]
        too_slow = threads != first and seconds > 1.5 * float(np.median(self.times[first]))
        if too_slow or step + 1 >= self.skip + self.rounds * len(self.choices):
            medians = {c: float(np.median(t)) for c, t in self.times.items() if t}
            self.chosen = first if too_slow else min(medians, key=lambda c: medians[c])
            logger.info(
                "CPU threads: %d (median step %s)",
                self.chosen,
                ", ".join(f"{c} thread(s) {1e3 * m:.0f} ms" for c, m in medians.items()),
            )


@torch.no_grad()
def _heldout_psnr(model: nn.Module, x: Tensor, y: Tensor, per_call: int) -> float:
    """PSNR (dB, data range 1 in normalised units) of ``model`` on the held-out patches."""
    model.eval()
    se = 0.0
    for start in range(0, x.shape[0], per_call):
        se += float(((model(x[start : start + per_call]) - y[start : start + per_call]) ** 2).sum())
    model.train()
    mse = se / y.numel()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


@dataclass
class _Trained:
    model: ThroughPlaneNet
    losses: list[float]
    steps: int
    stop_reason: str
    heldout_psnr: float | None
    history: list[dict[str, float]]
    threads: int | None = None


def _train(
    vol: Tensor,
    acq: SliceAcquisition,
    in_plane: tuple[float, float],
    scale: int,
    config: SelfSupConfig,
    device: torch.device,
    report: Callable[[SelfSupProgress], None],
    clock: Callable[[], float] = time.perf_counter,
    on_check: Callable[[ThroughPlaneNet, dict[str, float]], None] | None = None,
    thread_choices: list[int] | None = None,
) -> _Trained:
    """Train a :class:`ThroughPlaneNet` on ``vol`` (see :class:`_Schedule` for how long).
    ``thread_choices``: CPU thread counts to try on the first steps (:class:`_ThreadProbe`).
    ``clock`` and ``on_check(model, history_entry)`` (after each held-out check) are for
    tests and benchmarks."""
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ThroughPlaneNet(scale=scale, features=config.features, num_blocks=config.num_blocks)
    model.to(device).train()
    probe = _ThreadProbe(thread_choices) if thread_choices else None
    if probe is not None:  # set-up too: small operations on busy cores crawl with threads
        torch.set_num_threads(probe.threads(0))
    held = heldout_slices(vol.shape[0])
    training = [k for k in range(vol.shape[0]) if k not in set(held)] if held else None
    sampler = _PairSampler(vol, acq, in_plane, scale, config, g, training)
    hx = hy = None
    if held:  # a fixed set, drawn once with its own generator: training draws are unchanged
        hg = torch.Generator().manual_seed(config.seed + 7919)
        hx, hy = _PairSampler(vol, acq, in_plane, scale, config, hg, held).sample(
            config.heldout_patches
        )
        hx, hy = hx.to(device), hy.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    schedule = _Schedule(config, clock)
    losses: list[float] = []
    history: list[dict[str, float]] = []
    running, count = 0.0, 0
    chunk = max(1, config.steps // 10) if config.steps is not None else config.eval_every
    last: float | None = None
    best_state: dict[str, Tensor] | None = None
    done = 0
    lr = config.learning_rate

    def check() -> None:
        nonlocal last, best_state
        if hx is None or hy is None:
            return
        last = _heldout_psnr(model, hx, hy, config.planes_per_call * 8)
        history.append(
            {"step": done, "seconds": schedule.elapsed(), "heldout_psnr": last, "lr": lr}
        )
        if schedule.check(done, last):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        logger.debug("step %d: held-out PSNR %.3f dB", done, last)
        if on_check is not None:
            on_check(model, history[-1])

    while not schedule.finished(done):
        if probe is not None:
            torch.set_num_threads(probe.threads(done))
        started = clock()
        lr = schedule.lr(done)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = sampler.sample()
        x, y = x.to(device), y.to(device)
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if probe is not None:
            probe.record(done, clock() - started)
        done += 1
        running += float(loss.detach())
        count += 1
        if count == chunk:
            losses.append(running / count)
            running, count = 0.0, 0
        if done % config.eval_every == 0:
            check()
        best = None if hx is None or schedule.best == -math.inf else schedule.best
        fraction = schedule.fraction(done)
        elapsed = schedule.elapsed()
        report(
            SelfSupProgress(
                stage="train",
                done=done,
                total=config.steps,
                fraction=fraction,
                elapsed=elapsed,
                seconds_left=elapsed * (1.0 - fraction) / fraction if fraction > 0 else None,
                heldout_psnr=last,
                best_psnr=best,
                ending=schedule.reason if config.steps is None else None,
            )
        )
    if count:
        losses.append(running / count)
    if done % config.eval_every:
        check()
    reason = schedule.reason if schedule.anneal_from is not None else None
    if config.steps is not None and done >= config.steps:
        reason = f"{config.steps} steps"
    elif schedule.budget is not None and schedule.elapsed() >= schedule.budget:
        reason = f"time budget {schedule.budget:.0f} s"
    heldout = last
    if best_state is not None and last is not None and schedule.best > last:
        # the anneal normally ends best; when it did not, the best checked network is kept
        model.load_state_dict(best_state)
        heldout = schedule.best
    model.eval()
    threads = None if probe is None else probe.chosen or probe.threads(done)
    if threads is not None:
        torch.set_num_threads(threads)
    return _Trained(model, losses, done, reason or "", heldout, history, threads)


# -- application --------------------------------------------------------------------------------
@torch.no_grad()
def _apply_stack(
    model: ThroughPlaneNet,
    stack: Tensor,
    per_call: int,
    device: torch.device,
    tick: Callable[[], None],
) -> Tensor:
    """Run ``model`` over ``stack`` ``(N, 1, h, W)``, ``per_call`` planes at a time:
    ``(N, 1, s*h, W)``."""
    n, _, h, w = stack.shape
    out = torch.empty((n, 1, h * model.scale, w), dtype=torch.float32)
    for start in range(0, stack.shape[0], per_call):
        chunk = stack[start : start + per_call].to(device)
        out[start : start + per_call] = model(chunk).to("cpu", torch.float32)
        for _ in range(chunk.shape[0]):
            tick()
    return out


def _along(matrix: Tensor, vol: Tensor) -> Tensor:
    """Apply ``matrix`` ``(m, n)`` along axis 0 of ``vol`` ``(n, ...)``: ``(m, ...)``."""
    flat = vol.reshape(vol.shape[0], -1)
    return (matrix.to(vol.dtype) @ flat).reshape(matrix.shape[0], *vol.shape[1:])


def _reconstruct(
    model: ThroughPlaneNet,
    norm: Tensor,
    acq: SliceAcquisition,
    m_out: int,
    per_call: int,
    device: torch.device,
    tick: Callable[[], None],
) -> tuple[Tensor, float]:
    """The network applied to ``norm`` ``(n, Y, X)`` (slice axis first, normalised) on both
    stacks of planes through the slice axis, averaged and resampled to ``m_out`` slices;
    with its fidelity PSNR (the output degraded again against ``norm``, dB)."""
    n = norm.shape[0]
    m_work = n * model.scale
    d_work = acq.spacing / model.scale
    # (n, X) planes, one per Y, and (n, Y) planes, one per X -> (m_work, Y, X) each
    first = _apply_stack(model, norm.permute(1, 0, 2)[:, None], per_call, device, tick)
    result = first[:, 0].permute(1, 0, 2).contiguous()
    del first
    second = _apply_stack(model, norm.permute(2, 0, 1)[:, None], per_call, device, tick)
    result.add_(second[:, 0].permute(1, 2, 0)).mul_(0.5)
    del second
    d_out = n * acq.spacing / m_out
    if m_out != m_work:
        result = _along(cubic_matrix(m_work, _grid_positions(m_work, d_work, m_out, d_out)), result)
    again = profile_matrix(
        m_out,
        step=acq.spacing / d_out,
        thickness=acq.thickness / d_out,
        profile=acq.profile,
    )
    diff = _along(again, result.double())[:n] - norm.double()
    mse = float((diff * diff).mean())
    return result, math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def self_supervised_upscale(
    image: Image,
    *,
    axis: str | int = "through-plane",
    target_spacing: float | None = None,
    slice_thickness: float | None = None,
    slice_gap: float | None = None,
    slice_profile: Profile = "gaussian",
    config: SelfSupConfig | None = None,
    device: str | torch.device = "auto",
    threads: int | None = None,
    progress: Progress | None = None,
) -> SelfSupResult:
    """Super-resolve the through-plane axis of ``image`` by learning from its own in-plane
    slices (see the module docstring). Output in the input's physical units.

    Args:
        image: a grey volume ``(Z, Y, X)`` with one axis coarser than the other two.
        axis: ``"through-plane"`` (the coarsest axis) or an array axis 0-2.
        target_spacing: output spacing along that axis in mm (default: the in-plane
            spacing); ``0 < target_spacing < slice spacing``.
        slice_thickness, slice_gap, slice_profile: the acquisition (see
            :func:`estimate_acquisition`); by default from the header.
        config: training settings (:class:`SelfSupConfig`), seeded by ``config.seed``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``. threads: CPU threads for PyTorch.
        progress: called with a :class:`SelfSupProgress` after each training step and
            each plane applied.
    """
    t_start = time.perf_counter()
    check_finite(image)
    config = config or SelfSupConfig()
    along = through_plane_axis(image, axis)
    acq = estimate_acquisition(
        image, along, thickness=slice_thickness, gap=slice_gap, profile=slice_profile
    )
    in_plane = tuple(float(image.spacing[a]) for a in range(3) if a != along)
    working = float(np.mean(in_plane))
    if max(in_plane) > 1.1 * min(in_plane):
        logger.warning(
            "in-plane spacings differ (%s mm); the network works at their mean %.3g mm",
            in_plane,
            working,
        )
    if target_spacing is None:
        target_spacing = working
    if not (
        isinstance(target_spacing, int | float)
        and math.isfinite(target_spacing)
        and 0 < target_spacing < acq.spacing
    ):
        raise ConfigError(
            f"target spacing {target_spacing!r} mm must be > 0 and finer than the slice "
            f"spacing {acq.spacing:g} mm of axis {along}"
        )
    if target_spacing < 0.5 * working:
        logger.warning(
            "target spacing %.3g mm is finer than half the in-plane spacing %.3g mm: the "
            "network works at %.3g mm and the rest is cubic interpolation",
            target_spacing,
            working,
            working,
        )
    dev = resolve_device(device)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    try:
        method = "auto" if image.modality.upper() in ("CT", "MR") else "minmax"
        padding = padding_mask(image)  # never fed to the network: see upscale.restore_padding
        values = image.array
        if padding is not None:
            values = np.where(padding, image.array[~padding].min(), image.array)
        normaliser = fit_normaliser(values, modality=image.modality, method=method, clip=False)
        norm = torch.from_numpy(
            np.ascontiguousarray(
                np.moveaxis(np.asarray(normaliser.forward(values), np.float32), along, 0)
            )
        )
        del values
        n, ny, nx = norm.shape
        # the network's whole upsampling factor; a real ratio ends with a cubic resampling
        scale = max(2, math.ceil(acq.spacing / working - 1e-6))
        d_work = acq.spacing / scale
        m_out = max(n + 1, round(n * acq.spacing / target_spacing))

        report = progress if progress is not None else (lambda status: None)
        limit = config.time_limit
        logger.info(
            "self-supervised SR along axis %d: %s; training on %s for %s",
            along,
            acq.describe(),
            dev,
            f"{config.steps} steps"
            if config.steps is not None
            else f"at most {limit:.0f} s (early stopping after {config.stop_patience} checks)",
        )
        t = time.perf_counter()
        # a time budget buys the most steps with the faster thread count, measured on the
        # first steps (one thread first); a step count keeps the thread count fixed
        # (reproducible results)
        choices = None
        if threads is None and dev.type == "cpu" and config.steps is None:
            cores = torch.get_num_threads()
            choices = [1, cores] if cores > 1 else None
        trained = _train(
            norm,
            acq,
            (in_plane[0], in_plane[1]),
            scale,
            config,
            dev,
            report,
            thread_choices=choices,
        )
        model = trained.model
        timings = {"train": time.perf_counter() - t}
        logger.info(
            "trained %d steps in %.0f s (%s); held-out PSNR %s",
            trained.steps,
            timings["train"],
            trained.stop_reason,
            "n/a" if trained.heldout_psnr is None else f"{trained.heldout_psnr:.2f} dB",
        )

        planes = ny + nx
        applied = 0
        t_apply = time.perf_counter()

        def tick() -> None:
            nonlocal applied
            applied += 1
            elapsed = time.perf_counter() - t_apply
            report(
                SelfSupProgress(
                    stage="apply",
                    done=applied,
                    total=planes,
                    fraction=applied / planes,
                    elapsed=elapsed,
                    seconds_left=elapsed * (planes - applied) / applied,
                    heldout_psnr=trained.heldout_psnr,
                    best_psnr=trained.heldout_psnr,
                )
            )

        result, fidelity = _reconstruct(model, norm, acq, m_out, config.planes_per_call, dev, tick)
        timings["apply"] = time.perf_counter() - t_apply
        d_out = n * acq.spacing / m_out

        physical = np.asarray(normaliser.inverse(result.numpy()), dtype=np.float32)
        physical = np.ascontiguousarray(np.moveaxis(physical, 0, along))
        pos = _grid_positions(n, acq.spacing, m_out, d_out).round().clamp(0, n - 1).long().numpy()
        physical = restore_padding(physical, image, padding, lambda a: np.take(a, pos, axis=along))
        mask = image.mask
        if mask is not None:
            mask = np.take(mask, pos, axis=along)
        out_image = image.regrid(physical, mask=mask)
    finally:
        torch.set_num_threads(old_threads)
    timings["total"] = time.perf_counter() - t_start
    return SelfSupResult(
        image=out_image,
        axis=along,
        acquisition=acq,
        working_spacing=d_work,
        fidelity_psnr=fidelity,
        normaliser=normaliser,
        losses=trained.losses,
        device=str(dev),
        timings=timings,
        steps=trained.steps,
        stop_reason=trained.stop_reason,
        heldout_psnr=trained.heldout_psnr,
        history=trained.history,
        threads=trained.threads or (torch.get_num_threads() if dev.type == "cpu" else None),
    )
