"""Defaults and choices of inference (no heavy imports: the CLI reads them for its help)."""

from __future__ import annotations

DEFAULT_SCALE = 2
"""Scale for models that can do any scale (interpolation) when none is given."""

DEFAULT_MODELS: dict[int, str] = {
    2: "medsr-edsr-tiny-x2",
    3: "medsr-edsr-tiny-x3",
    4: "medsr-edsr-tiny-x4",
}
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


DEFAULT_TILE: int | None = None
"""Tile size in input pixels; None (the default) is automatic: whole planes, unless the
model's working memory for one plane (:meth:`SRModel.activation_bytes_per_pixel`) would
exceed :data:`MEMORY_BUDGET`, then the largest tile (a multiple of 32) that fits. Tiling
costs speed (up to 2x for a small model on a 512 x 512 slice: benchmarks/RESULTS.md), so it
is used only where memory needs it; 0 forces whole planes, N forces N x N tiles."""

MEMORY_BUDGET = 1536 * 1024**2
"""Bytes of model working memory one call may use when tiles are automatic (1.5 GiB): at x4,
RRDBNet peaks near 0.8 GB on a 192 x 192 tile, so a 2048 x 2048 radiograph at x4 stays
within about 3 GB with any model of the zoo."""

BATCH_TILE = 192
"""The pixel budget of one model call when the batch size is automatic is one
``BATCH_TILE x BATCH_TILE`` input (8x on a GPU): small planes share a call."""

DEFAULT_OVERLAP = 16
"""Tile overlap in input pixels: tiling is exact for receptive-field radii up to 4 pixels."""

PIXELS_PER_CALL = BATCH_TILE * BATCH_TILE
"""Input pixels per model call when the batch size is automatic (CPU; 8x on a GPU)."""

SELF_ENSEMBLE = "self-ensemble x8"
"""How a runner's description and a derived series' DerivationDescription name the 8-fold
self-ensemble (``--self-ensemble``)."""

ENGINES = ("torch", "onnxruntime", "openvino")

FAST_CPU_ENGINES = ("openvino", "onnxruntime")
"""The CPU engines tried, in order, for a PyTorch model when no engine is asked for and the job
is large (:data:`AUTO_ENGINE_PIXELS`) or the model ships its ONNX export: on the 2-core CPU
OpenVINO (the ``openvino`` extra) ran the five shipped models 5-61 % faster than ONNX Runtime
called directly, and the default path on it was 2-4.7x faster than eager PyTorch of their
training form, all with the same output within 1e-4 (benchmarks/RESULTS.md, "OpenVINO's signal
stack: the crash explained and fixed").
Every OpenVINO model compiles on the process's one Core
(:func:`medsr.infer.runtime.openvino_core`): a Core per model had left a dangling signal stack
behind that crashed the process at a later signal."""

AUTO_ENGINE_PIXELS = 4_000_000
"""Input pixels from which a job is worth compiling for a faster engine (ONNX export and
compilation take about 0.5-1.5 s; eager PyTorch needs about 3 s per million input pixels of the
x2 model on the 2-core CPU): 16 slices of 512 x 512, or one 240 x 240 x 70 volume. The shipped
models carry their ONNX export (``model.onnx``), so they run on the fast engine at any size."""
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
AXES = ("in-plane", "through-plane")
DEFAULT_OPSET = 17
"""ONNX opset of ``medsr export``."""
