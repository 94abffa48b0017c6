"""Intensity normalisation: round trips on real CT, MR and X-ray data, dict form, fitting."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.errors import ConfigError
from medsr.transforms.intensity import (
    CT_WINDOWS,
    NORMALISERS,
    BitDepthScaling,
    CTWindow,
    MinMax,
    Normaliser,
    PercentileScaling,
    fit_normaliser,
    foreground,
    normaliser_from_dict,
)


def _read_hu(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(path)
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return ds.pixel_array.astype(np.float64) * slope + intercept


@pytest.fixture(scope="module")
def chest_ct(shared_data: Path) -> np.ndarray:
    """Three axial slices of the TCIA chest CT in HU, (3, 512, 512)."""
    files = sorted((shared_data / "chest-ct" / "A0001").glob("*.dcm"))
    if not files:
        pytest.skip("chest CT series is absent")
    return np.stack([_read_hu(f) for f in files[30:33]]).astype(np.float32)


# -- CT ----------------------------------------------------------------------------------------
def test_ct_wide_window_round_trip_on_a_real_series(chest_ct: np.ndarray) -> None:
    normaliser = fit_normaliser(chest_ct, modality="CT")
    assert normaliser == CTWindow.named("wide")
    unit = normaliser.forward(chest_ct)
    assert unit.dtype == np.float32 and unit.shape == chest_ct.shape
    assert unit.min() >= 0.0 and unit.max() <= 1.0
    assert float(unit.min()) == pytest.approx((chest_ct.min() + 1024) / 4095)
    back = normaliser.inverse(unit)
    assert np.abs(back - chest_ct).max() < 1e-3  # HU, float32 precision
    assert np.array_equal(np.round(back), chest_ct)  # the stored integers come back exactly


def test_ct_named_window_clips_and_the_unclipped_variant_inverts(chest_ct: np.ndarray) -> None:
    lung = CTWindow.named("lung")
    assert (lung.low, lung.high) == (-1350.0, 150.0)
    unit = lung.forward(chest_ct)
    assert unit.max() == 1.0  # bone and soft tissue above 150 HU
    assert float(unit.min()) == pytest.approx((-1024 + 1350) / 1500)  # air at -1024 HU
    back = lung.inverse(unit)
    inside = (chest_ct >= -1350) & (chest_ct <= 150)
    assert np.abs(back - chest_ct)[inside].max() < 1e-3
    assert np.all(back[chest_ct > 150] == pytest.approx(150.0))  # clipping is not invertible
    linear = CTWindow.named("lung", clip=False)
    unclipped = linear.forward(chest_ct)
    assert unclipped.max() > 1.0
    assert np.abs(linear.inverse(unclipped) - chest_ct).max() < 1e-3


def test_ct_windows_table_and_level_width() -> None:
    assert set(CT_WINDOWS) == {"wide", "lung", "mediastinum", "bone", "brain"}
    for name, (low, high) in CT_WINDOWS.items():
        window = CTWindow.named(name)
        assert window.forward(np.array([low, high])).tolist() == [0.0, 1.0]
    brain = CTWindow.from_level_width(40, 80)
    assert (brain.low, brain.high, brain.window) == (0.0, 80.0, None)
    assert fit_normaliser(np.zeros(3), modality="CT", window="bone") == CTWindow.named("bone")
    custom = fit_normaliser(np.zeros(3), modality="CT", window=(-100, 300), clip=False)
    assert (custom.low, custom.high, custom.clip) == (-100.0, 300.0, False)
    with pytest.raises(ConfigError, match="lung, mediastinum"):
        CTWindow.named("abdomen")


def test_ct_small_dicom_round_trip(dicom_file) -> None:
    hu = _read_hu(dicom_file("CT_small.dcm"))
    normaliser = fit_normaliser(hu, modality="CT", clip=False)
    assert np.allclose(normaliser.inverse(normaliser.forward(hu)), hu, atol=1e-9)  # float64


# -- MR ----------------------------------------------------------------------------------------
def test_mr_percentiles_over_the_foreground_of_a_real_volume(flair_volume: np.ndarray) -> None:
    normaliser = fit_normaliser(flair_volume, modality="MR")
    assert isinstance(normaliser, PercentileScaling)
    brain = flair_volume[flair_volume > flair_volume.min()]
    low, high = np.percentile(brain, [0.5, 99.5])
    assert normaliser.low == pytest.approx(low) and normaliser.high == pytest.approx(high)
    unit = normaliser.forward(flair_volume)
    assert unit.min() == 0.0 and unit.max() == 1.0
    assert np.all(unit[flair_volume == flair_volume.min()] == 0.0)  # background -> 0
    inside = (flair_volume >= low) & (flair_volume <= high)
    assert inside[flair_volume > flair_volume.min()].mean() > 0.98
    back = normaliser.inverse(unit)
    assert np.abs(back - flair_volume)[inside].max() < 1e-5
    linear = fit_normaliser(flair_volume, modality="MRI", clip=False)
    assert np.abs(linear.inverse(linear.forward(flair_volume)) - flair_volume).max() < 1e-5


def test_mr_percentiles_with_a_mask_and_custom_percentiles(
    shared_data: Path, flair_volume: np.ndarray
) -> None:
    nibabel = pytest.importorskip("nibabel")
    mask_path = shared_data / "brain-mri-brats2013" / "pat0003" / "brainmask.nii.gz"
    mask = np.asarray(nibabel.load(mask_path).dataobj) > 0
    normaliser = fit_normaliser(flair_volume, modality="MR", mask=mask, percentiles=(1, 99))
    low, high = np.percentile(flair_volume[mask], [1, 99])
    assert (normaliser.p_low, normaliser.p_high) == (1.0, 99.0)
    assert normaliser.low == pytest.approx(low) and normaliser.high == pytest.approx(high)
    with pytest.raises(ConfigError, match="mask shape"):
        fit_normaliser(flair_volume, modality="MR", mask=mask[:10])


def test_mr_spine_uint16_volume_round_trip(shared_data: Path) -> None:
    path = shared_data / "spine-mri" / "IVD_11.npz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    volume = np.load(path)["image"]
    assert volume.dtype == np.uint16
    normaliser = fit_normaliser(volume, modality="MR", clip=False)
    unit = normaliser.forward(volume)
    assert unit.dtype == np.float32
    assert np.mean((unit >= 0) & (unit <= 1)) > 0.99
    assert np.array_equal(np.round(normaliser.inverse(unit)), volume)


def test_foreground_rule() -> None:
    padded = np.zeros((10, 10))
    padded[2:8, 2:8] = np.arange(36).reshape(6, 6) + 1
    assert foreground(padded).sum() == 36
    noisy = np.arange(100.0).reshape(10, 10)  # no constant background: all but the minimum
    assert foreground(noisy).sum() == 99
    almost_blank = np.zeros(1000)
    almost_blank[0] = 1.0
    assert foreground(almost_blank).sum() == 1000  # < 1 % above the minimum: use everything


# -- X-ray -------------------------------------------------------------------------------------
def test_xray_png_bit_depth_round_trip(shared_data: Path) -> None:
    from PIL import Image

    path = shared_data / "chest-xray" / "cxr-01.png"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    normaliser = fit_normaliser(pixels, modality="DX", bits_stored=8)
    assert normaliser == BitDepthScaling(bits_stored=8)
    unit = normaliser.forward(pixels)
    assert np.allclose(unit, pixels / 255.0)
    assert np.array_equal(np.round(normaliser.inverse(unit)).astype(np.uint8), pixels)


def test_xray_dicom_bits_stored(dicom_file, caplog: pytest.LogCaptureFixture) -> None:
    import pydicom

    ds = pydicom.dcmread(dicom_file("RG3_UNCR.dcm"))
    pixels = ds.pixel_array
    normaliser = fit_normaliser(pixels, modality=ds.Modality, bits_stored=int(ds.BitsStored))
    assert normaliser.bounds == (0.0, 1023.0)
    unit = normaliser.forward(pixels)
    assert unit.max() == 1.0
    assert np.array_equal(np.round(normaliser.inverse(unit)), pixels)
    with caplog.at_level(logging.WARNING):
        inferred = fit_normaliser(pixels, modality="CR")
    assert inferred.bits_stored == 10 and "inferred 10" in caplog.text
    signed = BitDepthScaling(bits_stored=12, signed=True)
    assert signed.bounds == (-2048.0, 2047.0)
    with pytest.raises(ConfigError, match="bits_stored"):
        fit_normaliser(np.array([0.5, 1.5]), modality="DX")


# -- generic, tensors, dict form ---------------------------------------------------------------
def test_minmax_fallback_and_constant_image() -> None:
    photo = np.array([[3.0, 7.0], [5.0, 11.0]])
    normaliser = fit_normaliser(photo, modality="OT")
    assert normaliser == MinMax(low=3.0, high=11.0)
    assert np.allclose(normaliser.inverse(normaliser.forward(photo)), photo)
    flat = fit_normaliser(np.full((4, 4), 2.0), modality="US")
    assert np.all(flat.forward(np.full((4, 4), 2.0)) == 0.0)
    assert fit_normaliser(np.arange(4.0), modality="CT", method="minmax").kind == "minmax"
    with pytest.raises(ConfigError, match="auto, ct_window, percentile"):
        fit_normaliser(photo, modality="CT", method="zscore")  # type: ignore[arg-type]


def test_tensors_and_arrays_give_the_same_values() -> None:
    values = np.array([-1200.0, -1000.0, 0.0, 500.0, 4000.0], dtype=np.float32)
    for normaliser in (CTWindow.named("wide"), CTWindow.named("bone", clip=False)):
        from_numpy = normaliser.forward(values)
        from_torch = normaliser.forward(torch.from_numpy(values))
        assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
        assert np.allclose(from_torch.numpy(), from_numpy)
        assert np.allclose(normaliser.inverse(from_torch).numpy(), normaliser.inverse(from_numpy))
    as_int = CTWindow.named("wide").forward(torch.tensor([0, 1000], dtype=torch.int16))
    assert as_int.dtype == torch.float32
    double = CTWindow.named("wide").forward(values.astype(np.float64))
    assert double.dtype == np.float64


def test_dict_form_is_json_and_round_trips() -> None:
    examples: list[Normaliser] = [
        CTWindow.named("mediastinum"),
        CTWindow.from_level_width(-600, 1600, clip=False),
        PercentileScaling(low=-2.5, high=6.25, p_low=1.0, p_high=99.0),
        BitDepthScaling(bits_stored=12, signed=True),
        MinMax(low=0, high=255, clip=False),
    ]
    assert {n.kind for n in examples} == set(NORMALISERS)
    for normaliser in examples:
        data = json.loads(json.dumps(normaliser.to_dict()))
        assert data["kind"] == normaliser.kind
        restored = normaliser_from_dict(data)
        assert restored == normaliser and type(restored) is type(normaliser)
        assert Normaliser.from_dict(data) == normaliser
    assert CTWindow.named("wide").to_dict() == {
        "kind": "ct_window",
        "low": -1024.0,
        "high": 3071.0,
        "clip": True,
        "window": "wide",
    }


def test_dict_form_is_checked() -> None:
    with pytest.raises(ConfigError, match="valid: ct_window, percentile, bit_depth, minmax"):
        normaliser_from_dict({"kind": "zscore"})
    with pytest.raises(ConfigError, match=r"unknown key.*'offset'.*valid keys: kind, low, high"):
        normaliser_from_dict({"kind": "minmax", "low": 0, "high": 1, "offset": 2})
    with pytest.raises(ConfigError, match=r"missing key.*'high'"):
        normaliser_from_dict({"kind": "percentile", "low": 0})
    with pytest.raises(ConfigError, match="high must be > low"):
        MinMax(low=5, high=5)
    with pytest.raises(ConfigError, match="clip must be true or false"):
        normaliser_from_dict({"kind": "minmax", "low": 0, "high": 1, "clip": "yes"})
    with pytest.raises(ConfigError, match="bits_stored"):
        BitDepthScaling(bits_stored=0)
    with pytest.raises(ConfigError, match="p_low < p_high"):
        PercentileScaling(low=0, high=1, p_low=60, p_high=40)
    with pytest.raises(ConfigError, match="kind 'minmax' given to CTWindow"):
        CTWindow.from_dict({"kind": "minmax", "low": 0, "high": 1})
