"""The YAML pipeline: shapes, determinism across stages, configs and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.errors import ConfigError
from medsr.transforms import degrade as D

from .conftest import CONFIGS, SCALES, rand


def _stage_configs(scale: int) -> list[dict]:
    return [
        {"name": "bicubic", "scale": scale},
        {"name": "bilinear", "scale": scale},
        {"name": "gaussian_blur", "scale": scale},
        {"name": "kspace", "scale": scale},
        {"name": "kspace", "scale": scale, "window": "hamming", "magnitude": True},
        {"name": "realesrgan", "scale": scale},
    ]


# -- shapes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_lr_shape_is_hr_over_scale(scale: int) -> None:
    hr = rand(2, 1, 48, 48)
    for cfg in _stage_configs(scale):
        deg = D.build_degradation(cfg)
        lr = deg(hr, generator=1)
        assert deg.scale == scale
        assert lr.shape == (2, 1, 48 // scale, 48 // scale), cfg
        assert lr.dtype == hr.dtype
        assert float(lr.min()) >= 0.0 and float(lr.max()) <= 1.0, cfg
    thick = D.build_degradation({"name": "thick_slice", "thickness": float(scale)})
    assert thick(hr).shape == (2, 1, 48 // scale, 48)
    assert thick.factors == (scale, 1)


@pytest.mark.parametrize("shape", [(48, 40), (3, 48, 40), (2, 3, 48, 40)])
def test_keeps_the_number_of_dimensions(shape: tuple[int, ...]) -> None:
    hr = rand(*shape)
    for cfg in [*_stage_configs(4), {"name": "jpeg", "quality": 50}]:
        lr = D.build_degradation(cfg)(hr, generator=0)
        factor = 1 if cfg["name"] == "jpeg" else 4
        assert lr.shape == (*shape[:-2], 48 // factor, 40 // factor), cfg


def test_anisotropic_scale_pair() -> None:
    hr = rand(1, 1, 32, 24)
    assert D.bicubic(hr, (4, 1)).shape == (1, 1, 8, 24)
    assert D.kspace_truncate(hr, (1, 3)).shape == (1, 1, 32, 8)
    assert D.blur_downsample(hr, (2, 4)).shape == (1, 1, 16, 6)
    deg = D.build_degradation({"name": "bilinear", "scale": [4, 2]})
    assert deg.factors == (4, 2)
    with pytest.raises(ConfigError, match="anisotropic"):
        _ = deg.scale


def test_not_divisible_raises_naming_the_shape_and_crop_fixes_it() -> None:
    hr = rand(1, 1, 50, 45)
    with pytest.raises(ConfigError, match=r"\(1, 1, 50, 45\).*crop_to_multiple"):
        D.bicubic(hr, 4)
    with pytest.raises(ConfigError, match=r"\(1, 1, 50, 45\)"):
        D.build_degradation({"name": "kspace", "scale": 4})(hr)
    cropped = D.crop_to_multiple(hr, 4)
    assert cropped.shape == (1, 1, 48, 44)
    assert torch.equal(cropped, hr[..., :48, :44])  # the origin (first rows/columns) is kept
    assert D.bicubic(cropped, 4).shape == (1, 1, 12, 11)
    volume = np.zeros((67, 10, 9))
    assert D.crop_to_multiple(volume, 5, dims=(0,)).shape == (65, 10, 9)


def test_rejects_integer_or_non_tensor_input() -> None:
    with pytest.raises(ConfigError, match="float tensor"):
        D.bicubic(torch.zeros(8, 8, dtype=torch.uint8), 2)
    with pytest.raises(ConfigError, match=r"torch.Tensor"):
        D.bicubic(np.zeros((8, 8), np.float32), 2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="along_axis"):
        D.bicubic(torch.zeros(1, 1, 1, 8, 8), 2)


# -- determinism -------------------------------------------------------------------------------
RANDOM_CONFIGS = [
    {"name": "rician_noise", "snr": 10},
    {"name": "rician_noise", "snr": [5, 30]},
    {"name": "gaussian_noise", "sigma": [0.01, 0.1]},
    {"name": "poisson_noise", "peak": 50},
    {"name": "jpeg", "quality": [5, 95]},
    {"name": "realesrgan", "scale": 4},
]


@pytest.mark.parametrize("cfg", RANDOM_CONFIGS, ids=lambda c: c["name"])
def test_same_seed_same_output_other_seed_differs(cfg: dict) -> None:
    hr = D.blur_downsample(rand(4, 1, 64, 64), 1, sigma=2.0)  # smooth, so JPEG varies too
    deg = D.build_degradation(cfg)
    a = deg(hr, generator=7)
    b = deg(hr, generator=torch.Generator().manual_seed(7))
    c = deg(hr, generator=8)
    assert torch.equal(a, b)
    assert torch.equal(a, deg(hr, generator=np.int64(7)))
    assert not torch.equal(a, c)
    assert deg.random
    with pytest.raises(ConfigError, match="generator"):
        deg(hr)


def test_one_generator_advances_through_a_pipeline() -> None:
    deg = D.load_degradation(CONFIGS / "mri_kspace_x2.yaml")
    hr = rand(2, 1, 32, 32)
    g = torch.Generator().manual_seed(3)
    first, second = deg(hr, generator=g), deg(hr, generator=g)
    assert not torch.equal(first, second)  # the generator's state moved on
    assert torch.equal(first, deg(hr, generator=3))


def test_deterministic_stages_need_no_generator_and_ignore_it() -> None:
    hr = rand(1, 1, 32, 32)
    for cfg in _stage_configs(2)[:5]:
        deg = D.build_degradation(cfg)
        assert not deg.random
        assert torch.equal(deg(hr), deg(hr, generator=5))


# -- configs -----------------------------------------------------------------------------------
EXPECTED_CONFIGS = {
    "bicubic_x4": ((4, 4), False),
    "bilinear_x4": ((4, 4), False),
    "gaussian_blur_x4": ((4, 4), False),
    "mri_kspace_x2": ((2, 2), True),
    "thick_slice_5mm": ((5, 1), False),
    "realesrgan_x4": ((4, 4), True),
}


def test_example_configs_load_and_run() -> None:
    flair_slice = D.gaussian_blur(rand(240, 240, seed=5), 2.0)  # any image of the BraTS size
    files = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert set(EXPECTED_CONFIGS) <= files
    for stem, (factors, random) in EXPECTED_CONFIGS.items():
        deg = D.load_degradation(CONFIGS / f"{stem}.yaml")
        assert deg.factors == factors, stem
        assert deg.random == random, stem
        lr = deg(flair_slice, generator=0)
        assert lr.shape == (240 // factors[0], 240 // factors[1]), stem
        assert D.build_degradation(deg.to_config()) == deg


def test_config_errors_list_the_valid_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid names: bicubic, bilinear"):
        D.build_degradation({"name": "lanczos", "scale": 4})
    with pytest.raises(ConfigError, match=r"unknown key.*'sigma'.*valid keys: scale, antialias"):
        D.build_degradation([{"name": "bicubic", "scale": 4, "sigma": 1}])
    with pytest.raises(ConfigError, match=r"missing required key.*'snr'"):
        D.build_degradation({"name": "rician_noise"})
    with pytest.raises(ConfigError, match=r"rician_noise.snr"):
        D.build_degradation({"name": "rician_noise", "snr": "high"})
    with pytest.raises(ConfigError, match=r"rician_noise.snr must be > 0"):
        D.build_degradation({"name": "rician_noise", "snr": [30, 5]})
    with pytest.raises(ConfigError, match="'none', 'hamming', 'tukey'"):
        D.build_degradation({"name": "kspace", "scale": 2, "window": "hann"})
    with pytest.raises(ConfigError, match="at least one stage"):
        D.build_degradation([])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: bicubic\n  scale: 4\n  antialias: maybe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*bicubic\.antialias"):
        D.load_degradation(bad)


def test_downsample_only_drops_noise_and_is_deterministic() -> None:
    hr = rand(2, 1, 32, 32)
    mri = D.load_degradation(CONFIGS / "mri_kspace_x2.yaml")
    clean = mri.downsample_only()
    assert not clean.random and clean.scale == 2
    assert [s.name for s in clean.stages] == ["kspace"]
    assert torch.equal(clean(hr), D.kspace_truncate(hr, 2, window="tukey"))
    real = D.load_degradation(CONFIGS / "realesrgan_x4.yaml").downsample_only()
    assert torch.equal(real(hr), D.bicubic(hr, 4))
    noise_only = D.build_degradation({"name": "gaussian_noise", "sigma": 0.1}).downsample_only()
    assert torch.allclose(noise_only(hr), hr, atol=1e-6)  # identity
    # consistency check: an exact SR output downsamples back to the clean LR
    assert torch.equal(clean(hr), clean(hr))
