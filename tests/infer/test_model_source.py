from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from medsr import models
from medsr.errors import CheckpointError, ConfigError
from medsr.infer import DEFAULT_MODEL, NormalisationPolicy, SRModel, load_model, wrap_module
from medsr.infer.model_source import interpolation_names
from medsr.io import Image
from medsr.models import PRETRAINED
from medsr.transforms.intensity import CTWindow, MinMax, PercentileScaling


def test_interpolation_baselines_resolve_by_name():
    assert interpolation_names() == ["nearest", "bilinear", "bicubic", "lanczos"]
    model = load_model("lanczos", scale=3)
    assert (model.scale, model.in_channels, model.trained, model.engine) == (3, 1, False, "torch")
    assert load_model("bicubic").scale == 2  # DEFAULT_SCALE
    assert DEFAULT_MODEL in PRETRAINED and PRETRAINED[DEFAULT_MODEL].scale == 2


def test_untrained_networks_and_unknown_names_are_refused():
    with pytest.raises(ConfigError, match="without trained weights"):
        load_model("rrdbnet")
    with pytest.raises(ConfigError, match=r"not a shipped model.*lanczos"):
        load_model("no-such-model")


def _tiny_edsr(scale: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return models.build_generator("edsr", {"scale": scale, "num_features": 8, "num_blocks": 1})


def test_checkpoint_with_normalisation_and_degradation(tmp_path):
    metadata = {
        "normalisation": {
            "kind": "ct_window",
            "low": -1000.0,
            "high": 1000.0,
            "clip": False,
            "window": None,
        },
        "degradation": [
            {"name": "gaussian_blur", "scale": 2},
            {"name": "gaussian_noise", "sigma": 0.01},
        ],
        "training_data": "example",
    }
    folder = models.save(_tiny_edsr(), tmp_path / "edsr", metadata=metadata)
    for spec in (folder, folder / "config.json", str(folder / "model.safetensors")):
        model = load_model(spec)
        assert model.scale == 2 and model.trained and "edsr" in model.name
        assert model.normalisation.normaliser == CTWindow(
            low=-1000, high=1000, clip=False, window=None
        )
        # the fidelity operator: the noise-free part of the training degradation
        assert [s.name for s in model.consistency_degradation().stages] == ["gaussian_blur"]
        assert model.metadata["training_data"] == "example"
    with pytest.raises(ConfigError, match="x2 model"):
        load_model(folder, scale=4)


def test_checkpoint_without_metadata_gets_the_default_policies(tmp_path):
    folder = models.save(_tiny_edsr(), tmp_path / "plain")
    model = load_model(folder)
    assert model.normalisation == NormalisationPolicy()
    assert model.normalisation.clip is False and model.normalisation.method == "auto"
    (stage,) = model.consistency_degradation().stages
    assert (stage.name, stage.scale, stage.antialias, stage.clip) == ("bicubic", 2, True, False)


def test_bad_metadata_names_the_file(tmp_path):
    folder = models.save(_tiny_edsr(), tmp_path / "bad", metadata={"normalisation": {"mode": 1}})
    with pytest.raises(CheckpointError, match=r"config\.json.*unknown key"):
        load_model(folder)
    config = json.loads((folder / "config.json").read_text())
    config["metadata"] = {"degradation": [{"name": "blurry"}]}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="degradation"):
        load_model(folder)


def test_discriminator_checkpoints_are_refused(tmp_path):
    d = models.build_discriminator("dcgan", {"num_features": 4})
    folder = models.save(d, tmp_path / "d")
    with pytest.raises(CheckpointError, match="not a generator"):
        load_model(folder)


def test_official_esrgan_weights(tmp_path):
    torch.manual_seed(0)
    net = models.build_generator(
        "rrdbnet", {"scale": 2, "in_channels": 3, "num_features": 8, "num_blocks": 1, "growth": 4}
    )
    path = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": net.state_dict()}, path)
    model = load_model(path)
    assert (model.scale, model.in_channels, model.out_channels) == (2, 3, 3)
    assert model.size_multiple == 2 and "rrdbnet" in model.name
    with pytest.raises(CheckpointError, match="x2"):
        load_model(path, scale=4)


def test_other_files_are_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"123")
    with pytest.raises(ConfigError, match="not a model file"):
        load_model(path)


def test_policy_round_trip_and_validation():
    policy = NormalisationPolicy(method="percentile", percentiles=(1, 99), window=(-100, 300))
    assert NormalisationPolicy.from_dict(policy.to_dict()) == policy
    fixed = NormalisationPolicy(normaliser=MinMax(low=0, high=10, clip=False))
    assert NormalisationPolicy.from_dict(fixed.to_dict()) == fixed
    with pytest.raises(ConfigError, match="method"):
        NormalisationPolicy(method="zscore")
    with pytest.raises(ConfigError, match="window"):
        NormalisationPolicy(window="liver")
    with pytest.raises(ConfigError, match="high > low"):
        NormalisationPolicy.from_dict({"percentiles": [99, 1]})


def test_default_policy_fits_per_image_without_clipping():
    ct = np.full((8, 8), -1000.0, np.float32)
    ct[2, 2] = 4000.0  # metal above the wide window's 3071 HU
    image = Image(ct, spacing=(1, 1), modality="CT")
    norm = NormalisationPolicy().fit(image)
    assert isinstance(norm, CTWindow) and norm.window == "wide" and norm.clip is False
    np.testing.assert_allclose(norm.inverse(norm.forward(ct)), ct, atol=1e-3)
    mr = NormalisationPolicy().fit(
        Image(np.arange(64, dtype=np.float32).reshape(8, 8), spacing=(1, 1), modality="MR")
    )
    assert isinstance(mr, PercentileScaling) and mr.clip is False


def test_wrap_module_needs_the_generator_attributes():
    with pytest.raises(ConfigError, match="scale and in_channels"):
        wrap_module(nn.Identity())
    net = _tiny_edsr()
    model = wrap_module(
        net, normalisation={"method": "minmax"}, degradation=[{"name": "bilinear", "scale": 2}]
    )
    assert model.normalisation.method == "minmax"
    assert model.consistency_degradation().stages[0].name == "bilinear"


def test_channel_layouts_are_checked():
    with pytest.raises(ConfigError, match=r"grey, RGB or 2\.5D"):
        SRModel(name="x", scale=2, in_channels=3, out_channels=2, module=nn.Identity())
    with pytest.raises(ConfigError, match="exactly one"):
        SRModel(name="x", scale=2, in_channels=1, out_channels=1)
