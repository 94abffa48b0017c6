from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medsr.errors import ConfigError
from medsr.infer.model_source import load_model
from medsr.infer.safety import (
    ConsistencyOptions,
    back_project,
    bicubic_upsample,
    consistency_map,
    degrade_array,
    describe_summary,
    map_paths,
)
from medsr.infer.upscale import upscale_image
from medsr.io import Image
from medsr.transforms.degrade import Bicubic, Degradation

D2 = Degradation((Bicubic(scale=(2, 2), antialias=True, clip=False),))
D2_AXIS = Degradation((Bicubic(scale=(2, 1), antialias=True, clip=False),))


def smooth(shape, seed=0):
    """A smooth random field in [0, 1] (real images are mostly low-frequency)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 1, *shape[-2:]), generator=g)
    x = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    out = x[0, 0].numpy()
    if len(shape) == 3:
        out = np.stack([np.roll(out, k, axis=0) for k in range(shape[0])])
    return out.astype(np.float32)


def test_back_project_makes_the_output_reproduce_its_input():
    hr = smooth((64, 64))
    lr = degrade_array(hr, D2, axis=None, color=False).numpy()
    rng = np.random.default_rng(0)
    sr = bicubic_upsample(lr, 2, axis=None, color=False).numpy() + rng.normal(0, 0.02, hr.shape)
    fixed, report = back_project(
        sr, lr, D2, scale=2, options=ConsistencyOptions(tolerance=1e-4, max_iterations=20)
    )
    assert report.rms_before > 0.005  # the noisy start is far from consistent
    assert report.converged and report.rms_after <= 1e-4 and 1 <= report.iterations <= 20
    again = degrade_array(fixed, D2, axis=None, color=False).numpy()
    assert np.sqrt(np.mean((again - lr) ** 2)) == pytest.approx(report.rms_after, rel=1e-3)
    assert fixed.shape == sr.shape and fixed.dtype == np.float32


def test_back_project_leaves_a_consistent_output_alone():
    hr = smooth((32, 32))
    lr = degrade_array(hr, D2, axis=None, color=False).numpy()
    fixed, report = back_project(hr, lr, D2, scale=2, options=ConsistencyOptions(tolerance=0.01))
    assert report.iterations == 0 and report.converged
    np.testing.assert_array_equal(fixed, hr)


def test_back_project_stops_at_max_iterations():
    hr = smooth((32, 32))
    lr = degrade_array(hr, D2, axis=None, color=False).numpy()
    start = np.zeros_like(hr)
    _, report = back_project(
        start, lr, D2, scale=2, options=ConsistencyOptions(tolerance=0.0, max_iterations=2)
    )
    assert report.iterations == 2 and not report.converged
    assert report.rms_after < report.rms_before


def test_back_project_through_plane_acts_along_the_axis_only():
    hr = smooth((8, 16, 16))
    lr = degrade_array(hr, D2_AXIS, axis=0, color=False).numpy()
    assert lr.shape == (4, 16, 16)
    sr = bicubic_upsample(lr, 2, axis=0, color=False).numpy()
    assert sr.shape == (8, 16, 16)
    fixed, report = back_project(sr, lr, D2_AXIS, scale=2, axis=0)
    assert fixed.shape == (8, 16, 16) and report.rms_after < report.rms_before
    assert report.rms_after <= ConsistencyOptions().tolerance or report.iterations == 10


def test_back_project_colour_images_per_channel():
    hr = np.stack([smooth((32, 32), seed=k) for k in range(3)], axis=-1)
    lr = degrade_array(hr, D2, axis=None, color=True).numpy()
    assert lr.shape == (16, 16, 3)
    fixed, report = back_project(np.zeros_like(hr), lr, D2, scale=2, color=True)
    assert fixed.shape == (32, 32, 3) and report.rms_after < report.rms_before


def test_back_project_refuses_a_degradation_of_another_scale():
    hr = smooth((32, 32))
    lr = degrade_array(hr, D2, axis=None, color=False).numpy()
    d4 = Degradation((Bicubic(scale=(4, 4), antialias=True, clip=False),))
    with pytest.raises(ConfigError, match=r"\(4, 4\)"):
        back_project(hr, lr, d4, scale=2)


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [({"tolerance": -1.0}, "-1.0"), ({"max_iterations": 0}, "0"), ({"step": 3.0}, "3.0")],
)
def test_consistency_options_name_the_bad_value(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        ConsistencyOptions(**kwargs)


def ct_image(shape=(2, 48, 48)) -> Image:
    field = smooth(shape) * 2000.0 - 1000.0  # HU
    return Image(array=field.astype(np.float32), spacing=(2.0, 1.0, 1.0), modality="CT")


def test_upscale_with_consistency_reaches_the_tolerance():
    image = ct_image()
    plain = upscale_image(image, "medsr-edsr-tiny-x2", device="cpu")
    fixed = upscale_image(
        image, "medsr-edsr-tiny-x2", device="cpu", consistency=ConsistencyOptions()
    )
    assert plain.projection is None and fixed.projection is not None
    assert fixed.projection.converged
    assert fixed.fidelity_psnr >= 79.0 > plain.fidelity_psnr
    assert fixed.summary()["consistency"]["iterations"] == fixed.projection.iterations
    # the correction is small next to the image: a few HU, not a new image
    assert float(np.abs(fixed.image.array - plain.image.array).mean()) < 10.0


def test_consistency_map_is_in_physical_units_and_finds_the_worst_region():
    image = ct_image()
    result = upscale_image(image, load_model("bicubic", scale=2), device="cpu")
    sr = result.image.array.copy()
    sr[1, 60:68, 20:28] += 300.0  # invented structure: slice 1, input rows 30-33, cols 10-13
    output = result.image.replace(array=sr)
    maps = consistency_map(result, image, output=output)
    direct = np.abs(degrade_array(sr, D2, axis=None, color=False).numpy() - image.array)
    np.testing.assert_allclose(maps.error, direct, atol=1e-2)  # HU, no normalisation left
    assert maps.error.shape == image.array.shape
    assert maps.error_on_output.shape == sr.shape
    np.testing.assert_array_equal(maps.error_on_output[:, ::2, ::2], maps.error)
    worst = maps.summary["worst"]
    assert worst["slice"] == 1
    assert 28 <= worst["row"] <= 35 and 8 <= worst["column"] <= 15
    assert maps.summary["units"] == "HU" and maps.summary["p99"] <= maps.summary["max"]
    assert maps.summary["max"] > 50.0  # most of a 300 HU bump survives a 2x2 average
    bicubic_only = consistency_map(result, image)
    assert bicubic_only.summary["max"] < maps.summary["max"]
    np.testing.assert_allclose(bicubic_only.sr_minus_bicubic, 0.0, atol=1e-2)
    assert float(maps.sr_minus_bicubic[1, 60:68, 20:28].mean()) == pytest.approx(300.0, abs=1e-2)
    text = describe_summary(maps.summary)
    assert "HU" in text and f"slice 1, row {worst['row']}" in text
    assert math.isfinite(maps.summary["fidelity_psnr"])


def test_consistency_map_through_plane():
    image = ct_image((4, 20, 20))
    bicubic = load_model("bicubic", scale=2)
    result = upscale_image(image, bicubic, axis="through-plane", device="cpu")
    maps = consistency_map(result, image)
    assert maps.error.shape == (4, 20, 20)
    assert maps.error_on_output.shape == (8, 20, 20) == maps.sr_minus_bicubic.shape


def test_map_paths_sit_beside_the_output(tmp_path):
    nifti = map_paths(tmp_path / "brain.nii.gz")
    assert nifti["consistency"] == tmp_path / "brain-consistency.nii.gz"
    assert nifti["sr-minus-bicubic"] == tmp_path / "brain-sr-minus-bicubic.nii.gz"
    assert nifti["summary"] == tmp_path / "brain-consistency.json"
    series = map_paths(tmp_path / "ct")
    assert series["consistency"] == tmp_path / "ct-consistency"
