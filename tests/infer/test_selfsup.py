from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.errors import ConfigError
from medsr.infer.selfsup import (
    SelfSupConfig,
    SliceAcquisition,
    ThroughPlaneNet,
    _along,
    _grid_positions,
    cubic_matrix,
    estimate_acquisition,
    profile_matrix,
    self_supervised_upscale,
    through_plane_axis,
)
from medsr.io import read, write
from medsr.io.image import Image
from medsr.transforms.degrade import slice_profile_weights, thick_slices

TINY = SelfSupConfig(steps=4, batch_size=2, patch=16, features=8, num_blocks=1)


def run(image: Image, **options):
    """One thread: several OpenMP threads crawl when other jobs share the CPU."""
    return self_supervised_upscale(image, threads=1, **{"config": TINY, **options})


def phantom(shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """Random overlapping ellipsoids: sharp edges in every direction."""
    g = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    vol = np.zeros(shape, np.float32)
    for _ in range(25):
        c = g.uniform(0, 1, 3) * np.array(shape)
        r = g.uniform(2, 10, 3)
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2
        vol += g.uniform(0.2, 1.0) * (inside < 1)
    return vol


def thick_volume(truth: np.ndarray, step: int, thickness: float) -> Image:
    thick = thick_slices(
        torch.from_numpy(truth), thickness=thickness, gap=step - thickness, axis=0
    ).numpy()
    return Image(
        array=thick,
        spacing=(float(step), 1.0, 1.0),
        origin=(0.0, 0.0, (step - 1) / 2.0),
        modality="MR",
    )


# -- operators ----------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_profile_matrix_agrees_with_the_degradation_for_whole_steps(profile):
    ours = profile_matrix(40, step=5, thickness=4, profile=profile)
    theirs = slice_profile_weights(40, thickness=4, gap=1, profile=profile)
    torch.testing.assert_close(ours, theirs)


def test_profile_matrix_takes_real_steps_and_offsets():
    w = profile_matrix(20, step=2.5, thickness=2.5, profile="rect", offset=0.5)
    assert w.shape == (7, 20)  # floor((20 - 0.5) / 2.5)
    torch.testing.assert_close(w.sum(1), torch.ones(7, dtype=torch.float64))
    # first slice centred at 0.5 + 1.25 = 1.75 covers [0.5, 3.0]: pixels 0..2, half of 0
    torch.testing.assert_close(w[0, :4], torch.tensor([0.2, 0.4, 0.4, 0.0], dtype=torch.float64))


def test_cubic_matrix_interpolates_and_reproduces_linear_ramps():
    m = cubic_matrix(10, torch.tensor([0.0, 3.0, 4.5, 6.25]))
    ramp = torch.arange(10, dtype=torch.float64)
    torch.testing.assert_close(m @ ramp, torch.tensor([0.0, 3.0, 4.5, 6.25], dtype=torch.float64))
    torch.testing.assert_close(m.sum(1), torch.ones(4, dtype=torch.float64))
    # edge samples are replicated outside the source
    torch.testing.assert_close(
        cubic_matrix(4, torch.tensor([-3.0, 7.0])) @ ramp[:4],
        torch.tensor([0.0, 3.0], dtype=torch.float64),
    )


def test_network_upsamples_h_only_and_starts_as_bicubic():
    net = ThroughPlaneNet(scale=3, features=4, num_blocks=1)
    x = torch.rand(2, 1, 12, 9)
    y = net(x)
    assert y.shape == (2, 1, 36, 9)
    bicubic = torch.nn.functional.interpolate(x, size=(36, 9), mode="bicubic")
    torch.testing.assert_close(y, bicubic)
    with torch.no_grad():
        net.tail.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    # sub-pixel rows: row a * 3 + k gets channel k
    torch.testing.assert_close(
        net(x) - bicubic,
        torch.tensor([1.0, 2.0, 3.0]).repeat(12)[None, None, :, None].expand(2, 1, 36, 9),
    )


# -- acquisition and axis ------------------------------------------------------------------------
def test_acquisition_from_header_options_and_default():
    vol = np.zeros((6, 16, 16), np.float32)
    img = Image(array=vol, spacing=(5.0, 1.0, 1.0), metadata={"slice_thickness": 4.0})
    assert estimate_acquisition(img, 0) == SliceAcquisition(spacing=5.0, thickness=4.0)
    assert estimate_acquisition(img, 0, gap=2.0).thickness == 3.0
    assert estimate_acquisition(img, 0, thickness=6.0, profile="rect").gap == -1.0
    plain = Image(array=vol, spacing=(5.0, 1.0, 1.0))
    assert estimate_acquisition(plain, 0).thickness == 5.0  # NIfTI: contiguous slices
    with pytest.raises(ConfigError, match="thickness 3 mm \\+ gap 1 mm"):
        estimate_acquisition(img, 0, thickness=3.0, gap=1.0)
    with pytest.raises(ConfigError, match="thickness must be > 0"):
        estimate_acquisition(plain, 0, gap=6.0)
    with pytest.raises(ConfigError, match="unknown slice profile 'sinc'"):
        estimate_acquisition(plain, 0, profile="sinc")  # type: ignore[arg-type]


def test_through_plane_axis_picks_the_coarsest_and_rejects_bad_inputs():
    vol = np.zeros((16, 10, 16), np.float32)
    assert through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0))) == 1
    assert through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), "1") == 1
    with pytest.raises(ConfigError, match="2D image"):
        through_plane_axis(Image(array=np.zeros((16, 16), np.float32), spacing=(1.0, 1.0)))
    with pytest.raises(ConfigError, match="no through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(ConfigError, match="no through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), 0)
    with pytest.raises(ConfigError, match="'in-plane' is not a through-plane axis"):
        through_plane_axis(Image(array=vol, spacing=(1.0, 4.0, 1.0)), "in-plane")


@pytest.mark.parametrize("target", [0.0, -1.0, 4.0, 9.0, float("nan")])
def test_bad_target_spacing_is_refused(target):
    img = Image(array=np.random.default_rng(0).random((5, 16, 16)), spacing=(4.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="target spacing"):
        run(img, target_spacing=target)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="steps"):
        SelfSupConfig(steps=0)
    with pytest.raises(ConfigError, match="patch"):
        SelfSupConfig(patch=4)


# -- the method ---------------------------------------------------------------------------------
def test_output_geometry_follows_the_slice_axis(tmp_path):
    direction = np.array([[0.0, 0.0, 1.0], [0.6, 0.8, 0.0], [0.8, -0.6, 0.0]])
    rng = np.random.default_rng(1)
    img = Image(
        array=rng.random((20, 6, 18)).astype(np.float32) * 100,
        spacing=(0.8, 3.0, 0.8),
        origin=(10.0, -5.0, 7.0),
        direction=direction,
        modality="MR",
    )
    seen = []
    result = run(img, target_spacing=1.0, progress=lambda d, t: seen.append((d, t)))
    out = result.image
    assert result.axis == 1 and result.acquisition.spacing == 3.0
    assert out.array.shape == (20, 18, 18)  # 6 slices x 3 mm = 18 mm at 1 mm
    assert out.spacing == pytest.approx((0.8, 1.0, 0.8))
    # edges aligned: the first output sample sits (1 - 3) / 2 mm along axis 1 from the input's
    expected = np.asarray(img.origin) + direction[:, 1] * (1.0 - 3.0) / 2.0
    np.testing.assert_allclose(out.origin, expected, atol=1e-9)
    np.testing.assert_allclose(out.direction, direction)
    assert seen[-1] == (TINY.steps + 20 + 18, TINY.steps + 20 + 18)  # steps + both stacks
    assert seen == sorted(seen)
    # through NIfTI: the affine carries the new spacing and origin
    path = tmp_path / "sr.nii.gz"
    write(out, path)
    back = read(path)
    assert back.array.shape == out.array.shape
    np.testing.assert_allclose(back.affine(), out.affine(), atol=1e-4)
    # default target: the in-plane spacing
    default = run(img).image
    assert default.array.shape == (20, 22, 18)  # round(18 mm / 0.8 mm)
    assert default.spacing[1] == pytest.approx(18 / 22)


def test_same_seed_same_result_other_seed_differs():
    img = thick_volume(phantom((16, 24, 24), 3), 4, 4.0)
    a = run(img).image.array
    b = run(img).image.array
    c = run(img, config=SelfSupConfig(**{**TINY.__dict__, "seed": 1})).image.array
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_recovers_thick_slices_better_than_cubic():
    truth = phantom((32, 40, 40), 0)
    img = thick_volume(truth, 4, 4.0)
    config = SelfSupConfig(steps=120, batch_size=8, patch=24, features=16, num_blocks=2)
    result = run(img, target_spacing=1.0, config=config)
    n = img.array.shape[0]
    cubic = _along(
        cubic_matrix(n, _grid_positions(n, 4.0, 32, 1.0)), torch.from_numpy(img.array)
    ).numpy()
    mse_sr = float(((result.image.array - truth) ** 2).mean())
    mse_cubic = float(((cubic - truth) ** 2).mean())
    assert result.image.array.shape == truth.shape
    assert mse_sr < 0.93 * mse_cubic, (mse_sr, mse_cubic)
    assert result.losses[-1] < result.losses[0]
    assert result.fidelity_psnr > 30.0


def test_dipy_anisotropic_volume_runs():
    dipy_data = pytest.importorskip("dipy.data", reason="dipy (the bench extra) is not installed")
    image = read(dipy_data.get_fnames(name="aniso_vox"))
    assert image.spacing == pytest.approx((5.0, 4.0, 4.0))
    result = run(image)
    assert result.axis == 0
    assert result.image.array.shape == (30, 58, 58)  # 24 x 5 mm at 4 mm
    assert np.isfinite(result.image.array).all()


def test_padding_is_kept_exact_and_ct_stays_above_air():
    vol = phantom((8, 20, 20), 5) * 1000 - 1000  # -1000 .. about 0 HU
    vol[:, :, :4] = -3024.0  # padding outside the field of view
    img = Image(array=vol, spacing=(3.0, 1.0, 1.0), modality="CT")
    img = img.replace(metadata={"padding": (-3024.0, -3024.0)})
    out = run(img, target_spacing=1.0).image.array
    assert out.shape == (24, 20, 20)
    assert np.all(out[:, :, :4] == -3024.0)
    assert out[:, :, 4:].min() >= -1024.0
