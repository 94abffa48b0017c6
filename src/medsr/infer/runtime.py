"""Running a model on a batch: device, precision, memory format, compile, ONNX Runtime, ensemble.

A *runner* is a callable ``(B, C_in, h, w) float32 CPU tensor -> (B, C_out, s*h, s*w) float32
CPU tensor`` that hides where and how the model runs. :func:`get_runner` builds one for an
:class:`~medsr.infer.model_source.SRModel` (and caches it on the model, so a compiled model
or an ONNX Runtime session is built once per run). Every runner raises
:class:`~medsr.errors.InferenceError` when the device runs out of memory or the model
returns NaN/inf: a failed tile is an error, never a black tile.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from medsr.errors import ConfigError, InferenceError
from medsr.infer.defaults import (
    AUTO_ENGINE_PIXELS,
    DEVICES,
    ENGINES,
    FAST_CPU_ENGINES,
    PRECISIONS,
    SELF_ENSEMBLE,
)
from medsr.infer.model_source import SRModel

__all__ = [
    "DEVICES",
    "PRECISIONS",
    "Runner",
    "ensemble",
    "get_runner",
    "resolve_device",
]

logger = logging.getLogger(__name__)

_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU. ``"cuda"`` without CUDA is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not (name in ("cpu", "cuda") or name.startswith("cuda:")):
        raise ConfigError(f"unknown device {name!r}; choose from {', '.join(DEVICES)}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but CUDA is not available here")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """bf16/fp16 run only on a GPU; on the CPU they are ignored with a warning (fp32 is used)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "fp32" and device.type != "cuda":
        logger.warning("precision %s is only used on a GPU; running in fp32 on the CPU", precision)
        return "fp32"
    return precision


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text
    )


@contextlib.contextmanager
def glue_threads(runner: Runner) -> Iterator[None]:
    """One PyTorch thread, for the duration, around a runner whose network runs outside
    PyTorch on the CPU (ONNX Runtime, OpenVINO); nothing changes for a PyTorch runner.

    PyTorch's OpenMP threads keep spinning after each multi-threaded operation (the output
    check, the copies between model calls), and on a small CPU they took the cores from the
    runtime's next call: about 8 ms of a 0.08 s call at 256 x 256 on 2 cores. The glue work is
    light, so one thread loses nothing. The setting is process-wide (restored on exit)."""
    if runner.engine == "torch" or runner.device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def memory_errors(what: str) -> Iterator[None]:
    """Turn an out-of-memory error of the wrapped model call into an InferenceError."""
    try:
        yield
    except Exception as error:
        if _is_out_of_memory(error):
            raise InferenceError(
                f"out of memory while running the model on {what}; use a smaller --tile "
                f"(and --batch-size 1), fp16/bf16 on a GPU, or the CPU ({error})"
            ) from error
        raise


def _check_output(y: Tensor, x: Tensor, scale: int, out_channels: int, what: str) -> None:
    expected = (x.shape[0], out_channels, x.shape[2] * scale, x.shape[3] * scale)
    if tuple(y.shape) != expected:
        raise InferenceError(
            f"the model returned shape {tuple(y.shape)} for input {tuple(x.shape)} on {what}; "
            f"expected {expected} (x{scale}, {out_channels} channel(s))"
        )
    # one reduction first (cheap); the full check only if the sum is not finite
    if not bool(torch.isfinite(y.sum())) and not bool(torch.isfinite(y).all()):
        raise InferenceError(
            f"the model returned NaN or infinite values on {what} (with fp16, try bf16 or fp32)"
        )


@dataclass(eq=False)
class Runner:
    """A model bound to a device and a precision: ``runner(x) -> y`` on CPU float32 tensors.

    ``x`` is ``(B, C_in, h, w)`` in the model's normalised units; ``y`` is ``(B, C_out, s*h,
    s*w)``. ``description`` says how it runs (for summaries and benchmarks).
    """

    fn: Callable[[Tensor], Tensor]
    scale: int
    out_channels: int
    device: torch.device
    precision: str
    engine: str
    description: str

    def __call__(self, x: Tensor, *, what: str = "a tile") -> Tensor:
        with memory_errors(what):
            y = self.fn(x)
        _check_output(y, x, self.scale, self.out_channels, what)
        return y


def ensemble(runner: Runner) -> Runner:
    """The 8-fold self-ensemble: the mean over the 4 rotations x 2 flips (each undone).

    Exactly the plain output for a model that commutes with flips and 90-degree rotations;
    otherwise a smoother, usually slightly more accurate estimate at 8 times the cost.
    """

    def fn(x: Tensor) -> Tensor:
        total: Tensor | None = None
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, dims=(-2, -1))
                if flip:
                    t = t.flip(-1)
                y = runner.fn(t)
                if flip:
                    y = y.flip(-1)
                y = torch.rot90(y, -k, dims=(-2, -1))
                total = y if total is None else total.add_(y)
        assert total is not None
        return total.div_(8.0)

    return Runner(
        fn=fn,
        scale=runner.scale,
        out_channels=runner.out_channels,
        device=runner.device,
        precision=runner.precision,
        engine=runner.engine,
        description=f"{runner.description}, {SELF_ENSEMBLE}",
    )


_FAST_FAILED = ("fast engines failed",)
"""Key in ``SRModel._runners`` of the set of automatic fast engines that could not take the
model (each is tried, and warned about, once per model)."""


def get_runner(
    model: SRModel,
    *,
    engine: str | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    compile: bool = False,
    threads: int | None = None,
    self_ensemble: bool = False,
    work_pixels: int | None = None,
) -> Runner:
    """A runner for ``model`` (cached on it by these options).

    ``work_pixels``: the input pixels of the job, when known. With no ``engine`` asked for, a
    PyTorch model on the CPU, in fp32 without PyTorch-only options, runs on the first installed
    engine of :data:`FAST_CPU_ENGINES` (same output within 1e-4, 2-4.7x faster) when it
    ships its ONNX export (``model.onnx_file``: the shipped models) or when the job has at
    least :data:`AUTO_ENGINE_PIXELS` of work (worth exporting it first); if that engine cannot
    take the model (its export fails, or the shipped file is unreadable), the next one is
    tried, then PyTorch, each with a warning once per model.

    ``engine``: ``"torch"``, ``"onnxruntime"`` or ``"openvino"`` (default: the model's own; a
    PyTorch model asked to run on ONNX Runtime or OpenVINO is exported to ONNX in memory
    first). ``threads``: CPU threads
    (default: PyTorch's / ONNX Runtime's own choice, one per physical core).
    """
    worth = model.onnx_file is not None or (
        work_pixels is not None and work_pixels >= AUTO_ENGINE_PIXELS
    )
    fast_ok = worth and engine is None and model.module is not None and precision == "fp32"
    if fast_ok and not (channels_last or compile) and resolve_device(device).type == "cpu":
        # an engine whose export or load failed is not retried (nor warned about again) later
        failed = model._runners.setdefault(_FAST_FAILED, set())
        candidates = [e for e in FAST_CPU_ENGINES if e not in failed and _installed(e)]
        for k, fast in enumerate(candidates):
            try:
                return get_runner(
                    model, engine=fast, device=device, threads=threads, self_ensemble=self_ensemble
                )
            except Exception as error:  # an optimisation only: any failure falls back
                failed.add(fast)
                last = k + 1 == len(candidates)
                then = "running it with PyTorch" if last else f"trying {candidates[k + 1]}"
                logger.warning("%s cannot run %s (%s); %s", fast, model.name, error, then)
    engine = engine or model.engine
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    key = (engine, str(dev), precision, channels_last, compile, threads)
    runner = model._runners.get(key)
    if runner is None:
        runner = _build_runner(model, engine, dev, precision, channels_last, compile, threads)
        model._runners[key] = runner
    return ensemble(runner) if self_ensemble else runner


def _build_runner(
    model: SRModel,
    engine: str,
    dev: torch.device,
    precision: str,
    channels_last: bool,
    compile: bool,
    threads: int | None,
) -> Runner:
    if engine == "torch":
        if model.module is None:
            raise ConfigError(
                f"{model.name} is an ONNX model: run it with --engine onnxruntime (or give "
                "the PyTorch checkpoint it was exported from)"
            )
        return _torch_runner(model, dev, precision, channels_last, compile, threads)
    if precision != "fp32":
        raise ConfigError(f"the {engine} engine runs fp32 models only; use --engine torch")
    if channels_last or compile:
        logger.warning("--channels-last and --compile apply to the torch engine only")
    if engine == "openvino":
        return _openvino_runner(model, dev, threads)
    return _onnx_runner(model, dev, threads)


def _torch_runner(
    model: SRModel,
    device: torch.device,
    precision: str,
    channels_last: bool,
    compile: bool,
    threads: int | None,
) -> Runner:
    assert model.module is not None
    if threads is not None:
        torch.set_num_threads(threads)
    module = model.module.eval()
    if device.type != "cpu" or channels_last:
        # .to() converts a module in place: keep the CPU master untouched for other runners
        module = copy.deepcopy(module).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    forward: Callable[[Tensor], Tensor] = module
    if compile:
        # freezing: weights become constants, so inductor can fold them and prepack the
        # convolution weights (the main CPU gain); fine for inference-only use
        forward = torch.compile(module, options={"freezing": True})  # type: ignore[assignment]
    autocast = (
        torch.autocast(device_type=device.type, dtype=_AUTOCAST[precision])
        if precision in _AUTOCAST
        else contextlib.nullcontext()
    )

    def fn(x: Tensor) -> Tensor:
        with torch.inference_mode():
            xd = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            with autocast:
                y = forward(xd)
            return y.float().to("cpu").contiguous()

    parts = [f"torch on {device}", precision]
    if channels_last:
        parts.append("channels-last")
    if compile:
        parts.append("compiled")
    return Runner(
        fn=fn,
        scale=model.scale,
        out_channels=model.out_channels,
        device=device,
        precision=precision,
        engine="torch",
        description=", ".join(parts),
    )


def _onnx_bytes(model: SRModel) -> bytes:
    """The model's ONNX form: its own, the shipped export beside its weights, or exported now."""
    if model.onnx is not None:
        return model.onnx
    if model.onnx_file is not None:
        try:
            return model.onnx_file.read_bytes()
        except OSError as error:
            message = f"{model.name}: cannot read {model.onnx_file} ({error})"
            raise InferenceError(message) from error
    from medsr.infer.export import export_onnx_bytes

    return export_onnx_bytes(model)


def _onnx_runner(model: SRModel, device: torch.device, threads: int | None) -> Runner:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "the onnxruntime engine needs onnxruntime: pip install 'medsr[onnx]'"
        ) from None
    data = _onnx_bytes(model)
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                "onnxruntime here has no CUDA provider (install onnxruntime-gpu) ; use "
                "--device cpu or --engine torch"
            )
        providers.insert(0, "CUDAExecutionProvider")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types
        raise InferenceError(
            f"{model.name}: ONNX Runtime cannot load the model ({error})"
        ) from error
    input_name = session.get_inputs()[0].name
    multiple = model.size_multiple

    def fn(x: Tensor) -> Tensor:
        padded, h, w = _pad_to(x, multiple)
        x = padded
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                (y,) = session.run(None, {input_name: x.contiguous().numpy()})
            except Exception as error:  # onnxruntime's errors are not typed in Python
                if "alloc" in str(error).lower() or "memory" in str(error).lower():
                    raise RuntimeError(f"out of memory: {error}") from error
                raise InferenceError(f"{model.name}: ONNX Runtime failed ({error})") from error
        out = torch.from_numpy(y)
        s = model.scale
        return out[..., : h * s, : w * s].contiguous() if padded.shape[-2:] != (h, w) else out

    return Runner(
        fn=fn,
        scale=model.scale,
        out_channels=model.out_channels,
        device=device,
        precision="fp32",
        engine="onnxruntime",
        description=f"onnxruntime ({providers[0]})",
    )


def _pad_to(x: Tensor, multiple: int) -> tuple[Tensor, int, int]:
    """Pad the bottom/right of ``x`` to a multiple (reflect, or replicate when too small)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, h, w


_openvino_core = None  # the openvino.Core of openvino_core(), once created
_openvino_core_lock = threading.Lock()


def openvino_core() -> Any:  # an openvino.Core (OpenVINO is optional: imported lazily)
    """The process's one ``openvino.Core``, created on first use and kept until the process
    ends; every OpenVINO model of medsr (and its benchmarks) compiles on it.

    One Core, not one per model, because each Core loads its own CPU plugin, and the plugin
    (seen with openvino 2026.4.1) gives the thread that loads it a new signal stack
    (``sigaltstack``), saving the one it replaced, and on its destruction unmaps its stack and
    puts the saved one back. When two plugins are destroyed in the order they were created, the
    second puts back the first one's stack, already unmapped: the next signal handled on that
    thread (SIGCHLD when a child process ends, for one) kills the process with SIGSEGV or
    writes its frame over memory that now belongs to something else (benchmarks/RESULTS.md,
    "OpenVINO's signal stack"). With one Core there is one plugin, destroyed only at exit.
    """
    global _openvino_core
    import openvino as ov

    with _openvino_core_lock:
        if _openvino_core is None:
            _openvino_core = ov.Core()
        return _openvino_core


def _openvino_runner(model: SRModel, device: torch.device, threads: int | None) -> Runner:
    """OpenVINO on the CPU, from the model's ONNX form (exported in memory for a PyTorch
    model). The compiled model keeps dynamic height and width; OpenVINO re-plans each new
    input shape once and caches it."""
    if device.type != "cpu":
        raise ConfigError("the openvino engine runs on the CPU here; use --device cpu")
    try:
        core = openvino_core()
    except ImportError:
        raise ConfigError(
            "the openvino engine needs openvino: pip install 'medsr[openvino]'"
        ) from None
    data = _onnx_bytes(model)
    # f32 explicitly: on CPUs with bf16 units OpenVINO would otherwise compute in bf16
    config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        compiled = core.compile_model(core.read_model(data), "CPU", config)
    except Exception as error:  # OpenVINO raises its own exception types
        raise InferenceError(f"{model.name}: OpenVINO cannot load the model ({error})") from error
    # An InferRequest is not thread-safe (two threads on one gave wrong outputs, silently), and
    # runners are shared: the web app's job workers use one model. One request per thread.
    requests = threading.local()
    multiple = model.size_multiple

    def fn(x: Tensor) -> Tensor:
        xp, h, w = _pad_to(x, multiple)
        request = getattr(requests, "request", None)
        if request is None:
            request = requests.request = compiled.create_infer_request()
        try:
            result = request.infer({0: xp.contiguous().numpy()})
        except Exception as error:  # OpenVINO's errors are not typed in Python
            if "alloc" in str(error).lower() or "memory" in str(error).lower():
                raise RuntimeError(f"out of memory: {error}") from error
            raise InferenceError(f"{model.name}: OpenVINO failed ({error})") from error
        out = torch.from_numpy(next(iter(result.values())).copy())
        s = model.scale
        return out[..., : h * s, : w * s].contiguous()

    return Runner(
        fn=fn,
        scale=model.scale,
        out_channels=model.out_channels,
        device=device,
        precision="fp32",
        engine="openvino",
        description="openvino (CPU)",
    )


def _installed(engine: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(engine) is not None
