"""Inference: super-resolve images, series and volumes in physical units.

Typical use::

    from medsr.io import read, write
    from medsr.infer import load_model, upscale_image

    model = load_model("medsr-edsr-tiny-x2")  # shipped; or "lanczos", a folder, .onnx, .pth
    result = upscale_image(read("ct_series/"), model, tile=192, overlap=16)
    write(result.image, "ct_series_sr/")            # a derived DICOM series
    result.fidelity_psnr                            # consistency with the input, dB

Modules: ``model_source`` (load_model, SRModel, normalisation policy), ``runtime`` (devices,
precision, ONNX Runtime, self-ensemble), ``tiling``, ``planes`` (through-plane SR),
``upscale`` (the pipeline), ``export`` (ONNX), ``defaults``. The names below are loaded on
first use, so ``import medsr.infer`` (and the CLI's help) does not import PyTorch.
See docs/inference.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from medsr.infer.defaults import (
    DEFAULT_MODEL,
    DEFAULT_MODELS,
    DEFAULT_OVERLAP,
    DEFAULT_SCALE,
    DEFAULT_TILE,
    default_model,
)

if TYPE_CHECKING:  # the lazy names below, for type checkers
    from medsr.infer.export import export_onnx
    from medsr.infer.model_source import (
        NormalisationPolicy,
        SRModel,
        interpolation_names,
        load_model,
        wrap_module,
    )
    from medsr.infer.planes import area_reduce, through_plane
    from medsr.infer.runtime import Runner, get_runner, resolve_device
    from medsr.infer.tiling import plan_tiles, tiled_apply
    from medsr.infer.upscale import (
        UpscaleResult,
        fidelity_psnr,
        super_resolve_stack,
        upscale_image,
    )

_LAZY = {
    "export_onnx": "export",
    "NormalisationPolicy": "model_source",
    "SRModel": "model_source",
    "interpolation_names": "model_source",
    "load_model": "model_source",
    "wrap_module": "model_source",
    "area_reduce": "planes",
    "through_plane": "planes",
    "Runner": "runtime",
    "get_runner": "runtime",
    "resolve_device": "runtime",
    "plan_tiles": "tiling",
    "tiled_apply": "tiling",
    "UpscaleResult": "upscale",
    "fidelity_psnr": "upscale",
    "super_resolve_stack": "upscale",
    "upscale_image": "upscale",
}

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODELS",
    "DEFAULT_OVERLAP",
    "DEFAULT_SCALE",
    "DEFAULT_TILE",
    "NormalisationPolicy",
    "Runner",
    "SRModel",
    "UpscaleResult",
    "area_reduce",
    "default_model",
    "export_onnx",
    "fidelity_psnr",
    "get_runner",
    "interpolation_names",
    "load_model",
    "plan_tiles",
    "resolve_device",
    "super_resolve_stack",
    "through_plane",
    "tiled_apply",
    "upscale_image",
    "wrap_module",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"medsr.infer.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medsr.infer' has no attribute {name!r}")
