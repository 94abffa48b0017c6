from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr import models, samples
from medsr.errors import CheckpointError, ConfigError
from medsr.infer import get_runner, load_model, upscale_image, wrap_module
from medsr.infer.export import check_onnx, export_onnx, export_onnx_bytes
from medsr.io import read

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TINY = {
    "srcnn": {"scale": 2, "num_features": 8, "mid_features": 4},
    "espcn": {"scale": 3, "num_features": 8, "mid_features": 4},
    "edsr": {"scale": 4, "num_features": 8, "num_blocks": 1},
    "rcan": {"scale": 2, "num_features": 8, "num_groups": 1, "num_blocks": 1, "reduction": 4},
    "rrdbnet": {"scale": 4, "num_features": 8, "num_blocks": 1, "growth": 4},
    "rrdbnet-x2": {"scale": 2, "num_features": 8, "num_blocks": 1, "growth": 4},
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_onnx_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    net = models.build_generator(name.split("-")[0], TINY[name])
    folder = models.save(net, tmp_path / name, metadata={"normalisation": {"method": "minmax"}})
    model = load_model(folder)
    path = export_onnx(model, tmp_path / f"{name}.onnx")
    onnx_model = load_model(path)
    assert onnx_model.engine == "onnxruntime" and onnx_model.scale == model.scale
    assert onnx_model.normalisation == model.normalisation
    # random inputs of odd and even sizes, batch 2 (dynamic batch, height and width)
    assert check_onnx(model, onnx_model, sizes=((37, 29), (16, 24))) < 1e-4


def test_interpolation_and_the_image_pipeline_through_onnxruntime(tmp_path):
    model = load_model("lanczos", scale=2)
    onnx_model = load_model(export_onnx(model, tmp_path / "lanczos.onnx"))
    assert not onnx_model.trained
    mri = read(samples.path("brain-mri"))
    a = upscale_image(mri, model, tile=64, overlap=16)
    b = upscale_image(mri, onnx_model, tile=64, overlap=16)
    assert "onnxruntime" in b.runner
    np.testing.assert_allclose(b.image.array, a.image.array, atol=1e-4)
    assert b.fidelity_psnr == pytest.approx(a.fidelity_psnr, abs=1e-3)


def test_a_pytorch_model_can_run_on_onnxruntime_directly(small_conv):
    model = wrap_module(small_conv(scale=2))
    x = torch.rand(3, 1, 21, 18, generator=torch.Generator().manual_seed(0))
    ort = get_runner(model, engine="onnxruntime", device="cpu")
    torch.testing.assert_close(ort(x), get_runner(model, device="cpu")(x), atol=1e-4, rtol=0)
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp32"):
            get_runner(model, engine="onnxruntime", device="cuda", precision="bf16")


def test_onnx_models_cannot_run_on_torch_and_are_not_exported_again(tmp_path):
    onnx_model = load_model(export_onnx(load_model("bicubic", scale=2), tmp_path / "b.onnx"))
    with pytest.raises(ConfigError, match="onnxruntime"):
        get_runner(onnx_model, engine="torch")
    with pytest.raises(ConfigError, match="already an ONNX model"):
        export_onnx_bytes(onnx_model)
    with pytest.raises(ConfigError, match="already exists"):
        export_onnx(load_model("bicubic"), tmp_path / "b.onnx")


def test_foreign_or_broken_onnx_files_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    plain = tmp_path / "plain.onnx"
    onnx.save(
        helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), plain
    )
    with pytest.raises(CheckpointError, match="medsr export"):
        load_model(plain)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(CheckpointError, match="not a readable ONNX"):
        load_model(broken)


def test_openvino_engine_matches_pytorch_on_odd_sizes_and_a_fused_span(small_conv, tmp_path):
    pytest.importorskip("openvino")
    model = wrap_module(small_conv(scale=2))
    reference = get_runner(model, engine="torch", device="cpu")
    ov = get_runner(model, engine="openvino", device="cpu", threads=1)
    assert ov.engine == "openvino" and "openvino" in ov.description
    for shape in ((2, 1, 21, 18), (1, 1, 16, 40)):  # new shapes after the first call
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(shape[-1]))
        torch.testing.assert_close(ov(x), reference(x), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    span = models.build_generator("span", {"scale": 2, "num_features": 8, "num_blocks": 2})
    folder = models.save(span, tmp_path / "span", metadata={"normalisation": {"method": "minmax"}})
    loaded = load_model(folder)  # deployed: Conv3XC fused
    x = torch.rand(1, 1, 19, 23, generator=torch.Generator().manual_seed(1))
    out = get_runner(loaded, engine="openvino", device="cpu")(x)
    expected = get_runner(loaded, engine="torch", device="cpu")(x)
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    if torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CPU"):
            get_runner(model, engine="openvino", device="cuda")


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_one_runner_shared_by_threads_gives_each_its_own_output(engine, small_conv):
    # the web app's job workers share a model and so its runner; one OpenVINO InferRequest
    # used by four threads at once had given wrong outputs, silently
    import threading

    pytest.importorskip(engine)
    model = wrap_module(small_conv(scale=2))
    runner = get_runner(model, engine=engine, device="cpu", threads=1)
    reference = get_runner(model, engine="torch", device="cpu")
    wrong: list[str] = []

    def work(seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        for k in range(20):
            x = torch.rand(1, 1, 24 + 8 * (k % 3), 32, generator=g)
            if (runner(x) - reference(x)).abs().max() > 1e-4:
                wrong.append(f"thread {seed}, call {k}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not wrong, wrong[:5]


def test_large_cpu_jobs_run_on_the_fastest_installed_engine(small_conv, monkeypatch, caplog):
    from medsr.infer import runtime
    from medsr.infer.defaults import FAST_CPU_ENGINES
    from medsr.io import Image

    assert FAST_CPU_ENGINES == ("openvino", "onnxruntime")  # the fastest first
    fastest = next(filter(runtime._installed, FAST_CPU_ENGINES))
    image = Image(np.random.default_rng(0).random((3, 20, 24), dtype=np.float32), (1, 1, 1))
    model = wrap_module(small_conv(scale=2))
    small = upscale_image(image, model)  # below the threshold: the model's own engine
    assert small.runner.startswith("torch")
    monkeypatch.setattr(runtime, "AUTO_ENGINE_PIXELS", 100)
    large = upscale_image(image, model)
    assert fastest in large.runner
    np.testing.assert_allclose(large.image.array, small.image.array, atol=1e-4)
    # PyTorch-only options and an explicit engine are honoured
    assert upscale_image(image, model, channels_last=True).runner.startswith("torch")
    assert upscale_image(image, model, engine="torch").runner.startswith("torch")
    # an engine that is not installed is skipped; one that cannot take the model falls back
    monkeypatch.setattr(runtime, "FAST_CPU_ENGINES", ("not-installed", "onnxruntime"))
    assert "onnxruntime" in upscale_image(image, wrap_module(small_conv(scale=2))).runner

    def broken(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(runtime, "_onnx_runner", broken)
    with caplog.at_level("WARNING"):
        fallback = upscale_image(image, wrap_module(small_conv(scale=2)))
    assert fallback.runner.startswith("torch") and "running it with PyTorch" in caplog.text


def test_an_engine_that_cannot_take_a_model_hands_it_to_the_next_once(
    small_conv, monkeypatch, caplog
):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from medsr.infer import runtime
    from medsr.io import Image

    monkeypatch.setattr(runtime, "AUTO_ENGINE_PIXELS", 100)
    monkeypatch.setattr(runtime, "FAST_CPU_ENGINES", ("openvino", "onnxruntime"))
    tries = []

    def broken(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(runtime, "_openvino_runner", broken)
    image = Image(np.random.default_rng(0).random((3, 20, 24), dtype=np.float32), (1, 1, 1))
    model = wrap_module(small_conv(scale=2))
    with caplog.at_level("WARNING"):
        first = upscale_image(image, model)
        second = upscale_image(image, model)  # not tried (nor warned about) again
    assert "onnxruntime" in first.runner and "onnxruntime" in second.runner
    assert tries == [1] and caplog.text.count("openvino cannot run") == 1
    assert "no CPU plugin" in caplog.text and "trying onnxruntime" in caplog.text


def test_shipped_models_run_their_shipped_onnx_at_any_size(monkeypatch, tmp_path, caplog):
    pytest.importorskip("onnxruntime")
    from medsr.infer import load_model, runtime
    from medsr.infer.defaults import FAST_CPU_ENGINES
    from medsr.io import Image

    image = Image(np.random.default_rng(1).random((1, 24, 20), dtype=np.float32), (1, 1, 1))
    model = load_model("medsr-edsr-tiny-x2")
    assert model.onnx_file is not None and model.onnx_file.is_file()

    def no_export(*args, **kwargs):
        raise AssertionError("a shipped model must not be exported at run time")

    monkeypatch.setattr("medsr.infer.export.export_onnx_bytes", no_export)
    fast = upscale_image(image, model)  # a tiny job: the shipped ONNX, no export
    assert next(filter(runtime._installed, FAST_CPU_ENGINES)) in fast.runner
    eager = upscale_image(image, model, engine="torch")
    assert eager.runner.startswith("torch")
    np.testing.assert_allclose(fast.image.array, eager.image.array, atol=1e-4)
    monkeypatch.undo()
    # the same model loaded from its folder path (a user's checkpoint) has no shipped ONNX
    assert load_model(model.onnx_file.parent).onnx_file is None
    # an unreadable shipped file falls back to PyTorch with a warning, never a failure
    broken = load_model("medsr-edsr-tiny-x2")
    broken.onnx_file = tmp_path / "gone.onnx"
    with caplog.at_level("WARNING"):
        result = upscale_image(image, broken)
    assert result.runner.startswith("torch") and "gone.onnx" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # the failure is remembered: no retry, no second warning
        assert upscale_image(image, broken).runner.startswith("torch")
    assert "gone.onnx" not in caplog.text
    np.testing.assert_allclose(result.image.array, eager.image.array, atol=1e-6)
