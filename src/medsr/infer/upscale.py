"""``upscale_image(image, model) -> UpscaleResult``: super-resolve an Image in physical units.

Pipeline: fit (or take) the model's normaliser -> normalised planes -> model (tiled, batched,
optionally self-ensembled; 2.5D models get neighbouring slices as channels) -> fidelity
check in normalised units -> inverse normalisation -> ``Image.regrid`` (spacing, origin and
source header follow, so ``medsr.io.write`` produces a derived series, a rescaled NIfTI
affine, a PNG in the source bit depth...).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medsr.errors import ConfigError, NonFiniteInputError
from medsr.infer.defaults import (
    AXES,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    MEMORY_BUDGET,
    PIXELS_PER_CALL,
)
from medsr.infer.model_source import SRModel, load_model, wrap_module
from medsr.infer.planes import through_plane
from medsr.infer.runtime import Runner, get_runner, glue_threads
from medsr.infer.safety import ConsistencyOptions, Projection, back_project
from medsr.infer.tiling import plan_tiles, tiled_apply
from medsr.io.image import Image
from medsr.io.write import fit_to_output, stored_range  # here too: the public API of upscale
from medsr.metrics import consistency_psnr
from medsr.transforms.degrade import Bicubic, Degradation, along_axis
from medsr.transforms.intensity import Normaliser

__all__ = [
    "AXES",
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE",
    "PIXELS_PER_CALL",
    "UpscaleResult",
    "auto_batch_size",
    "fidelity_operator",
    "fidelity_psnr",
    "fit_to_output",
    "resolve_axis",
    "resolve_tile",
    "stored_range",
    "super_resolve_stack",
    "upscale_image",
]

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""``progress(done, total)`` in tiles (model calls count their tiles)."""


@dataclass(frozen=True)
class UpscaleResult:
    """The super-resolved image and how it was made.

    ``fidelity_psnr``: PSNR (dB) of the SR output degraded again by the model's noise-free
    training degradation against the normalised input (data range 1 = the normaliser's
    window); higher means the output explains its input better (``inf``: exactly). It is
    necessary, not sufficient: invented detail finer than the input pixels is invisible to it.
    ``timings``: seconds for ``normalise``, ``model``, ``fidelity``, ``denormalise``,
    ``total``.
    """

    image: Image
    fidelity_psnr: float
    normaliser: Normaliser
    model_name: str
    scale: int
    axis: str
    runner: str
    timings: dict[str, float] = field(default_factory=dict)
    along: int | None = None  # None in-plane, else the array axis grown through-plane
    degradation: Degradation | None = None  # the fidelity check's operator
    projection: Projection | None = None  # what --consistency did (medsr.infer.safety)

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "scale": self.scale,
            "axis": self.axis,
            "runner": self.runner,
            "output_shape": list(self.image.array.shape),
            "output_spacing": list(self.image.spacing),
            "fidelity_psnr": self.fidelity_psnr,
            "normaliser": self.normaliser.to_dict(),
            "timings": dict(self.timings),
            **({"consistency": self.projection.to_dict()} if self.projection else {}),
        }


def resolve_axis(axis: str | int, image: Image) -> int | None:
    """None for in-plane SR; else the array axis to super-resolve (through-plane)."""
    if isinstance(axis, str) and axis.lstrip("-").isdigit():
        axis = int(axis)
    if axis == "in-plane":
        return None
    if not image.is_volume:
        raise ConfigError(
            f"--axis {axis}: a 2D image {image.spatial_shape} has no slice axis; use in-plane"
        )
    if axis == "through-plane":
        axis = 0
        thickest = int(np.argmax(image.spacing))
        if image.spacing[thickest] > 1.5 * image.spacing[0]:
            logger.warning(
                "through-plane SR along axis 0 (spacing %.3g mm), but axis %d is coarser "
                "(%.3g mm); pass --axis %d to super-resolve that one",
                image.spacing[0],
                thickest,
                image.spacing[thickest],
                thickest,
            )
        return 0
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ConfigError(f"unknown axis {axis!r}; choose from in-plane, through-plane, 0, 1, 2")
    if not -3 <= axis < 3:
        raise ConfigError(f"axis {axis} is out of range for a volume (0, 1 or 2)")
    return axis % 3


# -- the stack engine ---------------------------------------------------------------------------
def _neighbour_inputs(stack: Tensor, index: Tensor, channels: int) -> Tensor:
    """``(b, channels, H, W)``: for each index, its ``channels`` neighbours along the stack
    (edge replicated), from a ``(N, 1, H, W)`` stack."""
    half = channels // 2
    offsets = torch.arange(-half, half + 1)
    picks = (index[:, None] + offsets[None, :]).clamp_(0, stack.shape[0] - 1)
    return stack[picks.reshape(-1), 0].reshape(len(index), channels, *stack.shape[-2:])


def super_resolve_stack(
    stack: Tensor,
    runner: Runner,
    model: SRModel,
    *,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    reduce: Callable[[Tensor], Tensor] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> Tensor:
    """Super-resolve every plane of ``stack`` ``(N, C, H, W)`` (normalised): ``(N, C, s*H, s*W)``
    (or what ``reduce`` makes of each ``(b, C, s*H, s*W)`` batch).

    ``C`` is 1 (grey) or 3 (RGB, for an RGB model). A grey stack given to an RGB model is
    replicated to 3 channels and the output channels averaged; a 2.5D model gets each plane's
    neighbours along ``N`` as channels (edge planes replicated).

    ``batch_size`` is the number of tiles per model call; None picks it from a pixel budget
    (:func:`auto_batch_size`), so many small planes share a call while large tiles go
    one at a time.
    """
    if stack.ndim != 4:
        raise ConfigError(f"a stack of planes is (N, C, H, W), got shape {tuple(stack.shape)}")
    n, c = stack.shape[:2]
    rgb_model = model.in_channels == 3 and model.out_channels == 3
    if c == 3 and not rgb_model:
        raise ConfigError(f"{model.name} takes {model.in_channels} channel(s), not RGB planes")
    if c not in (1, 3):
        raise ConfigError(f"planes have 1 (grey) or 3 (RGB) channels, got {c}")
    tile = resolve_tile(tile, model, stack.shape[-2], stack.shape[-1])
    plan = plan_tiles(stack.shape[-2], stack.shape[-1], tile=tile, overlap=overlap, scale=1)
    if batch_size is None:
        batch_size = auto_batch_size(plan.tile_h * plan.tile_w, runner.device.type)
    planes_per_chunk = max(1, batch_size // plan.count)
    with glue_threads(runner):  # PyTorch's own threads would take the runtime's cores
        out: Tensor | None = None
        for start in range(0, n, planes_per_chunk):
            index = torch.arange(start, min(start + planes_per_chunk, n))
            if model.is_2_5d:
                x = _neighbour_inputs(stack, index, model.in_channels)
            elif rgb_model and c == 1:
                x = stack[index].expand(-1, 3, -1, -1)
            else:
                x = stack[index]
            x = x.to(torch.float32).contiguous()
            y = tiled_apply(
                runner,
                x,
                scale=model.scale,
                out_channels=runner.out_channels,
                tile=tile,
                overlap=overlap,
                batch_size=batch_size,
                on_batch=on_batch,
            )
            if rgb_model and c == 1:
                y = y.mean(dim=1, keepdim=True)
            if reduce is not None:
                y = reduce(y)
            if out is None:
                out = torch.empty((n, *y.shape[1:]), dtype=torch.float32)
            out[start : start + len(index)] = y
        assert out is not None
        return out


def auto_batch_size(tile_pixels: int, device_type: str) -> int:
    """Tiles per model call so that a call sees about :data:`PIXELS_PER_CALL` input pixels
    (8 times more on a GPU): the memory of one default tile, whatever the tile shape."""
    budget = PIXELS_PER_CALL * (8 if device_type == "cuda" else 1)
    return max(1, budget // max(tile_pixels, 1))


def resolve_tile(
    tile: int | None, model: SRModel, height: int, width: int, *, budget: int = MEMORY_BUDGET
) -> int:
    """The tile size for ``(height, width)`` planes: ``tile`` when given (0: whole planes);
    automatic (None): 0 when one plane's estimated working memory fits in ``budget`` bytes,
    else the largest multiple of 32 (at least 64) whose square tile fits."""
    if tile is not None:
        return tile
    per_pixel = model.activation_bytes_per_pixel()
    if height * width * per_pixel <= budget:
        return 0
    side = int(math.sqrt(budget / per_pixel)) // 32 * 32
    return max(64, side)


def _tile_count(model: SRModel, h: int, w: int, tile: int | None, overlap: int) -> int:
    tile = resolve_tile(tile, model, h, w)
    return plan_tiles(h, w, tile=tile, overlap=overlap, scale=model.scale).count


# -- fidelity -----------------------------------------------------------------------------------
def fidelity_psnr(
    sr: np.ndarray | Tensor,
    lr: np.ndarray | Tensor,
    degradation: Degradation,
    *,
    axis: int | None = None,
    color: bool = False,
) -> float:
    """Consistency PSNR (dB, data range 1) of normalised ``sr`` against normalised ``lr``.

    Arrays in image layout: ``(Y, X)`` or ``(Z, Y, X)``, with a trailing RGB axis when
    ``color``. ``axis`` None: ``degradation`` (factors ``(s, s)``) is applied to every
    in-plane slice; else it must have factors ``(s, 1)`` and is applied along that axis of
    the volume. All pixels are pooled into one PSNR.
    """
    srt = torch.as_tensor(sr)
    lrt = torch.as_tensor(lr)
    if color:
        srt, lrt = srt.movedim(-1, 0), lrt.movedim(-1, 0)
    else:
        srt, lrt = srt[None], lrt[None]
    # (G, [Z,] Y, X): G groups (channels); every plane is a channel of one batch item
    if axis is None:
        sr4 = srt.reshape(1, -1, *srt.shape[-2:])
        lr4 = lrt.reshape(1, -1, *lrt.shape[-2:])
        value = consistency_psnr(sr4, lr4, degrade=degradation, data_range=1.0)
        return float(value[0])
    squared, count = 0.0, 0
    for g in range(srt.shape[0]):
        again = along_axis(degradation, srt[g], axis=axis)
        diff = again.double() - lrt[g].double()
        squared += float((diff * diff).sum())
        count += diff.numel()
    mse = squared / count
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def fidelity_operator(deg: Degradation, scale: int, *, through_plane: bool) -> Degradation:
    """The degradation the fidelity check applies: ``deg`` when its factors fit the mode
    (``(s, s)`` in-plane, ``(s, 1)`` through-plane), else antialiased bicubic that fits."""
    wanted = (scale, 1) if through_plane else (scale, scale)
    if deg.factors == wanted:
        return deg
    if not through_plane:
        logger.warning(
            "the model's training degradation has factors %s, not %s: the fidelity check "
            "uses antialiased bicubic instead",
            deg.factors,
            wanted,
        )
    # For through-plane SR a 2D model's degradation acts on both axes; its analogue along the
    # slice axis alone is bicubic along that axis (the default degradation restricted to it).
    return Degradation((Bicubic(scale=wanted, antialias=True, clip=False),))


# -- the image pipeline -------------------------------------------------------------------------
def check_finite(image: Image) -> None:
    """Refuse an image with NaN or infinite values (``NonFiniteInputError`` with the count):
    a model, even an interpolation, spreads them over their neighbourhood, and the
    normalisation over the whole image."""
    bad = image.nonfinite_count()
    if bad:
        where = image.source.path if image.source is not None else "the input image"
        raise NonFiniteInputError(
            f"{where}: {bad} of {image.array.size} values are NaN or infinite; medsr does not "
            "upscale such an image (replace them first, e.g. with numpy.nan_to_num, or crop "
            "them away)"
        )


def upscale_image(
    image: Image,
    model: SRModel | str | nn.Module,
    *,
    axis: str | int = "in-plane",
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    self_ensemble: bool = False,
    engine: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    consistency: ConsistencyOptions | None = None,
) -> UpscaleResult:
    """Super-resolve ``image`` with ``model``; the output is in the input's physical units.

    Args:
        image: a 2D image ``(Y, X)``, a volume ``(Z, Y, X)`` or either in RGB.
        model: an :class:`SRModel`, anything :func:`load_model` resolves, or a generator
            module (wrapped with the default policies).
        axis: ``"in-plane"`` (every ``(Y, X)`` slice grows by the scale), ``"through-plane"``
            (axis 0, the slice axis, grows; the 2D model runs on the orthogonal planes, see
            :mod:`medsr.infer.planes`), or an array axis 0-2 to grow through-plane.
        tile, overlap: tile size and overlap in input pixels (``tile`` None: automatic,
            whole planes unless memory needs tiles, :func:`resolve_tile`; 0: whole planes).
            See :mod:`medsr.infer.tiling`.
        batch_size: tiles (or whole planes) per model call; default: as many as make
            ``tile**2`` input pixels (8 times that on a GPU), at least 1.
        device: ``"auto"`` (CUDA, else CPU), ``"cpu"``, ``"cuda"``.
        precision: ``"fp32"``, or ``"bf16"``/``"fp16"`` autocast on a GPU (ignored on the
            CPU with a warning).
        channels_last, compile: PyTorch options (see docs/inference.md, "Performance").
        self_ensemble: average over the 8 flips/rotations (8x the time).
        engine: ``"torch"``, ``"onnxruntime"`` or ``"openvino"``; default: the model's own,
            but a PyTorch model on the CPU with a large job runs on a faster installed
            engine (``work_pixels`` of :func:`~medsr.infer.runtime.get_runner`).
        threads: CPU threads (default: the engine's choice).
        progress: ``progress(done, total)`` called after each model call.
        consistency: back-project the output onto the input with the fidelity check's
            degradation (:func:`medsr.infer.safety.back_project`); None: the network's
            output as it is.

    Colour images: an RGB model gets the RGB planes; any other model runs on each channel
    separately (one normaliser for the whole image). A grey image given to an RGB model is
    replicated to 3 channels and the output averaged. The output is float32 and unclipped;
    :func:`fit_to_output` clips (and rounds) it to what the source's bit depth stores before
    writing, as ``medsr upscale`` does (both live in :mod:`medsr.io.write`, beside the writers
    whose limits they know).
    """
    t_start = time.perf_counter()
    check_finite(image)
    if isinstance(model, nn.Module):
        model = wrap_module(model)
    elif not isinstance(model, SRModel):
        model = load_model(model)
    along = resolve_axis(axis, image)
    runner = get_runner(
        model,
        engine=engine,
        device=device,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        threads=threads,
        self_ensemble=self_ensemble,
        # through-plane SR runs the model over two orientations of the volume
        work_pixels=image.array.size * (1 if along is None else 2),
    )
    s = model.scale
    timings: dict[str, float] = {}

    t = time.perf_counter()
    padding = padding_mask(image)
    work = image
    if padding is not None:  # the network never sees padding: neutral fill (see below)
        work = image.replace(array=np.where(padding, image.array[~padding].min(), image.array))
    normaliser = model.normalisation.fit(work)
    norm = np.asarray(normaliser.forward(work.array), dtype=np.float32)
    del work
    timings["normalise"] = time.perf_counter() - t

    rgb_model = model.in_channels == 3 and model.out_channels == 3
    groups: list[Tensor]  # each (N, C, H, W) in-plane or a grey (Z, Y, X) volume
    base = torch.from_numpy(norm)
    if image.color and rgb_model and along is None:
        vol = base if image.is_volume else base[None]
        groups = [vol.permute(0, 3, 1, 2)]
    elif image.color:
        groups = [base[..., k] for k in range(3)]
    else:
        groups = [base]
    if along is None:  # stacks of planes (N, C, H, W); a 2D image is a stack of one
        groups = [g if g.ndim == 4 else (g[None] if g.ndim == 2 else g)[:, None] for g in groups]

    total = 0
    for g in groups:
        if along is None:
            total += g.shape[0] * _tile_count(model, g.shape[-2], g.shape[-1], tile, overlap)
        else:
            vol = g.movedim(along, 0)
            z, a, b = vol.shape
            total += a * _tile_count(model, z, b, tile, overlap) + b * _tile_count(
                model, z, a, tile, overlap
            )
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    t = time.perf_counter()
    outputs = []
    for g in groups:

        def sr_stack(stack: Tensor, reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
            return super_resolve_stack(
                stack,
                runner,
                model,
                tile=tile,
                overlap=overlap,
                batch_size=batch_size,
                reduce=reduce,
                on_batch=on_batch,
            )

        if along is None:
            y = sr_stack(g)  # (N, C, sH, sW)
            outputs.append(y)
        else:
            outputs.append(through_plane(g, sr_stack, scale=s, axis=along))
    timings["model"] = time.perf_counter() - t

    sr = _assemble(
        outputs, image, along_none=along is None, rgb_in_stack=len(groups) == 1 and image.color
    )

    t = time.perf_counter()
    degradation = fidelity_operator(
        model.consistency_degradation(), s, through_plane=along is not None
    )
    projection = None
    if consistency is not None:
        sr, projection = back_project(
            sr, norm, degradation, scale=s, axis=along, color=image.color, options=consistency
        )
        timings["consistency"] = time.perf_counter() - t
        t = time.perf_counter()
    fidelity = fidelity_psnr(sr, norm, degradation, axis=along, color=image.color)
    timings["fidelity"] = time.perf_counter() - t

    t = time.perf_counter()
    physical = np.asarray(normaliser.inverse(sr), dtype=np.float32)
    del sr
    if not image.color:
        physical = restore_padding(
            physical, image, padding, lambda a: _nearest_up(a, image, s, along)
        )
    mask = image.mask
    if mask is not None:
        for ax in (image.ndim - 2, image.ndim - 1) if along is None else (along,):
            mask = np.repeat(mask, s, axis=ax)
    out_image = image.regrid(physical, mask=mask)
    timings["denormalise"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    return UpscaleResult(
        image=out_image,
        fidelity_psnr=fidelity,
        normaliser=normaliser,
        model_name=model.name,
        scale=s,
        axis="in-plane" if along is None else f"through-plane (axis {along})",
        runner=runner.description,
        timings=timings,
        along=along,
        degradation=degradation,
        projection=projection,
    )


def padding_mask(image: Image) -> np.ndarray | None:
    """Pixels that the source declares as padding (DICOM PixelPaddingValue, read into
    ``metadata["padding"]``), or None when there are none or nothing else."""
    limits = image.metadata.get("padding")
    if limits is None or image.color:
        return None
    low, high = np.float32(limits[0]), np.float32(limits[1])
    mask = (image.array >= low) & (image.array <= high)
    return mask if mask.any() and not mask.all() else None


def _nearest_up(array: np.ndarray, image: Image, scale: int, along: int | None) -> np.ndarray:
    for ax in (image.ndim - 2, image.ndim - 1) if along is None else (along,):
        array = np.repeat(array, scale, axis=ax)
    return array


def restore_padding(
    physical: np.ndarray,
    image: Image,
    padding: np.ndarray | None,
    nearest: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Padding and physical limits on the SR output ``physical`` (grey, float32, in place).

    ``nearest`` resamples an array of the source grid to the output grid, nearest-neighbour.

    - Padding (``padding``, the source's padding mask) is filled with the lowest non-padding
      value before the model runs, so it never rings into the image. Here the mask is
      upsampled nearest-neighbour and those output pixels get the source's exact padding
      values back, so the written header's PixelPaddingValue still holds.
    - Non-padding output never goes below what the source and physics allow: the lowest
      non-padding source value for a padded image, and for CT also not below
      ``min(-1024 HU, that value)`` (nothing is less dense than air). Above, nothing is
      clamped: a sharpening model may legitimately exceed the input's maximum (see
      docs/inference.md, "Overshoot").
    """
    floor = None
    if padding is not None:
        floor = float(image.array[~padding].min())
    if image.modality == "CT":
        lowest = floor if floor is not None else float(np.nanmin(image.array))
        floor = min(-1024.0, lowest)
    if floor is not None:
        np.maximum(physical, np.float32(floor), out=physical)
    if padding is not None:
        up = nearest(padding)
        physical[up] = nearest(image.array)[up]
    return physical


def _assemble(
    outputs: list[Tensor], image: Image, *, along_none: bool, rgb_in_stack: bool
) -> np.ndarray:
    """Model outputs back to the image layout: ``([Z,] Y, X[, 3])`` float32 numpy."""
    if along_none:
        if rgb_in_stack:
            arr = outputs[0].permute(0, 2, 3, 1)  # (N, sH, sW, 3)
        else:
            arr = (
                torch.stack([o[:, 0] for o in outputs], dim=-1) if image.color else outputs[0][:, 0]
            )
        if not image.is_volume:
            arr = arr[0]
    else:
        arr = torch.stack(outputs, dim=-1) if image.color else outputs[0]
    return np.ascontiguousarray(arr.numpy(), dtype=np.float32)
