"""ONNX export: ``export_onnx(model, "model.onnx")`` with dynamic batch, height and width.

The file carries the model's description (scale, channels, normalisation policy, training
degradation) as JSON under the ``medsr`` key of its ``metadata_props``, so ``medsr upscale
--model model.onnx`` uses it exactly like the checkpoint it came from.

Exporter: PyTorch's TorchScript-based exporter (``dynamo=False``) by default. In torch 2.13 it
is deprecated but exact (outputs match to ~1e-7) and fast (RRDBNet x4: about 3 s); the
``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``) is equally exact on
our models but takes ~40 s for RRDBNet and prints registration warnings. Python branches on
the input size are frozen at export: RRDBNet x1/x2 (pixel-unshuffle) pads odd sizes in
PyTorch, so its ONNX graph requires sizes divisible by 4/2 and the ONNX runner pads to that
multiple itself (``size_multiple`` in the metadata).
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from medsr.errors import ConfigError, InferenceError
from medsr.infer.defaults import DEFAULT_OPSET
from medsr.infer.model_source import ONNX_METADATA_KEY, SRModel
from medsr.tempfiles import create_temp

__all__ = ["DEFAULT_OPSET", "check_onnx", "export_onnx", "export_onnx_bytes"]

logger = logging.getLogger(__name__)

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'medsr[onnx]'") from None


def export_onnx_bytes(
    model: SRModel, *, opset: int = DEFAULT_OPSET, dynamo: bool = False, example_size: int = 32
) -> bytes:
    """The ONNX file of ``model`` (a PyTorch model) as bytes, medsr metadata included."""
    _require_onnx()
    import onnx

    if model.module is None:
        raise ConfigError(f"{model.name} is already an ONNX model")
    module = model.module.to("cpu").eval()
    size = example_size + (-example_size) % max(model.size_multiple, 1)
    example = torch.rand(
        1, model.in_channels, size, size, generator=torch.Generator().manual_seed(0)
    )
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice and tracer warnings about frozen
        # size branches (handled by size_multiple) are expected
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            if dynamo:
                dims = {
                    0: torch.export.Dim("batch"),
                    2: torch.export.Dim("height"),
                    3: torch.export.Dim("width"),
                }
                program = torch.onnx.export(
                    module,
                    (example,),
                    None,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    opset_version=max(opset, 18),
                    dynamo=True,
                    dynamic_shapes={"lr": dims},
                    verbose=False,
                )
                proto = program.model_proto
            else:
                buffer = io.BytesIO()
                torch.onnx.export(
                    module,
                    (example,),
                    buffer,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    opset_version=opset,
                    dynamo=False,
                    dynamic_axes={
                        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                        OUTPUT_NAME: {0: "batch", 2: "sr_height", 3: "sr_width"},
                    },
                )
                proto = onnx.load_from_string(buffer.getvalue())
        except Exception as error:  # exporter failures come in many types
            raise InferenceError(
                f"ONNX export of {model.name} failed ({type(error).__name__}: {error}); "
                f"try {'dynamo=False' if dynamo else 'dynamo=True (--dynamo)'}"
            ) from error
        finally:
            logging.getLogger("torch.onnx").setLevel(previous)
    entry = proto.metadata_props.add()
    entry.key = ONNX_METADATA_KEY
    entry.value = json.dumps(model.config(), allow_nan=False)
    proto.producer_name = "medsr"
    return proto.SerializeToString()


def export_onnx(
    model: SRModel,
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file (dynamic batch, height, width); returns the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists (pass --overwrite to replace it)")
    data = export_onnx_bytes(model, opset=opset, dynamo=dynamo)
    tmp = create_temp(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    logger.info("exported %s to %s (%d bytes)", model.name, path, len(data))
    return path


def check_onnx(
    model: SRModel,
    onnx_model: SRModel,
    *,
    sizes: tuple[tuple[int, int], ...] = ((37, 29), (64, 48)),
) -> float:
    """Max absolute difference between PyTorch and ONNX Runtime outputs on random inputs of
    the given sizes (batch 2), in normalised units."""
    from medsr.infer.runtime import get_runner

    torch_runner = get_runner(model, engine="torch", device="cpu")
    onnx_runner = get_runner(onnx_model, engine="onnxruntime", device="cpu")
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(2, model.in_channels, h, w, generator=generator)
        a, b = torch_runner(x), onnx_runner(x)
        worst = max(worst, float(np.abs(a.numpy() - b.numpy()).max()))
    return worst
