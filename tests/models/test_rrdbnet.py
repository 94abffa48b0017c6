"""RRDBNet: the official Real-ESRGAN x4plus weights load and super-resolve a real photo."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medsr.models import RRDBNet, count_parameters, load_official_esrgan


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


def _sharpness(x: torch.Tensor) -> float:
    return float(
        (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., 1:] - x[..., :-1]).abs().mean()
    )


def test_official_key_layout():
    keys = set(RRDBNet(scale=4, in_channels=3, num_blocks=1).state_dict())
    expected = {
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "body.0.rdb3.conv5.bias",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.weight",
        "conv_hr.weight",
        "conv_last.bias",
    }
    assert expected <= keys
    assert "conv_up3.weight" in RRDBNet(scale=8, num_blocks=1).state_dict()


def test_real_esrgan_x4plus_super_resolves_a_photo(shared_data):
    skimage_data = pytest.importorskip("skimage.data")
    weights = shared_data / "weights" / "RealESRGAN_x4plus.safetensors"
    if not weights.is_file():
        pytest.skip(f"{weights} is absent")
    model = load_official_esrgan(weights, scale=4)
    assert count_parameters(model) == 16_697_987
    assert (model.num_blocks, model.num_features, model.growth) == (23, 64, 32)

    photo = torch.from_numpy(skimage_data.astronaut()).permute(2, 0, 1)[None].float() / 255
    hr = photo[..., 32:224, 160:352]  # the face and the suit: edges, texture, flat background
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    with torch.inference_mode():
        sr = model(lr).clamp(0, 1)
    bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
    psnr_sr, psnr_bicubic = _psnr(sr, hr), _psnr(bicubic, hr)
    # Measured: Real-ESRGAN 24.3 dB, bicubic 26.7 dB. A GAN trained on heavy degradations
    # trades PSNR for sharpness on clean bicubic input; wrongly loaded weights give < 15 dB.
    assert psnr_sr > 21.0 and psnr_sr > psnr_bicubic - 4.0, (psnr_sr, psnr_bicubic)
    # ...and it restores edges that bicubic blurs (sharpness close to the original's).
    assert _sharpness(bicubic) < 0.8 * _sharpness(hr) < _sharpness(sr), (
        _sharpness(bicubic),
        _sharpness(sr),
        _sharpness(hr),
    )
