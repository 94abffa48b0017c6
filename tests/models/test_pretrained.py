"""The shipped medsr models: files and cards, loading by name, and quality on bundled samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr import samples
from medsr.infer import DEFAULT_MODELS, default_model, load_model
from medsr.io import read
from medsr.metrics import psnr, ssim
from medsr.models import PRETRAINED, read_config
from medsr.transforms.degrade import bicubic
from medsr.transforms.intensity import fit_normaliser

NAMES = list(PRETRAINED)


def test_models_are_shipped_and_small():
    assert NAMES, "no shipped models"
    total = sum(
        f.stat().st_size for e in PRETRAINED.values() for f in e.folder().iterdir() if f.is_file()
    )
    assert total < 20e6  # issue 16: all shipped weights together under 20 MB


@pytest.mark.parametrize("name", NAMES)
def test_shipped_onnx_is_the_same_network(name):
    # model.onnx (run by default on the CPU) must be exported from these very weights
    pytest.importorskip("onnxruntime")
    from medsr.infer.export import check_onnx
    from medsr.infer.runtime import get_runner
    from medsr.models import load

    folder = PRETRAINED[name].folder()
    assert check_onnx(load_model(folder), load_model(folder / "model.onnx")) < 1e-5
    # the deploy form in the file computes what the trained (unfused) network does
    onnx = get_runner(load_model(folder / "model.onnx"), engine="onnxruntime", device="cpu")
    x = torch.rand(
        2, PRETRAINED[name].in_channels, 41, 30, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        trained = load(folder).eval()(x)
    assert torch.from_numpy(np.asarray(onnx(x))).sub(trained).abs().max() < 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_entry_matches_its_checkpoint_and_card(name):
    entry = PRETRAINED[name]
    assert entry.name == name
    assert (entry.folder() / "model.safetensors").is_file()
    config = read_config(entry.folder())
    assert (config["arch"], config["scale"], config["in_channels"]) == (
        entry.arch,
        entry.scale,
        entry.in_channels,
    )
    card = entry.card().read_text(encoding="utf-8")
    assert f"`{name}`" in card
    assert "not for primary diagnosis" in card.lower()
    for needed in ("Architecture", "licence", "Degradation", "medsr train", "Real-ESRGAN"):
        assert needed in card, needed
    for dataset in config["metadata"]["training_data"]["datasets"]:
        assert dataset["name"] in card and not dataset["license"].startswith("unknown")


@pytest.mark.parametrize("name", NAMES)
def test_loads_by_name_and_gives_finite_output_of_the_right_shape(name):
    model = load_model(name)
    assert model.trained and model.name == name and model.scale == PRETRAINED[name].scale
    lr = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        sr = model.module(lr)
    assert sr.shape == (2, 1, 20 * model.scale, 24 * model.scale)
    assert torch.isfinite(sr).all()
    with pytest.raises(Exception, match="scale"):
        load_model(name, scale=8)


def _sample_crop(key: str, size: int) -> torch.Tensor:
    image = read(samples.path(key), modality=samples.SAMPLES[key].modality)
    array = image.array if image.array.ndim == 2 else image.array[image.array.shape[0] // 2]
    unit = np.clip(fit_normaliser(array, modality=image.modality).forward(array), 0, 1)
    h, w = unit.shape
    top, left = (h - size) // 2, (w - size) // 2
    crop = unit[top : top + size, left : left + size]
    return torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None, None]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("key", ["chest-ct", "brain-mri", "chest-xray"])
def test_beats_bicubic_on_a_bundled_sample(name, key):
    model = load_model(name)
    s = model.scale
    hr = _sample_crop(key, 168)  # a multiple of 2, 3 and 4
    lr = bicubic(hr, s)
    with torch.inference_mode():
        sr = model.module(lr).clamp(0, 1)
    up = torch.nn.functional.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)
    up = up.clamp(0, 1)
    b = slice(s, -s)  # the border has no neighbours on one side
    score = float(psnr(sr[..., b, b], hr[..., b, b], data_range=1.0)[0])
    base = float(psnr(up[..., b, b], hr[..., b, b], data_range=1.0)[0])
    assert score > base, (score, base)
    assert float(ssim(sr[..., b, b], hr[..., b, b], data_range=1.0)[0]) > float(
        ssim(up[..., b, b], hr[..., b, b], data_range=1.0)[0]
    )


def test_defaults_by_scale_are_shipped_models_of_that_scale():
    for scale, name in DEFAULT_MODELS.items():
        assert name in PRETRAINED and PRETRAINED[name].scale == scale
        assert default_model(scale) == name
    assert default_model(8) == "lanczos"  # no shipped x8 model


def test_medsr_models_lists_them(capsys):
    from medsr.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)


def test_fast_and_quality_tags_pick_the_weights_for_the_scale():
    from medsr.errors import ConfigError
    from medsr.models import MODEL_TAGS, tagged_model

    tagged = {(e.tag, e.scale): n for n, e in PRETRAINED.items() if e.tag}
    assert ("fast", 2) in tagged and set(t for t, _ in tagged) <= set(MODEL_TAGS)
    for (tag, scale), name in tagged.items():
        assert tagged_model(tag, scale) == name
        assert load_model(tag, scale=scale).name == name
    assert load_model("fast").name == tagged[("fast", 2)]  # x2 when no scale is given
    assert DEFAULT_MODELS[2] == tagged[("fast", 2)]  # the fast model is the default
    with pytest.raises(ConfigError, match="no 'quality' model is shipped for x3"):
        load_model("quality", scale=3)
    with pytest.raises(ConfigError, match="unknown model tag"):
        tagged_model("best", 2)
