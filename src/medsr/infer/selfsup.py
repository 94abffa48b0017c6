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
    "PROFILES",
    "SelfSupConfig",
    "SelfSupResult",
    "SliceAcquisition",
    "ThroughPlaneNet",
    "cubic_matrix",
    "estimate_acquisition",
    "profile_matrix",
    "self_supervised_upscale",
    "through_plane_axis",
]

logger = logging.getLogger(__name__)

Profile = Literal["gaussian", "rect"]
PROFILES: tuple[str, ...] = ("gaussian", "rect")
Progress = Callable[[int, int], None]
"""``progress(done, total)``: training steps then planes, in one count."""

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
@dataclass(frozen=True)
class SelfSupConfig:
    """Training and inference settings. The defaults fit a 256x256x40 volume in well under
    15 minutes on a 2-core CPU (see benchmarks/selfsup)."""

    steps: int = 500
    batch_size: int = 16
    patch: int = 48
    features: int = 32
    num_blocks: int = 4
    learning_rate: float = 1e-3
    phases: int = 4
    planes_per_call: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "patch", "features", "phases", "planes_per_call"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"self-supervised {name} must be a positive integer, got {value!r}"
                )
        if self.patch < 8:
            raise ConfigError(f"self-supervised patch must be at least 8 pixels, got {self.patch}")
        if not (self.learning_rate > 0):
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")


@dataclass(frozen=True)
class SelfSupResult:
    """The super-resolved image and how it was made.

    ``fidelity_psnr``: the output degraded again by the acquisition model against the
    normalised input (dB, data range 1); ``losses``: mean L1 training loss per tenth of the
    steps; ``timings``: seconds for ``train``, ``apply``, ``total``.
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
            "device": self.device,
            "timings": dict(self.timings),
        }


# -- training -----------------------------------------------------------------------------------
def _phases(step: float, count: int) -> list[int]:
    """Up to ``count`` whole-pixel sampling offsets spread over one slice spacing (whole
    pixels keep the targets exact pixels when the step is an integer)."""
    return sorted({round(q * step / count) % max(1, math.ceil(step)) for q in range(count)})


class _PairSampler:
    """Random (input, target) patches from the in-plane slices of ``vol`` ``(Z, Y, X)``
    (slice axis first, normalised), degraded along Y or X: inputs ``(B, 1, h, p)`` on the
    thick-slice grid, targets ``(B, 1, s*h, p)`` on the network's output grid."""

    def __init__(
        self,
        vol: Tensor,
        acq: SliceAcquisition,
        in_plane: tuple[float, float],
        scale: int,
        config: SelfSupConfig,
        generator: torch.Generator,
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
        weights = self.fg.flatten(1).sum(1).to(torch.float64) + 1.0
        self.slice_weights = weights / weights.sum()

    def sample(self) -> tuple[Tensor, Tensor]:
        b, g, s = self.config.batch_size, self.g, self.scale
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
            fg = self.fg[k] if o == 0 else self.fg[k].T
            flips = torch.rand(2, generator=g) < 0.5
            if flips[0]:  # flip before degrading: both directions along the slice axis
                hr, fg = hr.flip(0), fg.flip(0)
            lr, tg = down @ hr, target @ hr
            step = self.steps[o]
            top, left = self._corner(fg, hr.shape[1], cols)
            a = int((top - phase) // step) - h // 2
            a = min(max(a, 0), lr.shape[0] - h)
            x = lr[a : a + h, left : left + cols]
            y = tg[a * s : (a + h) * s, left : left + cols]
            if flips[1]:
                x, y = x.flip(1), y.flip(1)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs)[:, None], torch.stack(ys)[:, None]

    def _corner(self, fg: Tensor, w: int, cols: int) -> tuple[int, int]:
        """A foreground row and the left column of a patch around it (90 %), else random."""
        g = self.g
        idx = fg.nonzero()
        if len(idx) and float(torch.rand(1, generator=g)) < 0.9:
            cy, cx = idx[int(torch.randint(len(idx), (1,), generator=g))].tolist()
            return cy, min(max(cx - cols // 2, 0), w - cols)
        cy = int(torch.randint(fg.shape[0], (1,), generator=g))
        return cy, int(torch.randint(w - cols + 1, (1,), generator=g))


def _train(
    vol: Tensor,
    acq: SliceAcquisition,
    in_plane: tuple[float, float],
    scale: int,
    config: SelfSupConfig,
    device: torch.device,
    tick: Callable[[], None],
) -> tuple[ThroughPlaneNet, list[float]]:
    g = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ThroughPlaneNet(scale=scale, features=config.features, num_blocks=config.num_blocks)
    model.to(device).train()
    sampler = _PairSampler(vol, acq, in_plane, scale, config, g)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.learning_rate, total_steps=config.steps, pct_start=0.1
    )
    losses: list[float] = []
    running, count = 0.0, 0
    chunk = max(1, config.steps // 10)
    for step in range(config.steps):
        x, y = sampler.sample()
        x, y = x.to(device), y.to(device)
        loss = (model(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running += float(loss.detach())
        count += 1
        if count == chunk or step == config.steps - 1:
            losses.append(running / count)
            logger.debug("step %d: L1 %.5f", step + 1, running / count)
            running, count = 0.0, 0
        tick()
    model.eval()
    return model, losses


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
        progress: ``progress(done, total)`` after each training step and each plane.
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
        m_work = n * scale
        d_work = acq.spacing / scale
        m_out = max(n + 1, round(n * acq.spacing / target_spacing))

        total = config.steps + ny + nx
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        logger.info(
            "self-supervised SR along axis %d: %s; training %d steps on %s",
            along,
            acq.describe(),
            config.steps,
            dev,
        )
        t = time.perf_counter()
        model, losses = _train(norm, acq, (in_plane[0], in_plane[1]), scale, config, dev, tick)
        timings = {"train": time.perf_counter() - t}

        t = time.perf_counter()
        # (n, X) planes, one per Y, and (n, Y) planes, one per X -> (m_work, Y, X) each
        first = _apply_stack(
            model, norm.permute(1, 0, 2)[:, None], config.planes_per_call, dev, tick
        )
        result = first[:, 0].permute(1, 0, 2).contiguous()
        del first
        second = _apply_stack(
            model, norm.permute(2, 0, 1)[:, None], config.planes_per_call, dev, tick
        )
        result.add_(second[:, 0].permute(1, 2, 0)).mul_(0.5)
        del second
        if m_out != m_work:
            d_out = n * acq.spacing / m_out
            result = _along(
                cubic_matrix(m_work, _grid_positions(m_work, d_work, m_out, d_out)), result
            )
        timings["apply"] = time.perf_counter() - t

        d_out = n * acq.spacing / m_out
        again = profile_matrix(
            m_out,
            step=acq.spacing / d_out,
            thickness=acq.thickness / d_out,
            profile=acq.profile,
        )
        diff = _along(again, result.double())[:n] - norm.double()
        mse = float((diff * diff).mean())
        fidelity = math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)

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
        losses=losses,
        device=str(dev),
        timings=timings,
    )
