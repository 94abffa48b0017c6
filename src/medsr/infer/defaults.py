"""Defaults and choices of inference (no heavy imports: the CLI reads them for its help)."""

from __future__ import annotations

DEFAULT_SCALE = 2
"""Scale for models that can do any scale (interpolation) when none is given."""

DEFAULT_MODELS: dict[int, str] = {2: "medsr-edsr-tiny-x2", 4: "medsr-edsr-tiny-x4"}
"""The model ``medsr upscale`` and ``medsr demo`` use at each scale when none is given: the
shipped ``medsr.models.PRETRAINED`` model that scored best on the validation benchmark
(benchmarks/RESULTS.md, "Pretrained models (issue 9)")."""

FALLBACK_MODEL = "lanczos"
"""The default at scales without a shipped model (the best interpolation on the bundled
samples: benchmarks/RESULTS.md, "Inference (issue 7)")."""

DEFAULT_MODEL = DEFAULT_MODELS[DEFAULT_SCALE]
"""The default model at the default scale (x2)."""


def default_model(scale: int | None = None) -> str:
    """The default model for ``scale`` (None: :data:`DEFAULT_SCALE`): a shipped model from
    :data:`DEFAULT_MODELS`, else :data:`FALLBACK_MODEL`."""
    return DEFAULT_MODELS.get(DEFAULT_SCALE if scale is None else scale, FALLBACK_MODEL)


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
