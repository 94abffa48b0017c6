"""Defaults and choices of inference (no heavy imports: the CLI reads them for its help)."""

from __future__ import annotations

DEFAULT_MODEL = "lanczos"
"""The model ``medsr upscale`` and ``medsr demo`` use when none is given.

No trained medsr weights are shipped yet, so this is the best interpolation by measurement
(benchmarks/RESULTS.md, "Inference (issue 7)": Lanczos-3 beats bicubic on every bundled
sample at x2 and x4). When weights ship, put their ``medsr.models.PRETRAINED`` name here.
"""

DEFAULT_SCALE = 2
"""Scale for models that can do any scale (interpolation) when none is given."""

DEFAULT_TILE = 256
"""Tile size in input pixels: bounds memory (RRDBNet x4 on a 256 x 256 tile peaks near 1 GB)."""

DEFAULT_OVERLAP = 16
"""Tile overlap in input pixels: tiling is exact for receptive-field radii up to 4 pixels."""

PIXELS_PER_CALL = DEFAULT_TILE * DEFAULT_TILE
"""Input pixels per model call when the batch size is automatic (CPU; 8x on a GPU)."""

ENGINES = ("torch", "onnxruntime")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
AXES = ("in-plane", "through-plane")
DEFAULT_OPSET = 17
"""ONNX opset of ``medsr export``."""
