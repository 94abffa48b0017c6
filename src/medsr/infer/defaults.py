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

DEFAULT_TILE = 192
"""Tile size in input pixels. It bounds the model's working memory: at x4, one tile peaks
near 0.8 GB for RRDBNet and 1.8 GB for the largest model, EDSR (full) (benchmarks/RESULTS.md),
so a 2048 x 2048 radiograph at x4 stays within 3 GB with any model of the zoo."""

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
