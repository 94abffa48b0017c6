"""Clinical safety you can see: consistency maps and data-consistent output (issue 20).

A super-resolved image ``SR`` explains its input ``LR`` when degrading it again with the
model's own noise-free training degradation ``D`` (:meth:`SRModel.consistency_degradation`,
the operator of :func:`medsr.infer.upscale.fidelity_psnr`) gives back the input:

- :func:`consistency_map` shows *where* it does not: ``|D(SR) - LR|`` on the input grid in
  physical units (HU for CT, scanner units for MR), the same map repeated onto the output grid
  for display, ``SR - bicubic`` (what the network added to plain interpolation), and a summary
  naming the worst region.
- :func:`back_project` makes an output consistent: iterative back-projection (Irani & Peleg,
  1991) ``x += U(LR - D(x))`` with ``U`` bicubic upsampling, until the RMS residual is below a
  tolerance or after a number of iterations. It changes only what ``D`` sees (roughly the
  frequencies the input holds); detail finer than the input pixels, invented or not, stays:
  a consistent output is necessary, not sufficient, for a faithful one.

Arrays are in image layout, ``(Y, X)`` or ``(Z, Y, X)`` with a trailing RGB axis when
``color``; ``axis`` None means in-plane (``D`` on every ``(Y, X)`` plane), else the array axis
that was super-resolved through-plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from medsr.errors import ConfigError
from medsr.transforms.degrade import Degradation, along_axis

if TYPE_CHECKING:
    from medsr.infer.upscale import UpscaleResult
    from medsr.io.image import Image

__all__ = [
    "DEFAULT_CONSISTENCY",
    "LOCAL_WINDOW",
    "MAP_NAMES",
    "ConsistencyMaps",
    "ConsistencyOptions",
    "Projection",
    "back_project",
    "bicubic_upsample",
    "consistency_map",
    "degrade_array",
    "describe_summary",
    "map_paths",
    "units_of",
    "write_maps",
]

DEFAULT_CONSISTENCY = False
"""Whether ``medsr upscale`` back-projects by default (``--consistency``); the decision and
the numbers behind it are in docs/inference.md, "Data-consistent output"."""

LOCAL_WINDOW = 8
"""Side (input pixels) of the in-plane window whose mean error locates the worst region."""


# -- operators in image layout ------------------------------------------------------------------
def _groups(array: np.ndarray | Tensor, color: bool) -> Tensor:
    """``(G, [Z,] Y, X)`` float32: the channels of an image-layout array as groups."""
    t = torch.as_tensor(
        np.asarray(array, dtype=np.float32) if isinstance(array, np.ndarray) else array
    )
    t = t.to(torch.float32)
    return t.movedim(-1, 0) if color else t[None]


def _ungroup(t: Tensor, color: bool) -> Tensor:
    return t.movedim(0, -1) if color else t[0]


def degrade_array(
    array: np.ndarray | Tensor, degradation: Degradation, *, axis: int | None, color: bool
) -> Tensor:
    """``D(array)`` in image layout: ``degradation`` on every in-plane plane (``axis`` None,
    factors ``(s, s)``) or along ``axis`` of a volume (factors ``(s, 1)``)."""
    g = _groups(array, color)
    if axis is None:
        planes = g.reshape(1, -1, *g.shape[-2:])  # every plane a channel of one batch item
        out = degradation(planes)
        return _ungroup(out.reshape(*g.shape[:-2], *out.shape[-2:]), color)
    if g.ndim != 4:
        raise ConfigError(f"through-plane back-projection needs a volume, got {tuple(g.shape)}")
    return _ungroup(torch.stack([along_axis(degradation, v, axis=axis) for v in g]), color)


def bicubic_upsample(
    array: np.ndarray | Tensor, scale: int, *, axis: int | None, color: bool
) -> Tensor:
    """Bicubic upsampling by ``scale`` in image layout (in-plane, or along ``axis``), the
    interpolation of ``--model bicubic`` (``align_corners=False``, unclipped)."""
    g = _groups(array, color)
    if axis is None:
        planes = g.reshape(-1, 1, *g.shape[-2:])
        out = F.interpolate(planes, scale_factor=scale, mode="bicubic", align_corners=False)
        return _ungroup(out.reshape(*g.shape[:-2], *out.shape[-2:]), color)
    vols = []
    for v in g:  # the grown axis as H of (other0, 1, axis, other1) planes, as along_axis does
        others = [a for a in range(3) if a != axis]
        perm = (others[0], axis, others[1])
        planes = v.permute(*perm).unsqueeze(1)
        up = F.interpolate(planes, scale_factor=(scale, 1), mode="bicubic", align_corners=False)
        vols.append(up.squeeze(1).permute(*np.argsort(perm).tolist()))
    return _ungroup(torch.stack(vols), color)


# -- data-consistent output ---------------------------------------------------------------------
@dataclass(frozen=True)
class ConsistencyOptions:
    """Iterative back-projection settings, in normalised units (1 = the normaliser's window).

    ``tolerance``: stop when the RMS of ``D(x) - LR`` is at or below it (1e-4: a consistency
    PSNR of 80 dB); ``max_iterations``: stop after that many updates; ``step``: the
    update's weight (1 = classic back-projection).
    """

    tolerance: float = 1e-4
    max_iterations: int = 10
    step: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ConfigError(f"consistency tolerance must be >= 0, got {self.tolerance}")
        if isinstance(self.max_iterations, bool) or self.max_iterations < 1:
            raise ConfigError(f"consistency max_iterations must be >= 1, got {self.max_iterations}")
        if not 0 < self.step <= 2:
            raise ConfigError(f"consistency step must be in (0, 2], got {self.step}")


@dataclass(frozen=True)
class Projection:
    """What :func:`back_project` did: RMS residual (normalised units) before and after,
    the updates made, and whether the tolerance was reached."""

    rms_before: float
    rms_after: float
    iterations: int
    converged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "rms_before": self.rms_before,
            "rms_after": self.rms_after,
            "iterations": self.iterations,
            "converged": self.converged,
        }


def _rms(t: Tensor) -> float:
    return float(torch.sqrt(torch.mean(t.double() ** 2)))


def back_project(
    sr: np.ndarray | Tensor,
    lr: np.ndarray | Tensor,
    degradation: Degradation,
    *,
    scale: int,
    axis: int | None = None,
    color: bool = False,
    options: ConsistencyOptions | None = None,
) -> tuple[np.ndarray, Projection]:
    """``sr`` moved towards ``D(sr) = lr`` by iterative back-projection; returns the new
    float32 array (image layout) and a :class:`Projection`.

    ``x_{k+1} = x_k + step * U(lr - D(x_k))`` with ``U`` = :func:`bicubic_upsample`. For the
    antialiased bicubic ``D`` of the shipped models the residual shrinks at every iteration
    on the frequencies ``D`` passes and is left alone near the input's Nyquist frequency, so
    the loop stops at ``tolerance`` or ``max_iterations``; an update that would raise the
    residual is not taken (the previous ``x`` is returned).
    """
    options = options or ConsistencyOptions()
    x = torch.as_tensor(np.asarray(sr, dtype=np.float32)).clone()
    target = torch.as_tensor(np.asarray(lr, dtype=np.float32))
    again = degrade_array(x, degradation, axis=axis, color=color)
    if again.shape != target.shape:
        raise ConfigError(
            f"D(SR) has shape {tuple(again.shape)}, the input {tuple(target.shape)}: the "
            f"degradation's factors {degradation.factors} do not fit scale {scale}"
        )
    residual = target - again
    before = rms = _rms(residual)
    iterations = 0
    while rms > options.tolerance and iterations < options.max_iterations:
        update = options.step * bicubic_upsample(residual, scale, axis=axis, color=color)
        candidate = x + update
        new_residual = target - degrade_array(candidate, degradation, axis=axis, color=color)
        new_rms = _rms(new_residual)
        if not new_rms < rms:
            break
        x, residual, rms = candidate, new_residual, new_rms
        iterations += 1
    projection = Projection(before, rms, iterations, rms <= options.tolerance)
    return np.ascontiguousarray(x.numpy(), dtype=np.float32), projection


# -- consistency maps ---------------------------------------------------------------------------
def units_of(image: Image) -> str:
    """The physical unit of an image's values, in words."""
    return {"CT": "HU", "MR": "scanner units (MR)"}.get(image.modality, "intensity units")


@dataclass(frozen=True)
class ConsistencyMaps:
    """The maps of one output, all in the input's physical units.

    ``error``: ``|D(SR) - LR|`` on the input grid (image layout without the RGB axis: the
    largest error over the channels of a colour image). ``error_on_output``: the same values
    on the output grid (each input pixel repeated over the output pixels it became), for
    display beside the result. ``sr_minus_bicubic``: ``SR - bicubic(LR)`` on the output grid
    (colour: the channel mean). ``summary``: see :func:`consistency_map`.
    """

    error: np.ndarray
    error_on_output: np.ndarray
    sr_minus_bicubic: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)


def _repeat(array: np.ndarray, scale: int, axes: tuple[int, ...]) -> np.ndarray:
    for ax in axes:
        array = np.repeat(array, scale, axis=ax)
    return array


def _worst_region(error: np.ndarray, window: int) -> dict[str, Any]:
    """Where the mean error over a ``window`` x ``window`` in-plane window is largest."""
    from scipy.ndimage import uniform_filter

    vol = error if error.ndim == 3 else error[None]
    size = (1, min(window, vol.shape[1]), min(window, vol.shape[2]))
    local = uniform_filter(vol.astype(np.float64), size=size, mode="nearest")
    z, y, x = np.unravel_index(int(np.argmax(local)), local.shape)
    out: dict[str, Any] = {"row": int(y), "column": int(x)}
    if error.ndim == 3:
        out = {"slice": int(z), **out}
    out["local_mean"] = float(local[z, y, x])
    out["window"] = int(size[1])
    return out


def _where(worst: dict[str, Any], shape: tuple[int, ...]) -> str:
    """A coarse region in words (``upper left``, ``centre``...) of the worst window."""
    rows = ("upper", "middle", "lower")[min(2, 3 * worst["row"] // max(shape[-2], 1))]
    cols = ("left", "centre", "right")[min(2, 3 * worst["column"] // max(shape[-1], 1))]
    text = "centre" if (rows, cols) == ("middle", "centre") else f"{rows} {cols}"
    return text + (f" of slice {worst['slice']}" if "slice" in worst else "")


def consistency_map(
    result: UpscaleResult,
    image: Image,
    *,
    output: Image | None = None,
    degradation: Degradation | None = None,
    window: int = LOCAL_WINDOW,
) -> ConsistencyMaps:
    """The consistency maps of ``result`` (from :func:`medsr.infer.upscale_image`) for its
    input ``image``.

    ``output``: the image actually written (e.g. clipped by
    :func:`~medsr.io.write.fit_to_output`); default ``result.image``. ``degradation``
    defaults to the one the fidelity check of ``result`` used
    (``result.degradation``). The error is computed in the normaliser's [0, 1] units, as
    ``result.fidelity_psnr`` is, and scaled to physical units by the window width (the
    normalisers are affine). ``summary``: ``units``, ``mean``, ``p99`` and ``max`` of the
    error, ``fidelity_psnr`` (dB, recomputed from the same pixels), and ``worst``: the
    ``window`` x ``window`` in-plane window (input pixels) with the largest mean error, by
    ``slice`` (volumes), ``row`` and ``column`` of its centre in the input grid, its
    ``local_mean`` and, in words, ``where`` (e.g. ``upper left of slice 12``).
    """
    degradation = degradation or result.degradation
    if degradation is None:
        raise ConfigError("consistency_map: the result carries no degradation; pass one")
    along = result.along
    normaliser = result.normaliser
    low, high = normaliser.bounds
    width = float(high - low)
    output = output if output is not None else result.image
    # the normaliser's affine map without its clipping (values outside the window count too)
    lr = ((image.array.astype(np.float64) - low) / width).astype(np.float32)
    sr = ((output.array.astype(np.float64) - low) / width).astype(np.float32)
    again = degrade_array(sr, degradation, axis=along, color=image.color).numpy()
    diff = np.abs(again - lr) * width
    error = diff.max(axis=-1) if image.color else diff
    error = error.astype(np.float32)

    spatial = error.ndim
    axes = (spatial - 2, spatial - 1) if along is None else (along,)
    error_on_output = _repeat(error, result.scale, axes)
    bicubic = bicubic_upsample(
        image.array.astype(np.float32), result.scale, axis=along, color=image.color
    ).numpy()
    delta = output.array.astype(np.float32) - bicubic
    if image.color:
        delta = delta.mean(axis=-1)

    mse = float(np.mean((diff / width).astype(np.float64) ** 2))
    worst = _worst_region(error, window)
    worst["where"] = _where(worst, error.shape)
    summary = {
        "units": units_of(image),
        "mean": float(error.mean()),
        "p99": float(np.percentile(error, 99)),
        "max": float(error.max()),
        "fidelity_psnr": math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse),
        "worst": worst,
    }
    return ConsistencyMaps(error, error_on_output, delta.astype(np.float32), summary)


def describe_summary(summary: dict[str, Any]) -> str:
    """One line for a person: ``consistency |D(SR)-LR|: p99 3.1 HU, worst 12.0 HU mean at
    slice 4, row 100, column 37 (upper left of slice 4)``."""
    worst = summary["worst"]
    at = ", ".join(f"{k} {worst[k]}" for k in ("slice", "row", "column") if k in worst)
    units = summary["units"].split(" (")[0]
    return (
        f"consistency |D(SR)-LR|: p99 {summary['p99']:.3g} {units}, worst "
        f"{worst['window']}x{worst['window']} mean {worst['local_mean']:.3g} {units} at {at} "
        f"({worst['where']})"
    )


# -- writing the maps ---------------------------------------------------------------------------
MAP_NAMES = ("consistency", "sr-minus-bicubic")
"""The maps ``medsr upscale --save-maps`` writes beside each output (name suffixes)."""

MAP_DESCRIPTIONS = {
    "consistency": "consistency map |degrade(SR)-LR|",
    "sr-minus-bicubic": "SR - bicubic",
}


def map_paths(target: Path) -> dict[str, Path]:
    """Where the maps of the output ``target`` go: beside it, ``<name>-<map><suffix>`` (a
    DICOM series folder: ``<name>-<map>/``), and the summary ``<name>-consistency.json``."""
    from medsr.io.read import suffix_of

    suffix = suffix_of(target) if target.suffix else ""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    paths = {name: target.with_name(f"{stem}-{name}{suffix}") for name in MAP_NAMES}
    paths["summary"] = target.with_name(f"{stem}-consistency.json")
    return paths


def write_maps(
    maps: ConsistencyMaps,
    output: Image,
    paths: dict[str, Path],
    fmt: str,
    *,
    overwrite: bool = False,
    deidentify: Any = None,
    flag: str = "",
) -> list[Path]:
    """Write the output-grid maps in ``output``'s format and geometry (``output``: the
    super-resolved image as written) and the summary JSON; returns the paths.

    DICOM maps are derived series of their own whose SeriesDescription names the map and the
    units (e.g. ``consistency map |degrade(SR)-LR| HU``); ``flag`` (e.g. an
    out-of-distribution note) goes in front, in brackets. A signed ``SR - bicubic`` map that
    the output's stored range cannot hold (unsigned DICOM, PNG...) is written as
    ``|SR - bicubic|`` and named so.
    """
    import json

    from medsr.io import write
    from medsr.io.write import fit_to_output, stored_range

    units = {"HU": "HU", "scanner units (MR)": "MR units"}.get(maps.summary.get("units", ""), "")
    arrays = {"consistency": maps.error_on_output, "sr-minus-bicubic": maps.sr_minus_bicubic}
    written: list[Path] = []
    for name in MAP_NAMES:
        array = arrays[name]
        label = MAP_DESCRIPTIONS[name]
        limits = stored_range(output, fmt)
        if name == "sr-minus-bicubic" and limits is not None and float(array.min()) < limits[0]:
            array, label = np.abs(array), "|SR - bicubic|"
        image = output.replace(array=np.ascontiguousarray(array, dtype=np.float32), color=False)
        image, _ = fit_to_output(image, fmt)
        # the flag first: a SeriesDescription keeps 64 characters
        description = (f"[{flag}] " if flag else "") + f"{label} {units}".strip()
        files = write(
            image,
            paths[name],
            format=fmt,
            overwrite=overwrite,
            description=description,
            deidentify=deidentify,
        )
        if fmt == "dicom":
            _label_series(files, description)
        written.append(paths[name])
    summary = paths["summary"]
    if summary.exists() and not overwrite:
        from medsr.errors import WriteError

        raise WriteError(summary, "already exists (pass --overwrite to replace it)")
    summary.write_text(json.dumps(maps.summary, indent=2, default=float) + "\n", encoding="utf-8")
    written.append(summary)
    return written


def _label_series(files: list[Path], description: str) -> None:
    """Name a map's DICOM series by what it shows (the writer gave it the source's text)."""
    import pydicom

    for path in files:
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = description[:64]
        ds.save_as(path, enforce_file_format=True)
