"""In-plane downsampling: bicubic/bilinear against PIL and MATLAB, Gaussian blur, k-space, mixed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from medsr.errors import ConfigError
from medsr.transforms import degrade as D

from .conftest import SCALES, rand


# -- bicubic / bilinear against references ---------------------------------------------------
def _pil_resize(x: np.ndarray, scale: int, method: int) -> np.ndarray:
    h, w = x.shape
    return np.asarray(Image.fromarray(x, mode="F").resize((w // scale, h // scale), method))


def _cubic(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(
        a <= 1,
        1.5 * a**3 - 2.5 * a**2 + 1,
        np.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0),
    )


def _matlab_weights(n: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB imresize(..., 'bicubic') weights for 1/scale (antialiased, mirrored borders),
    written from its documented algorithm; also which outputs touch no border."""
    out = n // scale
    x = np.arange(1, out + 1) * scale + 0.5 * (1 - scale)  # 1-based input coordinate
    width = 4.0 * scale
    left = np.floor(x - width / 2)
    taps = int(np.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]
    w = _cubic((x[:, None] - idx) / scale) / scale
    w /= w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])
    cols = mirror[np.mod(idx - 1, 2 * n).astype(int)]
    matrix = np.zeros((out, n))
    np.add.at(matrix, (np.repeat(np.arange(out), taps), cols.ravel()), w.ravel())
    nonzero = w != 0
    inside = np.all((idx >= 1) & (idx <= n) | ~nonzero, axis=1)
    return matrix, inside


@pytest.mark.parametrize("scale", SCALES)
def test_bicubic_matches_pil_and_matlab_interior(scale: int) -> None:
    x = rand(48, 72, seed=scale).numpy()
    ours = D.bicubic(torch.from_numpy(x), scale, clip=False).numpy()
    assert np.abs(ours - _pil_resize(x, scale, Image.BICUBIC)).max() < 2e-6
    mh, inside_h = _matlab_weights(48, scale)
    mw, inside_w = _matlab_weights(72, scale)
    matlab = mh @ x.astype(np.float64) @ mw.T
    interior = np.ix_(inside_h, inside_w)
    assert inside_h.sum() > 0 and inside_w.sum() > 0
    assert np.abs(ours[interior] - matlab[interior]).max() < 2e-6
    # ... while plain (non-antialiased) bicubic is a different, aliasing kernel
    plain = D.bicubic(torch.from_numpy(x), scale, antialias=False, clip=False).numpy()
    assert np.abs(plain[interior] - matlab[interior]).max() > 1e-3


def test_bicubic_on_a_real_slice_matches_pil(flair_slice: torch.Tensor) -> None:
    x = flair_slice.numpy()
    ours = D.bicubic(flair_slice, 4, clip=False).numpy()
    assert np.abs(ours - _pil_resize(x, 4, Image.BICUBIC)).max() < 2e-6
    clipped = D.bicubic(flair_slice, 4)
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0


def test_bilinear_default_is_plain_interpolation_and_antialias_matches_pil() -> None:
    x = rand(1, 1, 32, 32, seed=3)
    lr = D.bilinear(x, 4)
    # LR centre (i + 0.5) * 4 - 0.5 = 4i + 1.5: the mean of HR rows/columns 4i+1 and 4i+2
    expected = x[..., 1::4, :][..., :, 1::4] + x[..., 2::4, :][..., :, 1::4]
    expected = (expected + x[..., 1::4, :][..., :, 2::4] + x[..., 2::4, :][..., :, 2::4]) / 4
    assert torch.allclose(lr, expected, atol=1e-6)
    aa = D.bilinear(x, 4, antialias=True)[0, 0].numpy()
    assert np.abs(aa - _pil_resize(x[0, 0].numpy(), 4, Image.BILINEAR)).max() < 2e-6


# -- Gaussian blur: analytic transfer function ------------------------------------------------
def _sinusoid(freq: float, n: int = 128, phase: float = 0.4) -> torch.Tensor:
    cols = torch.arange(n, dtype=torch.float64)
    row = 0.5 + 0.4 * torch.cos(2 * math.pi * freq * cols + phase)
    return row.repeat(8, 1)[None, None].float()


@pytest.mark.parametrize(("freq", "sigma"), [(0.05, 1.0), (0.1, 1.5), (0.2, 0.8), (0.12, 3.0)])
def test_gaussian_blur_attenuates_as_the_analytic_transfer_function(
    freq: float, sigma: float
) -> None:
    x = _sinusoid(freq)
    y = D.gaussian_blur(x, sigma)[0, 0, 4].double()
    gain = math.exp(-2 * math.pi**2 * sigma**2 * freq**2)
    cols = torch.arange(128, dtype=torch.float64)
    expected = 0.5 + 0.4 * gain * torch.cos(2 * math.pi * freq * cols + 0.4)
    margin = math.ceil(4 * sigma) + 1
    assert (y - expected)[margin:-margin].abs().max() < 1e-4 * max(1.0, 1 / gain)


@pytest.mark.parametrize("scale", SCALES)
def test_blur_downsample_samples_the_blurred_signal_at_lr_centres(scale: int) -> None:
    freq = 0.3 / scale  # below the LR Nyquist frequency 0.5 / scale
    n = 120 if scale == 3 else 128
    x = _sinusoid(freq, n)
    sigma = D.default_blur_sigma(scale)
    assert sigma == pytest.approx(scale / 2.3548, rel=1e-4)
    lr = D.blur_downsample(x, (1, scale))[0, 0, 4].double()
    centres = (torch.arange(n // scale, dtype=torch.float64) + 0.5) * scale - 0.5
    gain = math.exp(-2 * math.pi**2 * sigma**2 * freq**2)
    expected = 0.5 + 0.4 * gain * torch.cos(2 * math.pi * freq * centres + 0.4)
    margin = math.ceil(5 * sigma / scale) + 1
    assert (lr - expected)[margin:-margin].abs().max() < 2e-4


def test_blur_sigma_validation() -> None:
    with pytest.raises(ConfigError, match="sigma"):
        D.build_degradation({"name": "gaussian_blur", "scale": 4, "sigma": [0.0, 1.0]})
    with pytest.raises(ConfigError, match="sigma"):
        D.build_degradation({"name": "gaussian_blur", "scale": 4, "sigma": -1})


# -- k-space truncation -----------------------------------------------------------------------
def _two_tone(n: int, low: int, high: int, axis: int) -> torch.Tensor:
    idx = torch.arange(n, dtype=torch.float64)
    signal = 0.5 + 0.2 * torch.cos(2 * math.pi * low * idx / n + 0.3)
    signal = signal + 0.15 * torch.cos(2 * math.pi * high * idx / n + 1.1)
    image = signal[None, :].repeat(n, 1) if axis == -1 else signal[:, None].repeat(1, n)
    return image[None, None].float()


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("axis", [-2, -1])
def test_kspace_keeps_the_band_exactly_and_removes_everything_above(scale: int, axis: int) -> None:
    n = 96 if scale == 3 else 64
    lr_nyquist = n // scale // 2  # in cycles per field of view
    low, high = max(1, lr_nyquist // 2), lr_nyquist + 3
    x = _two_tone(n, low, high, axis)
    lr = D.kspace_truncate(x, scale, clip=False)[0, 0].double()
    centres = (torch.arange(n // scale, dtype=torch.float64) + 0.5) * scale - 0.5
    expected = 0.5 + 0.2 * torch.cos(2 * math.pi * low * centres / n + 0.3)
    line = lr[0] if axis == -1 else lr[:, 0]
    assert (line - expected).abs().max() < 1e-5
    # the spectrum of the LR image has energy only at DC and the low tone
    spectrum = torch.fft.fft(line - line.mean()).abs()
    assert float(spectrum[low]) == pytest.approx(0.2 * len(line) / 2, rel=1e-4)
    other = spectrum.clone()
    other[[low, -low]] = 0
    assert other.max() < 1e-4
    # bicubic, by contrast, lets part of the high tone alias into the LR image
    cubic = D.bicubic(x, scale, clip=False)[0, 0].double()
    cubic_line = cubic[0] if axis == -1 else cubic[:, 0]
    assert (cubic_line - expected).abs().max() > 1e-3


def test_kspace_keeps_a_constant_and_the_mean() -> None:
    flat = torch.full((1, 1, 40, 40), 0.37)
    assert torch.allclose(D.kspace_truncate(flat, 4), flat[..., :10, :10], atol=1e-6)
    x = rand(1, 1, 40, 40)
    for window in ("none", "hamming", "tukey"):
        lr = D.kspace_truncate(x, 4, window=window, clip=False)
        assert float(lr.mean()) == pytest.approx(float(x.mean()), abs=1e-5)


def test_kspace_window_attenuates_as_its_weight() -> None:
    n, scale = 64, 2
    x = _two_tone(n, 8, 30, axis=-1)  # 8 cycles: half-way to the LR Nyquist (16)
    lr_none = D.kspace_truncate(x, scale, clip=False)[0, 0, 0].double()
    lr_ham = D.kspace_truncate(x, scale, window="hamming", clip=False)[0, 0, 0].double()
    amplitude = lambda v: float(torch.fft.fft(v - v.mean()).abs()[8])  # noqa: E731
    weight = 0.54 + 0.46 * math.cos(math.pi * 8 / 16)
    assert amplitude(lr_ham) / amplitude(lr_none) == pytest.approx(weight, rel=1e-4)
    tukey = D.kspace_window(32, "tukey", tukey_alpha=0.5)
    assert float(tukey[16]) == 1.0 and float(tukey[16 + 4]) == 1.0 and float(tukey[0]) == 0.0
    assert D.kspace_truncate(x, 2, magnitude=True).min() >= 0


def test_kspace_on_a_real_slice_has_ringing_that_is_clipped(flair_slice: torch.Tensor) -> None:
    raw = D.kspace_truncate(flair_slice, 4, clip=False)
    assert float(raw.min()) < 0.0  # Gibbs ringing undershoots next to the dark background
    clipped = D.kspace_truncate(flair_slice, 4)
    assert float(clipped.min()) >= 0.0 and float(clipped.max()) <= 1.0
    assert float(raw.mean()) == pytest.approx(float(flair_slice.mean()), abs=1e-4)


# -- mixed downsampling (the pretrained models' training degradation) ---------------------------
def test_mixed_downsample_draws_each_kind_per_image_and_is_seeded() -> None:
    hr = D.blur_downsample(rand(24, 1, 32, 32), 1, sigma=1.5)
    deg = D.build_degradation({"name": "mixed_downsample", "scale": 2})
    lr = deg(hr, generator=3)
    assert lr.shape == (24, 1, 16, 16) and deg.random
    assert torch.equal(lr, deg(hr, generator=3))
    kinds = {
        "bicubic": D.bicubic(hr, 2),
        "bilinear": D.bilinear(hr, 2),
        "gaussian_blur": D.blur_downsample(hr, 2),
        "kspace": D.kspace_truncate(hr, 2, window="tukey"),
    }
    seen = set()
    for i in range(hr.shape[0]):
        match = [k for k, v in kinds.items() if torch.allclose(lr[i], v[i], atol=1e-6)]
        assert len(match) == 1, match
        seen.add(match[0])
    assert seen == set(D.MIXED_KINDS)  # 24 draws of 4 equally likely kinds
    for kind, expected in kinds.items():  # one kernel by name, as the pretrained benchmark uses
        assert torch.equal(D.mixed_kind(hr, 2, kind), expected)
    with pytest.raises(ConfigError, match="unknown downsampling kind 'lanczos'; valid: bicubic"):
        D.mixed_kind(hr, 2, "lanczos")
    # the fidelity check of a model trained on it uses antialiased bicubic
    assert deg.downsample_only().to_config() == [D.Bicubic(scale=2).to_config()]


def test_mixed_downsample_probabilities_noise_and_errors() -> None:
    hr = D.blur_downsample(rand(6, 1, 32, 32), 1, sigma=1.5)
    only_bilinear = D.build_degradation(
        {"name": "mixed_downsample", "scale": 4, "probs": [0, 1, 0, 0]}
    )
    assert torch.equal(only_bilinear(hr, generator=0), D.bilinear(hr, 4))
    noisy = D.build_degradation(
        {"name": "mixed_downsample", "scale": 4, "kinds": ["bicubic"], "noise_prob": 1.0}
    )
    assert not torch.allclose(noisy(hr, generator=0), D.bicubic(hr, 4))
    with pytest.raises(ConfigError, match="valid: bicubic, bilinear"):
        D.build_degradation({"name": "mixed_downsample", "scale": 2, "kinds": ["lanczos"]})
    with pytest.raises(ConfigError, match="probs"):
        D.build_degradation({"name": "mixed_downsample", "scale": 2, "probs": [1, 1]})
    with pytest.raises(ConfigError, match="noise_prob"):
        D.build_degradation({"name": "mixed_downsample", "scale": 2, "noise_prob": 2})
