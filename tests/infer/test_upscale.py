from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medsr import samples
from medsr.errors import ConfigError
from medsr.infer import NormalisationPolicy, load_model, upscale_image, wrap_module
from medsr.infer.upscale import fit_to_output, stored_range
from medsr.io import Image, read
from medsr.transforms.intensity import CTWindow


class Nearest(nn.Module):
    """Pixel replication with ``in_channels`` inputs; 2.5D/RGB variants record their inputs."""

    def __init__(self, scale=2, in_channels=1, out_channels=1, pick=None):
        super().__init__()
        self.scale, self.in_channels, self.out_channels, self.pick = (
            scale,
            in_channels,
            out_channels,
            pick,
        )
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        if self.pick is not None:
            x = x[:, self.pick : self.pick + 1]
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


@pytest.fixture(scope="module")
def ct():
    return read(samples.path("chest-ct"))


def test_ct_series_stays_in_hu(ct):
    lanczos = upscale_image(ct, "lanczos")
    bicubic = upscale_image(ct, load_model("bicubic", scale=2))
    out = lanczos.image
    assert out.array.shape == (3, 1024, 1024) and out.array.dtype == np.float32
    assert out.spacing == pytest.approx((5.0, ct.spacing[1] / 2, ct.spacing[2] / 2))
    assert out.source is ct.source and out.modality == "CT"
    np.testing.assert_allclose(out.array[:, :40, :40], -1024.0, atol=0.5)  # air stays air
    assert abs(float(out.array.mean()) - float(ct.array.mean())) < 2.0
    assert abs(float(out.array.mean()) - float(bicubic.image.array.mean())) < 1.0
    assert isinstance(lanczos.normaliser, CTWindow) and lanczos.normaliser.clip is False
    assert lanczos.fidelity_psnr > 35 and set(lanczos.timings) >= {"model", "fidelity", "total"}


def test_values_outside_the_window_survive_unless_the_model_says_clip():
    array = np.full((16, 16), 40.0, np.float32)
    array[4:8, 4:8] = 4000.0  # metal, above the wide window (3071 HU)
    array[10:12, 10:12] = -2000.0  # below it (outside the field of view)
    image = Image(array, spacing=(0.5, 0.5), modality="CT")
    out = upscale_image(image, wrap_module(Nearest())).image.array
    np.testing.assert_allclose(out, np.kron(array, np.ones((2, 2))), atol=1e-3)
    clipping = wrap_module(Nearest(), normalisation={"method": "auto", "clip": True})
    clipped = upscale_image(image, clipping).image.array
    assert clipped.max() == pytest.approx(3071.0) and clipped.min() == pytest.approx(-1024.0)


def test_2_5d_models_get_neighbouring_slices_with_replicated_edges():
    vol = np.stack([np.full((6, 5), z, np.float32) for z in range(4)])
    image = Image(vol, spacing=(2, 1, 1), modality="OT")
    net = Nearest(in_channels=3, pick=0)  # predicts from the previous slice
    out = upscale_image(image, wrap_module(net), batch_size=2).image.array
    expected = [0, 0, 1, 2]  # slice z sees z-1, the first slice its own copy
    for z, src in enumerate(expected):
        np.testing.assert_allclose(out[z], float(src), atol=1e-5)
    first = net.seen[0][0]  # (3, H, W) for slice 0: [0, 0, 1] after normalisation
    assert torch.equal(first[0], first[1]) and not torch.equal(first[1], first[2])


def test_colour_images_run_channel_by_channel_with_a_grey_model():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (12, 10, 3)).astype(np.float32)
    image = Image(rgb, spacing=(1, 1), color=True)
    out = upscale_image(image, load_model("bicubic", scale=2)).image
    assert out.color and out.array.shape == (24, 20, 3)
    for c in range(3):  # bicubic is linear, so any normalisation gives the same result
        grey = upscale_image(Image(rgb[..., c], spacing=(1, 1)), "bicubic").image.array
        np.testing.assert_allclose(out.array[..., c], grey, atol=1e-3)


def test_rgb_models_get_rgb_or_replicated_grey():
    rgb_net = Nearest(in_channels=3, out_channels=3)
    model = wrap_module(rgb_net)
    colour = Image(
        np.random.default_rng(0).random((8, 8, 3), dtype=np.float32), spacing=(1, 1), color=True
    )
    out = upscale_image(colour, model).image.array
    np.testing.assert_allclose(out, colour.array.repeat(2, 0).repeat(2, 1), atol=1e-5)
    grey = Image(np.arange(64, dtype=np.float32).reshape(8, 8), spacing=(1, 1))
    out = upscale_image(grey, model).image.array
    x = rgb_net.seen[-1]
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])
    np.testing.assert_allclose(out, np.kron(grey.array, np.ones((2, 2))), atol=1e-4)


def test_fidelity_is_lower_for_a_model_that_invents_structure():
    class Inventive(nn.Module):
        """Bicubic plus bright 7x7 spots that the input never showed."""

        scale, in_channels, out_channels = 2, 1, 1

        def forward(self, x):
            y = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
            spots = torch.zeros_like(y)
            spots[..., 8::24, 8::24] = 0.6
            return y + F.max_pool2d(spots, 7, stride=1, padding=3)

    mri = read(samples.path("brain-mri"))
    honest = upscale_image(mri, load_model("bicubic", scale=2)).fidelity_psnr
    inventive = upscale_image(mri, wrap_module(Inventive())).fidelity_psnr
    assert inventive < honest - 10


def test_fidelity_is_infinite_when_the_output_explains_the_input_exactly():
    # nearest upsampling, then the 2x2 mean of bilinear x2: exactly the input again
    image = Image(np.random.default_rng(1).random((10, 12), dtype=np.float32), spacing=(1, 1))
    model = wrap_module(Nearest(), degradation=[{"name": "bilinear", "scale": 2}])
    assert math.isinf(upscale_image(image, model).fidelity_psnr)


def test_through_plane_geometry_and_values():
    rng = np.random.default_rng(2)
    vol = rng.random((4, 6, 5)).astype(np.float32)
    image = Image(vol, spacing=(5.0, 0.8, 0.7), origin=(10.0, 20.0, 30.0), modality="MR")
    result = upscale_image(
        image, load_model("nearest", scale=2), axis="through-plane", tile=4, overlap=1
    )
    out = result.image
    assert out.array.shape == (8, 6, 5) and out.spacing == pytest.approx((2.5, 0.8, 0.7))
    # the first slice centre moves half a new slice back towards the old first edge
    shift = image.direction[:, 0] * (2.5 - 5.0) / 2
    np.testing.assert_allclose(out.origin, np.asarray(image.origin) + shift)
    # nearest planes, area-reduced in-plane, averaged over both orientations: slice repeat
    np.testing.assert_allclose(out.array, vol.repeat(2, axis=0), atol=1e-5)
    assert result.axis == "through-plane (axis 0)" and math.isfinite(result.fidelity_psnr)
    other = upscale_image(image, load_model("nearest", scale=3), axis=2).image
    assert other.array.shape == (4, 6, 15) and other.spacing[2] == pytest.approx(0.7 / 3)


def test_through_plane_needs_a_volume_and_warns_about_a_coarser_axis(caplog):
    with pytest.raises(ConfigError, match="no slice axis"):
        upscale_image(
            Image(np.zeros((8, 8), np.float32), spacing=(1, 1)), "nearest", axis="through-plane"
        )
    with pytest.raises(ConfigError, match="unknown axis"):
        upscale_image(
            Image(np.zeros((2, 8, 8), np.float32), spacing=(1, 1, 1)), "nearest", axis="sideways"
        )
    image = Image(np.zeros((8, 8, 3), np.float32), spacing=(1, 1, 6))
    with caplog.at_level(logging.WARNING):
        upscale_image(image, "nearest", axis="through-plane")
    assert "--axis 2" in caplog.text


def test_masks_progress_and_summary():
    mask = np.zeros((2, 6, 6), bool)
    mask[:, 1:3, 2:4] = True
    image = Image(np.ones((2, 6, 6), np.float32), spacing=(1, 1, 1), mask=mask)
    calls = []
    result = upscale_image(
        image,
        "nearest",
        tile=4,
        overlap=1,
        batch_size=1,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result.image.mask.shape == (2, 12, 12) and result.image.mask.sum() == 4 * mask.sum()
    assert calls[-1][0] == calls[-1][1] and len(calls) == calls[-1][1]
    assert result.summary()["output_shape"] == [2, 12, 12]


def test_fit_to_output_keeps_the_source_bit_depth(ct):
    xray = read(samples.path("chest-xray"))
    sr = upscale_image(xray.replace(array=xray.array[:64, :64]), "lanczos").image
    assert stored_range(sr, "png") == (0.0, 255.0, True)
    fitted, clipped = fit_to_output(sr, "png")
    assert fitted.array.min() >= 0 and fitted.array.max() <= 255
    np.testing.assert_array_equal(fitted.array, np.rint(fitted.array))
    assert clipped == int(((sr.array < 0) | (sr.array > 255)).sum())
    low, high, integer = stored_range(ct, "dicom")
    assert (low, high, integer) == (-1024.0, 3071.0, False)
    assert stored_range(ct, "nifti") is None  # float output keeps everything
    mri = read(samples.path("brain-mri"))
    assert fit_to_output(mri, "nifti") == (mri, 0)


def test_fixed_normaliser_policy_is_used_as_is():
    array = np.linspace(0, 100, 64, dtype=np.float32).reshape(8, 8)
    policy = NormalisationPolicy(normaliser=CTWindow(low=-50, high=150, clip=False, window=None))
    model = wrap_module(Nearest(), normalisation=policy)
    result = upscale_image(Image(array, spacing=(1, 1), modality="CT"), model)
    assert result.normaliser == policy.normaliser
    np.testing.assert_allclose(result.image.array, np.kron(array, np.ones((2, 2))), atol=1e-4)


def test_fidelity_falls_back_when_the_training_degradation_does_not_fit(caplog):
    image = Image(np.random.default_rng(3).random((2, 8, 10), dtype=np.float32), spacing=(3, 1, 1))
    thick = [{"name": "thick_slice", "thickness": 2.0}]  # factors (2, 1): a through-plane one
    model = wrap_module(Nearest(), degradation=thick)
    with caplog.at_level(logging.WARNING):
        in_plane = upscale_image(image, model)
    assert "antialiased bicubic instead" in caplog.text and math.isfinite(in_plane.fidelity_psnr)
    through = upscale_image(image, model, axis="through-plane")
    assert through.image.array.shape == (4, 8, 10) and math.isfinite(through.fidelity_psnr)


def test_tiles_are_automatic_whole_planes_unless_memory_needs_them():
    from medsr.infer.upscale import resolve_tile
    from medsr.models import build_generator

    torch.manual_seed(0)
    module = build_generator("edsr", {"scale": 2, "num_features": 16, "num_blocks": 1})
    model = wrap_module(module.eval())
    per_pixel = model.activation_bytes_per_pixel()
    # the widest activation: 16 features x 4 (the x2 sub-pixel conv), float32, 3 alive
    assert per_pixel == pytest.approx(3 * 4 * 16 * 4)
    assert resolve_tile(None, model, 512, 512) == 0  # a slice fits: no tiles
    assert resolve_tile(192, model, 512, 512) == 192 and resolve_tile(0, model, 9999, 9999) == 0
    budget = int(300 * 300 * per_pixel)
    tile = resolve_tile(None, model, 1024, 1024, budget=budget)
    assert tile % 32 == 0 and 256 <= tile <= 300  # the largest tile that fits
    assert resolve_tile(None, model, 1024, 1024, budget=1) == 64  # never below 64
    # the automatic default gives the same output as whole planes (the small model's receptive
    # field is within the overlap), tiled or not
    image = Image(np.random.default_rng(0).random((40, 48), dtype=np.float32) * 100, (1.0, 1.0))
    whole = upscale_image(image, model, tile=0).image.array
    auto = upscale_image(image, model).image.array
    assert np.array_equal(whole, auto)


def test_nan_or_inf_in_the_input_is_refused_before_any_model_runs(tmp_path):
    from medsr.errors import NonFiniteInputError
    from medsr.infer.selfsup import self_supervised_upscale

    array = np.ones((3, 16, 16), np.float32)
    array[1, 2, 3], array[2, 5, 5] = np.nan, -np.inf
    image = Image(array, spacing=(3.0, 1.0, 1.0), modality="MR")
    for model in ("bicubic", "nearest"):
        with pytest.raises(NonFiniteInputError, match=r"2 of 768 values are NaN or infinite"):
            upscale_image(image, model)
    with pytest.raises(NonFiniteInputError, match="2 of 768"):
        self_supervised_upscale(image)
    assert upscale_image(image.replace(array=np.nan_to_num(array)), "nearest").image.array.shape


def test_ct_padding_stays_exact_padding_and_never_feeds_the_model(dicom_file, tmp_path):
    import pydicom

    from medsr.io import write

    path = dicom_file("693_J2KR.dcm")  # PixelPaddingValue -2000 (stored) = -3024 HU
    source = read(path)
    padding = source.array == -3024.0
    seen = []

    class Spy(nn.Module):
        scale, in_channels, out_channels = 2, 1, 1

        def forward(self, x):
            seen.append(float(x.min()))
            return F.interpolate(x, scale_factor=2, mode="bicubic")

    result = upscale_image(source, wrap_module(Spy()), tile=None)
    out = result.image.array
    # the network saw the lowest non-padding value (-1024 HU) at the padding, not -3024 HU
    low, _ = result.normaliser.bounds
    assert min(seen) >= float(result.normaliser.forward(np.float32(-1024.0))) - 1e-6
    assert low == -1024.0
    up = np.repeat(np.repeat(padding, 2, 0), 2, 1)
    assert np.all(out[up] == -3024.0)  # exact padding on the new grid
    assert out[~up].min() >= -1024.0  # nothing between padding and air, no noise below
    # written back, the padding is the header's PixelPaddingValue again
    [written] = write(result.image, tmp_path / "sr.dcm")
    ds = pydicom.dcmread(written)
    assert int(ds.PixelPaddingValue) == -2000
    assert np.count_nonzero(ds.pixel_array == -2000) == 4 * np.count_nonzero(padding)


def test_ct_output_never_goes_below_air():
    array = np.full((16, 16), -1000.0, np.float32)
    array[6:10, 6:10] = 1500.0  # a sharp bright square: bicubic rings below -1000 HU
    image = Image(array, spacing=(1, 1), modality="CT")
    assert upscale_image(image, load_model("bicubic", scale=2)).image.array.min() == -1024.0
    other = image.replace(modality="MR")
    assert upscale_image(other, load_model("bicubic", scale=2)).image.array.min() < -1024.0
