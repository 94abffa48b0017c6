"""Degradations: shapes, determinism, spectra, slice profiles, noise statistics, configs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsr.errors import ConfigError
from medsr.transforms import degrade as D

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "degradations"
SCALES = (2, 3, 4, 8)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


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
    hr = _rand(2, 1, 48, 48)
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
    hr = _rand(*shape)
    for cfg in [*_stage_configs(4), {"name": "jpeg", "quality": 50}]:
        lr = D.build_degradation(cfg)(hr, generator=0)
        factor = 1 if cfg["name"] == "jpeg" else 4
        assert lr.shape == (*shape[:-2], 48 // factor, 40 // factor), cfg


def test_anisotropic_scale_pair() -> None:
    hr = _rand(1, 1, 32, 24)
    assert D.bicubic(hr, (4, 1)).shape == (1, 1, 8, 24)
    assert D.kspace_truncate(hr, (1, 3)).shape == (1, 1, 32, 8)
    assert D.blur_downsample(hr, (2, 4)).shape == (1, 1, 16, 6)
    deg = D.build_degradation({"name": "bilinear", "scale": [4, 2]})
    assert deg.factors == (4, 2)
    with pytest.raises(ConfigError, match="anisotropic"):
        _ = deg.scale


def test_not_divisible_raises_naming_the_shape_and_crop_fixes_it() -> None:
    hr = _rand(1, 1, 50, 45)
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
    hr = D.blur_downsample(_rand(4, 1, 64, 64), 1, sigma=2.0)  # smooth, so JPEG varies too
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
    hr = _rand(2, 1, 32, 32)
    g = torch.Generator().manual_seed(3)
    first, second = deg(hr, generator=g), deg(hr, generator=g)
    assert not torch.equal(first, second)  # the generator's state moved on
    assert torch.equal(first, deg(hr, generator=3))


def test_deterministic_stages_need_no_generator_and_ignore_it() -> None:
    hr = _rand(1, 1, 32, 32)
    for cfg in _stage_configs(2)[:5]:
        deg = D.build_degradation(cfg)
        assert not deg.random
        assert torch.equal(deg(hr), deg(hr, generator=5))


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
    x = _rand(48, 72, seed=scale).numpy()
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
    x = _rand(1, 1, 32, 32, seed=3)
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
    x = _rand(1, 1, 40, 40)
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


# -- thick slices ------------------------------------------------------------------------------
def _fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum of a single peak, with linear interpolation."""
    half = profile.max() / 2
    above = np.nonzero(profile >= half)[0]
    lo, hi = above[0], above[-1]
    left = lo - 1 + (half - profile[lo - 1]) / (profile[lo] - profile[lo - 1])
    right = hi + (profile[hi] - half) / (profile[hi] - profile[hi + 1])
    return float(right - left)


@pytest.mark.parametrize(
    ("thickness", "gap", "spacing"), [(8.0, -7.0, 1.0), (4.0, -3.5, 0.5), (6.0, -5.4, 0.6)]
)
def test_a_bright_slice_spreads_per_the_profile_fwhm(
    thickness: float, gap: float, spacing: float
) -> None:
    volume = torch.zeros(64, 6, 5)
    volume[32] = 1.0
    expected_voxels = thickness / spacing
    gauss = D.thick_slices(volume, thickness=thickness, gap=gap, input_spacing=spacing, axis=0)
    assert gauss.shape == volume.shape  # thickness + gap = one input voxel
    response = gauss[:, 2, 2].double().numpy()
    # the profile integrated over one voxel: FWHM of a Gaussian convolved with a unit box
    sigma = expected_voxels / 2.3548
    widened = 2.3548 * math.sqrt(sigma**2 + 1 / 12)
    assert _fwhm(response) == pytest.approx(widened, rel=0.01)
    assert response.sum() == pytest.approx(1.0, abs=1e-5)
    rect = D.thick_slices(
        volume, thickness=thickness, gap=gap, input_spacing=spacing, profile="rect", axis=0
    )[:, 2, 2].numpy()
    # a box of an even number T of voxels centred on a voxel centre: T - 1 full voxels and
    # two half voxels, so T + 1 neighbours see the bright slice, each with weight <= 1 / T
    assert (rect > 1e-7).sum() == round(expected_voxels) + 1
    assert rect.max() == pytest.approx(1 / expected_voxels, rel=1e-5)


def test_thick_slice_weights_in_mm_with_a_gap() -> None:
    # 5 mm slices every 6 mm from 1 mm voxels: centre 6j + 3 covers [6j + 0.5, 6j + 5.5]
    weights = D.slice_profile_weights(12, thickness=5.0, gap=1.0, profile="rect")
    assert weights.shape == (2, 12)
    expected = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.2, 0.1], dtype=torch.float64)
    assert torch.allclose(weights[0, :6], expected)
    assert torch.allclose(weights[1, 6:], expected)
    assert torch.allclose(weights[0, 6:], torch.zeros(6, dtype=torch.float64))
    gauss = D.slice_profile_weights(80, thickness=4.0, input_spacing=0.5)
    assert gauss.shape == (10, 80)
    assert torch.allclose(gauss.sum(dim=1), torch.ones(10, dtype=torch.float64))
    # thick slice j is centred at (j + 0.5) * 4 mm (away from the truncated ends)
    centre_of_mass = (gauss * (torch.arange(80) + 0.5) * 0.5).sum(dim=1)
    expected_centres = (torch.arange(2, 8, dtype=torch.float64) + 0.5) * 4.0
    assert torch.allclose(centre_of_mass[2:8], expected_centres, atol=1e-6)


def test_thick_slice_errors() -> None:
    with pytest.raises(ConfigError, match="whole number of voxels"):
        D.slice_profile_weights(60, thickness=5.0, input_spacing=0.84)
    with pytest.raises(ConfigError, match="not divisible"):
        D.thick_slices(torch.zeros(67, 4, 4), thickness=5.0, axis=0)
    with pytest.raises(ConfigError, match="thickness \\+ gap"):
        D.build_degradation({"name": "thick_slice", "thickness": 2.0, "gap": -2.0})
    with pytest.raises(ConfigError, match="profile"):
        D.build_degradation({"name": "thick_slice", "thickness": 2.0, "profile": "box"})


def test_thick_slices_of_a_real_volume(flair_unit: torch.Tensor) -> None:
    deg = D.load_degradation(CONFIGS / "thick_slice_5mm.yaml")
    volume = flair_unit[88:152, 88:152, :].contiguous()  # the central columns, all 155 slices
    thick = D.along_axis(deg, volume, axis=2)  # nibabel order (X, Y, Z): Z is axis 2
    assert thick.shape == (64, 64, 31)
    direct = D.thick_slices(volume, thickness=5.0, axis=2)
    assert torch.allclose(thick, direct, atol=1e-6)
    # the middle thick slice is the profile-weighted mean of the thin slices around 75..79
    w = D.slice_profile_weights(155, thickness=5.0)[15]
    assert torch.allclose(thick[..., 15], (volume * w.float()).sum(dim=2), atol=1e-5)
    assert float(thick.mean()) == pytest.approx(float(volume.mean()), rel=1e-3)


# -- volumes -----------------------------------------------------------------------------------
def test_along_axis_and_slicewise_match_explicit_loops() -> None:
    volume = _rand(12, 16, 20)
    cubic = D.build_degradation({"name": "bicubic", "scale": [4, 1]})
    along = D.along_axis(cubic, volume, axis=0)
    assert along.shape == (3, 16, 20)
    loop = torch.stack([D.bicubic(volume[:, y, :], (4, 1)) for y in range(16)], dim=1)
    assert torch.allclose(along, loop, atol=1e-6)
    assert D.along_axis(cubic, volume, axis=1).shape == (12, 4, 20)
    assert D.along_axis(cubic, volume, axis=2).shape == (12, 16, 5)
    inplane = D.slicewise(D.build_degradation({"name": "bicubic", "scale": 4}), volume, axis=0)
    assert inplane.shape == (12, 4, 5)
    assert torch.allclose(inplane[5], D.bicubic(volume[5], 4), atol=1e-6)
    assert D.slicewise(lambda t: D.bicubic(t, 2), volume, axis=2).shape == (6, 8, 20)
    noisy = D.slicewise(
        D.build_degradation({"name": "gaussian_noise", "sigma": 0.1}), volume, generator=1
    )
    assert not torch.equal(noisy[0] - volume[0], noisy[1] - volume[1])
    with pytest.raises(ConfigError, match="volume"):
        D.along_axis(cubic, volume[0], axis=0)


# -- noise -------------------------------------------------------------------------------------
@pytest.mark.parametrize("snr", [5.0, 10.0, 20.0, 40.0])
def test_rician_noise_has_the_requested_snr_on_a_flat_region(snr: float) -> None:
    image = torch.zeros(1, 1, 256, 256)
    image[..., 32:224, 32:224] = 0.5  # flat foreground; its mean is the SNR reference
    noisy = D.rician_noise(image, snr, generator=0, clip=False)
    region = noisy[..., 40:216, 40:216].double()
    measured = float(region.mean() / region.std())
    # Rician bias: mean ~ sqrt(S^2 + sigma^2) and the std a little below sigma at low SNR
    assert measured == pytest.approx(snr, rel=0.04 + 0.5 / snr**2)
    sigma = 0.5 / snr
    background = noisy[..., :24, :].double()
    assert float(background.mean()) == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.03)
    assert float(noisy.min()) >= 0.0  # a magnitude image


def test_rician_reference_max_and_snr_range(flair_slice: torch.Tensor) -> None:
    image = torch.zeros(1, 1, 128, 128)
    image[..., :, :64] = 0.25
    image[..., :, 64:] = 1.0
    noisy = D.rician_noise(image, 20.0, generator=1, reference="max", clip=False)
    assert float(noisy[..., 8:-8, 72:-8].std()) == pytest.approx(1.0 / 20, rel=0.05)
    ref = D.noise_reference(image, "foreground_mean")
    assert float(ref) == pytest.approx(0.625)
    batch = flair_slice.expand(16, 1, 240, 240)
    out = D.rician_noise(batch, (5.0, 50.0), generator=2)
    background_std = out[..., :20, :20].reshape(16, -1).std(dim=1)
    assert float(background_std.max() / background_std.min()) > 3  # a different SNR per image


def test_gaussian_and_poisson_noise_statistics() -> None:
    flat = torch.full((1, 1, 200, 200), 0.5)
    g = D.gaussian_noise(flat, 0.05, generator=0)
    assert float(g.std()) == pytest.approx(0.05, rel=0.03)
    assert float(g.mean()) == pytest.approx(0.5, abs=1e-3)
    p = D.poisson_noise(flat, 200.0, generator=0)
    assert float(p.var()) == pytest.approx(0.5 / 200.0, rel=0.05)
    assert float(p.mean()) == pytest.approx(0.5, abs=2e-3)
    counts = p * 200.0
    assert torch.allclose(counts, counts.round(), atol=1e-4)  # whole photon counts


# -- JPEG --------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_jpeg_changes_the_image_and_respects_quality_order(
    source: str, request: pytest.FixtureRequest
) -> None:
    if source == "real":
        flair_slice = request.getfixturevalue("flair_slice")
    else:
        flair_slice = D.gaussian_blur(_rand(96, 96, seed=4), 1.5)
    errors = []
    for quality in (10, 30, 60, 95):
        out = D.jpeg(flair_slice, quality)
        assert out.shape == flair_slice.shape
        assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)
        errors.append(float((out - flair_slice).abs().mean()))
    assert errors[-1] > 1e-4  # even quality 95 changes the image
    assert errors == sorted(errors, reverse=True)
    assert errors[0] > 3 * errors[-1]


def test_jpeg_channels_are_coded_separately_and_quality_is_checked() -> None:
    x = D.gaussian_blur(_rand(1, 3, 32, 32), 1.0)
    out = D.jpeg(x, 50)
    for c in range(3):
        assert torch.equal(out[:, c : c + 1], D.jpeg(x[:, c : c + 1], 50))
    assert not torch.equal(D.jpeg(x, 50, color=True), out)
    with pytest.raises(ConfigError, match="generator"):
        D.jpeg(x, (30, 90))
    with pytest.raises(ConfigError, match="quality"):
        D.build_degradation({"name": "jpeg", "quality": 0})


# -- Real-ESRGAN -------------------------------------------------------------------------------
def test_realesrgan_is_deterministic_per_seed_and_on_the_8_bit_grid(
    flair_slice: torch.Tensor,
) -> None:
    hr = flair_slice.expand(2, 1, 240, 240)
    a = D.realesrgan(hr, 4, generator=11)
    b = D.realesrgan(hr, 4, generator=11)
    c = D.realesrgan(hr, 4, generator=12)
    assert a.shape == (2, 1, 60, 60)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a[0], a[1])  # every image draws its own degradation
    assert torch.allclose(a * 255, (a * 255).round(), atol=1e-4)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # still the same anatomy: close to the clean bicubic LR on average
    assert float((a - D.bicubic(hr, 4)).abs().mean()) < 0.15


def test_realesrgan_kernels() -> None:
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(40):
        k = D.random_blur_kernel(
            g,
            size=21,
            sigma_range=(0.2, 3.0),
            betag_range=(0.5, 4.0),
            betap_range=(1.0, 2.0),
            kernel_prob=(0.45, 0.25, 0.12, 0.03, 0.12, 0.03),
        )
        assert k.shape == (21, 21)
        assert float(k.sum()) == pytest.approx(1.0)
        assert float(k.min()) >= 0
        assert torch.allclose(k, k.flip(0).flip(1))  # point-symmetric
        seen.add(bool(torch.allclose(k, k.T)))
    assert seen == {True, False}  # both isotropic and rotated anisotropic kernels occur
    sinc = D.sinc_kernel(math.pi / 3, 21)
    assert float(sinc.sum()) == pytest.approx(1.0)
    assert torch.allclose(sinc, sinc.T) and float(sinc.min()) < 0  # ringing lobes
    response = torch.fft.fft2(torch.nn.functional.pad(sinc, (0, 43, 0, 43))).abs()
    assert float(response[0, 0]) == pytest.approx(1.0)
    assert float(response[0, 32]) < 0.1  # cut-off pi/3 = 1/6 cycles/px: Nyquist is stopped


def test_realesrgan_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="kernel_size_range"):
        D.build_degradation({"name": "realesrgan", "kernel_size_range": [8, 21]})
    with pytest.raises(ConfigError, match="sinc_prob"):
        D.build_degradation({"name": "realesrgan", "sinc_prob": 1.5})
    with pytest.raises(ConfigError, match="noise_range"):
        D.build_degradation({"name": "realesrgan", "noise_range": [30, 1]})
    with pytest.raises(ConfigError, match="resize_prob2 must not be all zero"):
        D.build_degradation({"name": "realesrgan", "resize_prob2": [0, 0, 0]})
    custom = D.build_degradation({"name": "realesrgan", "scale": 2, "final_sinc_prob": 0.0})
    assert custom.scale == 2


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
    flair_slice = D.gaussian_blur(_rand(240, 240, seed=5), 2.0)  # any image of the BraTS size
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
    hr = _rand(2, 1, 32, 32)
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


# -- mixed downsampling (the pretrained models' training degradation) ---------------------------
def test_mixed_downsample_draws_each_kind_per_image_and_is_seeded() -> None:
    hr = D.blur_downsample(_rand(24, 1, 32, 32), 1, sigma=1.5)
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
    # the fidelity check of a model trained on it uses antialiased bicubic
    assert deg.downsample_only().to_config() == [D.Bicubic(scale=2).to_config()]


def test_mixed_downsample_probabilities_noise_and_errors() -> None:
    hr = D.blur_downsample(_rand(6, 1, 32, 32), 1, sigma=1.5)
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
