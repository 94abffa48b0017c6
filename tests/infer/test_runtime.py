from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from medsr.errors import ConfigError, InferenceError
from medsr.infer import get_runner, load_model, resolve_device, upscale_image, wrap_module
from medsr.infer.runtime import ensemble
from medsr.io import Image


class Failing(nn.Module):
    """Raises ``error`` on the ``after``-th call (tiles before it succeed)."""

    scale, in_channels, out_channels = 2, 1, 1

    def __init__(self, error: BaseException, after: int = 0):
        super().__init__()
        self.error, self.after, self.calls = error, after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise self.error
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA error: out of memory"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
    ],
)
def test_out_of_memory_on_a_tile_is_a_clear_error(error):
    image = Image(np.random.default_rng(0).random((64, 64), dtype=np.float32), spacing=(1, 1))
    model = wrap_module(Failing(error, after=2))
    with pytest.raises(InferenceError, match=r"out of memory.*smaller --tile"):
        upscale_image(image, model, tile=24, overlap=4, batch_size=1)
    assert model.module.calls == 3  # two tiles worked, the third failed: no partial output


def test_other_model_errors_are_not_disguised_as_memory_errors():
    image = Image(np.zeros((16, 16), np.float32), spacing=(1, 1))
    with pytest.raises(ValueError, match="boom"):
        upscale_image(image, wrap_module(Failing(ValueError("boom"))))


def test_non_finite_output_is_an_error_not_a_black_tile():
    class NaNModel(Failing):
        def forward(self, x):
            y = super().forward(x)
            y[..., 3, 3] = float("nan")
            return y

    image = Image(np.ones((16, 16), np.float32), spacing=(1, 1))
    with pytest.raises(InferenceError, match="NaN"):
        upscale_image(image, wrap_module(NaNModel(RuntimeError(), after=10**6)))


def test_wrong_output_shape_is_reported():
    class Wrong(Failing):
        def forward(self, x):
            return x

    image = Image(np.ones((16, 16), np.float32), spacing=(1, 1))
    with pytest.raises(InferenceError, match="expected"):
        upscale_image(image, wrap_module(Wrong(RuntimeError(), after=10**6)))


def test_device_auto_selection_and_refusals():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_is_never_used_on_the_cpu(precision, caplog):
    model = load_model("bicubic", scale=2)
    with caplog.at_level(logging.WARNING):
        runner = get_runner(model, device="cpu", precision=precision)
    assert runner.precision == "fp32" and "only used on a GPU" in caplog.text
    y = runner(torch.rand(1, 1, 8, 8))
    assert y.dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown precision"):
        get_runner(model, device="cpu", precision="int8")


def test_runners_are_cached_per_option():
    model = load_model("lanczos", scale=2)
    a = get_runner(model, device="cpu")
    assert get_runner(model, device="cpu") is a
    assert get_runner(model, device="cpu", channels_last=True) is not a


def test_channels_last_gives_the_same_output(small_conv):
    model = wrap_module(small_conv(scale=2))
    x = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    plain = get_runner(model, device="cpu")(x)
    cl = get_runner(model, device="cpu", channels_last=True)(x)
    torch.testing.assert_close(plain, cl, atol=1e-5, rtol=1e-5)


def test_self_ensemble_is_exact_for_an_equivariant_model():
    # bicubic (symmetric kernel, same along both axes) commutes with flips and 90-degree turns
    model = load_model("bicubic", scale=2)
    x = torch.rand(2, 1, 17, 23, generator=torch.Generator().manual_seed(0))
    plain = get_runner(model, device="cpu")(x)
    ens = get_runner(model, device="cpu", self_ensemble=True)(x)
    torch.testing.assert_close(ens, plain, atol=1e-5, rtol=0)


def test_self_ensemble_averages_the_eight_transforms(small_conv):
    net = small_conv(scale=2, seed=3).eval()
    model = wrap_module(net)
    x = torch.rand(1, 1, 12, 15, generator=torch.Generator().manual_seed(0))
    ens = get_runner(model, device="cpu", self_ensemble=True)(x)
    expected = torch.zeros_like(ens)
    with torch.no_grad():
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, (-2, -1))
                t = t.flip(-1) if flip else t
                y = net(t)
                y = y.flip(-1) if flip else y
                expected += torch.rot90(y, -k, (-2, -1)) / 8
    torch.testing.assert_close(ens, expected, atol=1e-5, rtol=1e-5)
    plain = get_runner(model, device="cpu")(x)
    assert float((plain - ens).abs().max()) > 1e-3  # not equivariant: the ensemble differs


def test_ensemble_keeps_the_description():
    model = load_model("nearest", scale=2)
    runner = ensemble(get_runner(model, device="cpu"))
    assert "self-ensemble" in runner.description


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_the_gpu_matches_fp32(precision, small_conv):
    model = wrap_module(small_conv(scale=2))
    x = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    ref = get_runner(model, device="cuda")(x)
    half = get_runner(model, device="cuda", precision=precision, channels_last=True)(x)
    assert half.dtype == torch.float32 and half.device.type == "cpu"
    assert float((half - ref).abs().max()) < 5e-2


def test_compile_wraps_the_module(monkeypatch):
    compiled = []

    def fake_compile(module, options=None):
        compiled.append(module)
        assert options == {"freezing": True}
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = load_model("bicubic", scale=2)
    runner = get_runner(model, device="cpu", compile=True)
    assert compiled == [model.module] and "compiled" in runner.description
    assert runner(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


_COMPILE_CHECK = """
import torch
from medsr.infer import get_runner, load_model
model = load_model("bicubic", scale=2)
x = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
compiled = get_runner(model, device="cpu", compile=True)(x)
torch.testing.assert_close(compiled, get_runner(model, device="cpu")(x), atol=1e-5, rtol=0)
print("compiled ok")
"""


@pytest.mark.slow
def test_torch_compile_really_runs():
    # in a fresh interpreter, so that inductor really builds (an empty cache of its own state)
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _COMPILE_CHECK], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "compiled ok" in done.stdout, done.stderr[-2000:]


def test_runners_do_not_change_the_shared_module(small_conv):
    model = wrap_module(small_conv(scale=2))
    get_runner(model, device="cpu", channels_last=True)
    weights = [p for p in model.module.parameters() if p.ndim == 4]
    assert all(w.is_contiguous() and w.device.type == "cpu" for w in weights)


@pytest.mark.parametrize(("engine", "inside"), [("onnxruntime", 1), ("openvino", 1), ("torch", 2)])
def test_glue_around_an_outside_runtime_runs_on_one_torch_thread(engine, inside):
    # PyTorch's spinning OpenMP threads took the cores from ONNX Runtime's next call
    from medsr.infer.runtime import Runner
    from medsr.infer.upscale import super_resolve_stack

    seen = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return x.repeat_interleave(2, -1).repeat_interleave(2, -2)

    model = load_model("bicubic", scale=2)
    runner = Runner(fn, 2, 1, torch.device("cpu"), "fp32", engine, engine)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = super_resolve_stack(torch.rand(3, 1, 8, 8), runner, model, tile=0)
        assert out.shape == (3, 1, 16, 16) and seen and set(seen) == {inside}
        assert torch.get_num_threads() == 2  # restored

        def broken(x: torch.Tensor) -> torch.Tensor:
            raise InferenceError("boom")

        runner.fn = broken
        with pytest.raises(InferenceError):
            super_resolve_stack(torch.rand(1, 1, 8, 8), runner, model, tile=0)
        assert torch.get_num_threads() == 2  # restored after an error too
    finally:
        torch.set_num_threads(before)


_SIGNAL_STACK_CHECK = """
import faulthandler, gc, os, signal
import torch
from medsr import models
from medsr.infer import get_runner, wrap_module
from medsr.infer.runtime import openvino_core

faulthandler.enable()  # as under pytest: the main thread has a signal stack of Python's
nets = [wrap_module(models.build_generator("edsr", {"scale": s, "num_features": 4,
                                                    "num_blocks": 1})) for s in (2, 3)]
for net in nets:
    get_runner(net, engine="openvino", device="cpu")(torch.rand(1, 1, 8, 8))
for net in nets:  # each model's OpenVINO objects go in the order they were made
    net._runners.clear()
    gc.collect()
handled = []
signal.signal(signal.SIGUSR1, lambda *_: handled.append(1))
for _ in range(3):  # handled on the main thread's signal stack
    os.kill(os.getpid(), signal.SIGUSR1)
assert len(handled) == 3 and openvino_core() is openvino_core()
print("signals ok")
"""


def test_openvino_models_leave_a_valid_signal_stack_behind():
    # A Core per model gave each its own CPU plugin, and each plugin swaps in a signal stack of
    # its own and, when destroyed, puts back the one it found: destroyed in the order created,
    # the last put back the first one's unmapped stack and the next signal killed the process
    # (SIGSEGV) or overwrote memory. One Core per process (openvino_core). In a child
    # interpreter, because the failure is a crash.
    import subprocess
    import sys

    pytest.importorskip("openvino")
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_STACK_CHECK], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0 and "signals ok" in done.stdout, (
        done.returncode,
        done.stderr[-2000:],
    )
