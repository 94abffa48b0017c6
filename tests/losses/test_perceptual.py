"""Perceptual loss: tiny random VGG weights in tmp files, the torchvision cache, and the
real MRI-finetuned VGG16 (skipped without the shared data)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medsr.errors import CheckpointError, ConfigError, WeightsNotFoundError
from medsr.losses import PerceptualLoss, VGGFeatures, vgg_layer_names

SHALLOW = ("conv2_2", "relu2_2")


def _random_weights(arch: str = "vgg19", layers=SHALLOW, dtype=torch.float32):
    """A torchvision-layout state dict covering the stack up to the deepest of ``layers``."""
    torch.manual_seed(0)
    vgg = VGGFeatures(arch=arch, layers=layers)
    state = {}
    for key, value in vgg.state_dict().items():
        fan_in = value[0].numel() if value.dim() > 1 else 1
        state[key] = (torch.randn_like(value) / fan_in**0.5).to(dtype)
    return state


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "vgg19-tiny.safetensors"
    save_file(_random_weights(), str(path))
    return path


@pytest.fixture(autouse=True)
def empty_torch_home(tmp_path, monkeypatch):
    # No test may pick up a real torchvision cache of the machine it runs on.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def test_layer_indices_follow_torchvision():
    names19, names16 = vgg_layer_names("vgg19"), vgg_layer_names("vgg16")
    assert len(names19) == 37 and len(names16) == 31
    # ESRGAN takes vgg19 features[34] (conv5_4), SRGAN's "VGG54" features[35] (relu5_4).
    assert names19.index("conv5_4") == 34 and names19.index("relu5_4") == 35
    assert names19.index("pool5") == 36 and names16.index("conv5_3") == 28
    keys = set(VGGFeatures(arch="vgg16", layers=["conv5_3"]).state_dict())
    conv_indices = {0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28}
    assert keys == {f"features.{i}.{p}" for i in conv_indices for p in ("weight", "bias")}


def test_zero_for_identical_positive_otherwise(weights_file):
    loss = PerceptualLoss(weights=weights_file, layers=list(SHALLOW))
    hr = torch.rand(2, 1, 16, 16)
    total, parts = loss(hr, hr.clone())
    assert total.item() == 0.0 and set(parts) == {"perceptual.conv2_2", "perceptual.relu2_2"}
    sr = (hr + 0.1 * torch.randn_like(hr)).requires_grad_(True)
    total, parts = loss(sr, hr)
    assert torch.isfinite(total) and total.item() > 0
    assert sum(parts.values()).item() == pytest.approx(total.item())
    total.backward()
    assert torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    assert list(loss.parameters()) == []  # VGG weights are buffers: no optimiser picks them


def test_features_before_and_after_activation(weights_file):
    loss = PerceptualLoss(weights=weights_file, layers=list(SHALLOW))
    features = loss.vgg(loss.normalize(torch.rand(1, 1, 8, 8)))
    assert features["conv2_2"].min() < 0
    assert torch.equal(features["relu2_2"], F.relu(features["conv2_2"]))
    assert features["conv2_2"].shape == (1, 128, 4, 4)


def test_pth_and_half_precision_weights_give_the_same_loss(tmp_path, weights_file):
    half = tmp_path / "vgg19-half.pth"
    torch.save(_random_weights(dtype=torch.float16), half)
    full = PerceptualLoss(weights=weights_file, layers=["relu2_2"])
    halved = PerceptualLoss(weights=half, layers=["relu2_2"])
    assert halved.vgg.features[0].weight.dtype == torch.float32
    sr, hr = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)
    a, b = full(sr, hr)[0].item(), halved(sr, hr)[0].item()
    assert a == pytest.approx(b, rel=1e-2) and a != b  # fp16 rounding, same network


def test_normalisations(weights_file):
    grey = torch.rand(1, 1, 4, 4)
    imagenet = PerceptualLoss(weights=weights_file, layers=["relu1_1"])
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    expected = (grey.expand(-1, 3, -1, -1) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    torch.testing.assert_close(imagenet.normalize(grey), expected)
    caffe = PerceptualLoss(weights=weights_file, layers=["relu1_1"], normalization="caffe")
    rgb = torch.rand(1, 3, 4, 4)
    bgr_mean = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torch.testing.assert_close(caffe.normalize(rgb), rgb.flip(1) * 255 - bgr_mean)
    with pytest.raises(ConfigError, match="1 or 3 channels"):
        caffe.normalize(torch.rand(1, 2, 4, 4))


def test_torchvision_cache_is_used(tmp_path, monkeypatch):
    home = tmp_path / "th"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_random_weights(), home / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv("TORCH_HOME", str(home))
    loss = PerceptualLoss(layers={"relu2_2": 0.5})
    assert loss.weights_path.name == "vgg19-dcbb9e9d.pth"


def test_missing_weights_say_where_medsr_looked(tmp_path):
    with pytest.raises(WeightsNotFoundError, match=r"torch-home/hub/checkpoints/vgg19-dcbb9e9d"):
        PerceptualLoss()
    with pytest.raises(WeightsNotFoundError, match="never downloads"):
        PerceptualLoss(arch="vgg16")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        PerceptualLoss(weights=tmp_path / "nope.pth")


def test_bad_options_and_files(tmp_path, weights_file):
    with pytest.raises(ConfigError, match=r"unknown vgg19 layer.*valid: conv1_1"):
        PerceptualLoss(weights=weights_file, layers=["relu6_1"])
    with pytest.raises(ConfigError, match="normalization"):
        PerceptualLoss(weights=weights_file, normalization="bgr")
    with pytest.raises(ConfigError, match="unknown VGG"):
        PerceptualLoss(arch="vgg11")
    # The file covers conv1_1..conv2_2 only: a deeper layer is missing from it.
    with pytest.raises(CheckpointError, match=r"features\.10\.weight"):
        PerceptualLoss(weights=weights_file, layers=["relu3_1"])


def test_real_mri_finetuned_vgg16(shared_data):
    path = shared_data / "weights" / "vgg16-features-imagenet-mri-finetuned.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    loss = PerceptualLoss(
        arch="vgg16", weights=path, normalization="caffe", layers={"relu2_2": 1.0, "conv5_3": 1.0}
    )
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    # A synthetic "slice": a bright disc with a darker ring and fine stripes inside.
    hr = ((xx**2 + yy**2 < 0.6).float() * (0.6 + 0.3 * torch.sin(20 * xx))).view(1, 1, 64, 64)
    assert loss(hr, hr.clone())[0].item() == 0.0
    blur = [F.avg_pool2d(hr, k, stride=1, padding=k // 2, count_include_pad=False) for k in (3, 7)]
    slight, heavy = (loss(b, hr)[0].item() for b in blur)
    assert 0 < slight < heavy and torch.isfinite(torch.tensor(heavy))
