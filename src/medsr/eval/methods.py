"""What evaluation needs to know about a super-resolution method: :class:`Method`.

A method turns a normalised LR slice into a normalised SR slice. Every method, an
interpolation baseline, a trained checkpoint or third-party weights, is resolved and run by
:mod:`medsr.infer` (``load_model``, ``get_runner``, ``super_resolve_stack``): the same code
``medsr upscale`` uses, with its tiling, grey-to-RGB handling for RGB models and 2.5D
neighbour stacking. A benchmark number is therefore what ``medsr upscale`` would produce
on that input.

Intensities: evaluation normalises each slice with its volume's normaliser from the
manifest (the one training used). A model whose checkpoint fixes a normaliser of its own (a
CT window, say) gets its input re-expressed in that normaliser and its output mapped back,
so it sees the intensities it was trained on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from medsr import infer
from medsr.infer import SRModel
from medsr.transforms.intensity import Normaliser

__all__ = ["Method", "load_method", "method_from_module"]

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Method:
    """One method under evaluation.

    Attributes:
        name: label in tables and figures (unique within a benchmark).
        spec: what was resolved (a generator name, a checkpoint folder, a weights file).
        scale: the integer scale factor.
        in_channels: LR planes the model takes (``2k + 1`` for a 2.5D model: the slice and
            ``k`` neighbours on each side); 1 for grey and RGB models.
        run: ``run(lr)``: ``lr`` ``(in_channels, h, w)`` float32 in the model's [0, 1] units
            -> ``(1, scale*h, scale*w)`` float32, unclamped.
        normaliser: the model's own fixed normaliser, or ``None`` when it works in the
            normalisation of the data (a per-volume fitted normaliser, the default).
        trained: False for the interpolation baselines.
        description: how it runs (engine, device, tiling), for the report.
    """

    name: str
    spec: str
    scale: int
    in_channels: int
    run: Callable[[Tensor], Tensor]
    normaliser: Normaliser | None = None
    trained: bool = True
    description: str = ""

    def __call__(self, lr: Tensor, data_normaliser: Normaliser) -> Tensor:
        """Super-resolve ``lr`` ``(C, h, w)`` given in ``data_normaliser``'s units; the output
        ``(1, s*h, s*w)`` is in the same units."""
        if self.normaliser is None:
            return self.run(lr)
        # re-express the input in the model's own normalisation and map the output back
        # (unclipped both ways, so values outside either window are kept)
        data = _unclipped(data_normaliser)
        own = _unclipped(self.normaliser)
        sr = self.run(own.forward(data.inverse(lr.double())).float())
        return data.forward(own.inverse(sr.double())).float()


def _unclipped(normaliser: Normaliser) -> Normaliser:
    return dataclasses.replace(normaliser, clip=False) if normaliser.clip else normaliser


def _from_model(
    model: SRModel,
    *,
    name: str | None,
    spec: str,
    tile: int | None,
    overlap: int | None,
    device: str,
    threads: int | None,
) -> Method:
    runner = infer.get_runner(model, device=device, threads=threads)
    overlap = infer.DEFAULT_OVERLAP if overlap is None else overlap

    def run(lr: Tensor) -> Tensor:
        if model.is_2_5d:
            # lr already holds the slice and its neighbours as channels: one tiled call
            # makes the centre slice (super_resolve_stack would run every plane of the stack)
            x = lr[None].to(torch.float32).contiguous()
            out = infer.tiled_apply(
                runner, x, scale=model.scale, out_channels=1, tile=tile, overlap=overlap
            )
            return out[0]
        out = infer.super_resolve_stack(lr[None], runner, model, tile=tile, overlap=overlap)
        return out[0]

    fixed = model.normalisation.normaliser
    tiling = "whole slices" if not tile else f"tiles of {tile} px, overlap {overlap}"
    return Method(
        name=name or model.name,
        spec=spec,
        scale=int(model.scale),
        in_channels=int(model.in_channels) if model.is_2_5d else 1,
        run=run,
        normaliser=fixed,
        trained=bool(model.trained),
        description=f"{runner.description}, {tiling}",
    )


def load_method(
    spec: str | Path,
    *,
    scale: int | None = None,
    name: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str = "cpu",
    threads: int | None = None,
) -> Method:
    """Resolve ``spec`` with :func:`medsr.infer.load_model` (an interpolation name such as
    ``"bicubic"``, a medsr checkpoint folder, an ``.onnx`` file from ``medsr export``, or
    official ESRGAN / Real-ESRGAN weights) and wrap it as a :class:`Method`.

    ``scale`` picks the scale of an interpolation baseline and must match a trained model's.
    ``tile`` (input pixels; ``None`` or 0: whole slices) and ``overlap`` as in
    ``medsr upscale``.
    """
    model = infer.load_model(spec, scale=scale)
    return _from_model(
        model,
        name=name,
        spec=str(spec),
        tile=tile,
        overlap=overlap,
        device=device,
        threads=threads,
    )


def method_from_module(
    module: nn.Module,
    *,
    name: str,
    tile: int | None = None,
    overlap: int | None = None,
    device: str = "cpu",
) -> Method:
    """A :class:`Method` around a generator module (``scale``, ``in_channels`` attributes),
    e.g. a freshly built network in a test, run through :mod:`medsr.infer` like any model."""
    return _from_model(
        infer.wrap_module(module.eval(), name=name),
        name=name,
        spec=f"<module {type(module).__name__}>",
        tile=tile,
        overlap=overlap,
        device=device,
        threads=None,
    )
