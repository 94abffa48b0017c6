"""LPIPS from local files only. The real ImageNet backbones cannot be downloaded here, so
the computation is checked with random weights in the official file layouts against a
direct transcription of the LPIPS definition; a real-weights test runs where they exist."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from medsr.errors import ConfigError, FileError
from medsr.metrics import METRICS, compute_metrics, lpips, lpips_available
from medsr.metrics.lpips import _features

from .conftest import degrade

CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


def _random_weights(tmp_path: Path, net: str, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    trunk = {
        f"features.{k}": torch.randn(v.shape, generator=g) / v[0].numel() ** 0.5
        for k, v in _features(net).state_dict().items()
    }
    trunk["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision files carry the classifier
    lins = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
        for k, c in enumerate(CHANNELS[net])
    }
    return trunk, lins


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """An empty torch hub cache: no backbone anywhere by default."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


@pytest.fixture
def alex_files(tmp_path, no_hub):
    trunk, lins = _random_weights(tmp_path, "alex")
    no_hub.mkdir(parents=True)
    torch.save(trunk, no_hub / "alexnet-owt-7be5be79.pth")
    linear = tmp_path / "alex-lin.pth"
    torch.save(lins, linear)
    return trunk, lins, linear


def test_unavailable_without_weights_says_why(no_hub):
    status = lpips_available()
    assert not status and not status.available
    assert "alexnet-owt-7be5be79.pth" in status.reason and str(no_hub) in status.reason
    assert METRICS["lpips"].unavailable_reason() == status.reason
    img = np.zeros((64, 64))
    with pytest.raises(FileError, match=re.escape("alexnet-owt-7be5be79.pth")):
        lpips(img, img, data_range=1.0)
    with pytest.raises(ConfigError, match="cannot run"):
        compute_metrics(img, img, data_range=1.0, metrics=["lpips"])
    missing = lpips_available(backbone="/nonexistent/alex.pth", linear="/nonexistent/lin.pth")
    assert "/nonexistent/alex.pth" in missing.reason and "/nonexistent/lin.pth" in missing.reason
    with pytest.raises(ConfigError, match="net"):
        lpips_available("squeeze")


def _lpips_by_definition(x, y, trunk, lins, low, width):
    """LPIPS written out from the paper for AlexNet: [-1, 1] input, the LPIPS scaling
    layer, relu1..relu5 features, unit-normalised over channels, squared differences
    weighted by the linear layers, averaged over space and summed over layers."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def feats(img):
        t = torch.from_numpy(img).float()[None, None].repeat(1, 3, 1, 1)
        t = ((2 * (t - low) / width - 1) - shift) / scale
        out = []
        convs = [(0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1)]
        for i, (idx, stride, pad) in enumerate(convs):
            if i in (1, 2):
                t = F.max_pool2d(t, 3, 2)
            w, b = trunk[f"features.{idx}.weight"], trunk[f"features.{idx}.bias"]
            t = F.relu(F.conv2d(t, w, b, stride=stride, padding=pad))
            out.append(t / (t.norm(dim=1, keepdim=True) + 1e-10))
        return out

    total = 0.0
    for k, (a, b) in enumerate(zip(feats(x), feats(y), strict=True)):
        total += float(((a - b) ** 2 * lins[f"lin{k}.model.1.weight"]).sum(1).mean())
    return total


def test_lpips_follows_its_definition(alex_files, load):
    trunk, lins, linear = alex_files
    assert lpips_available(linear=linear).available
    case = load("ct-small")
    hr = case.hr
    sr = degrade(hr, "blur+noise", case.data_range)
    got = lpips(sr, hr, data_range=(-1024.0, 3072.0), linear=linear)
    assert got.shape == (1,) and got.dtype == torch.float64
    want = _lpips_by_definition(sr, hr, trunk, lins, -1024.0, 4096.0)
    assert float(got) == pytest.approx(want, rel=1e-4)


def test_lpips_properties(alex_files, load):
    _, _, linear = alex_files
    case = load("ct-small")
    hr = case.hr
    mild = degrade(hr, "blur", case.data_range)
    strong = degrade(mild, "blur+noise", case.data_range)
    rng = (-1024.0, 3072.0)
    assert float(lpips(hr, hr, data_range=rng, linear=linear)) == pytest.approx(0.0, abs=1e-7)
    d = float(lpips(strong, hr, data_range=rng, linear=linear))
    assert d > 0
    assert float(lpips(hr, strong, data_range=rng, linear=linear)) == pytest.approx(d, rel=1e-5)
    # a number L means (0, L): the same as shifting the images by -low
    shifted = lpips(strong + 1024, hr + 1024, data_range=4096.0, linear=linear)
    assert float(shifted) == pytest.approx(d, rel=1e-4)
    # a grey image is the RGB image with three equal channels
    rgb = lpips(np.stack([strong] * 3), np.stack([hr] * 3), data_range=rng, linear=linear)
    assert float(rgb) == pytest.approx(d, rel=1e-5)
    batch = lpips(
        np.stack([mild, strong])[:, None],
        np.stack([hr, hr])[:, None],
        data_range=rng,
        linear=linear,
    )
    assert batch.shape == (2,) and float(batch[1]) == pytest.approx(d, rel=1e-5)
    with pytest.raises(ConfigError, match="channels"):
        lpips(np.stack([hr] * 2), np.stack([hr] * 2), data_range=rng, linear=linear)
    with pytest.raises(ConfigError, match="32x32"):
        lpips(hr[:16, :16], hr[:16, :16], data_range=rng, linear=linear)


def test_vgg_from_safetensors_and_bad_files(tmp_path, no_hub):
    trunk, lins = _random_weights(tmp_path, "vgg")
    backbone = tmp_path / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in trunk.items()}, str(backbone))
    linear = tmp_path / "vgg-lin.pth"
    torch.save(lins, linear)
    img = np.random.default_rng(0).random((48, 48))
    d = lpips(img * 0.5, img, data_range=1.0, net="vgg", backbone=backbone, linear=linear)
    assert float(d) > 0
    # an AlexNet linear file for a VGG backbone is rejected with the file's name
    _, alex_lins = _random_weights(tmp_path, "alex")
    wrong = tmp_path / "alex-lin.pth"
    torch.save(alex_lins, wrong)
    with pytest.raises(FileError, match=re.escape("alex-lin.pth")):
        lpips(img, img, data_range=1.0, net="vgg", backbone=backbone, linear=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(FileError, match=re.escape("garbage.pth")):
        lpips(img, img, data_range=1.0, net="vgg", backbone=garbage, linear=linear)


@pytest.mark.skipif(not lpips_available(), reason=lpips_available().reason or "available")
def test_lpips_with_the_real_weights(load):
    case = load("ct-small")
    mild = degrade(case.hr, "blur", case.data_range)
    strong = degrade(mild, "blur+noise", case.data_range)
    rng = (-1024.0, 3072.0)
    assert float(lpips(mild, case.hr, data_range=rng)) < float(
        lpips(strong, case.hr, data_range=rng)
    )
