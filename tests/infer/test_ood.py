from __future__ import annotations

import numpy as np
import pytest

from medsr.infer.model_source import load_model
from medsr.infer.ood import TrainingProfile, check_input, flag_text, training_profile
from medsr.io import Image, read
from medsr.io.image import Source


@pytest.fixture(scope="module")
def model():
    return load_model("medsr-edsr-tiny-x2")


def codes(image, model):
    return [w.code for w in check_input(image, model)]


def ct(array, **changes):
    image = Image(
        array=np.asarray(array, dtype=np.float32),
        spacing=(1.0, 1.0),
        modality="CT",
        source=Source(format="dicom", bits_stored=12, signed=False),
    )
    return image.replace(**changes) if changes else image


def test_the_shipped_models_record_what_they_were_trained_on(model):
    profile = training_profile(model)
    assert profile == TrainingProfile(("CT", "DX", "MR"), False, ("brain", "chest", "spine"))
    assert training_profile(load_model("medsr-edsr-tiny-x4")) == profile


def test_ultrasound_in_colour_is_flagged_twice(dicom_file, model):
    image = read(dicom_file("US1_UNCR.dcm"))
    assert image.modality == "US" and image.color
    warnings = check_input(image, model)
    assert [w.code for w in warnings] == ["modality US", "RGB"]
    assert "never seen in training" in warnings[0].text and "CT, DX, MR" in warnings[0].text
    assert flag_text(warnings) == "OOD: modality US, RGB"


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_ct_and_mr_in_distribution(dicom_file, model, name):
    assert codes(read(dicom_file(name)), model) == []


def test_only_dicom_modalities_are_checked_and_cr_counts_as_dx(model):
    rng = np.random.default_rng(0)
    field = rng.uniform(0.0, 4095.0, (64, 64))  # 12-bit stored values
    assert codes(ct(field, modality="CR"), model) == []
    assert codes(ct(field, modality="PT"), model) == ["modality PT"]
    assert codes(ct(field, modality="OT", source=Source(format="nifti")), model) == []


def test_saturated_intensities_are_flagged(model):
    rng = np.random.default_rng(1)
    hot = rng.normal(6000.0, 500.0, (64, 64))  # far above the wide CT window's 3071 HU
    (warning,) = check_input(ct(hot), model)
    assert warning.code == "intensity"
    assert "100% of the pixels lie outside" in warning.text and "-1024..3071" in warning.text


def test_a_padding_value_below_the_window_is_not_saturation(model):
    rng = np.random.default_rng(2)
    body = rng.normal(0.0, 300.0, (64, 64))
    body[:, :24] = -3024.0  # outside the field of view: 37 % of the pixels
    assert codes(ct(body), model) == []
    body[:, 24:30] = -2500.0  # not the padding value: 9 % really below the window
    assert codes(ct(body), model) == ["intensity"]


def test_almost_no_contrast_is_flagged(model):
    rng = np.random.default_rng(3)
    eight_bit = rng.integers(0, 256, (64, 64)).astype(np.float32)
    image = Image(
        array=eight_bit,
        spacing=(1.0, 1.0),
        modality="DX",
        source=Source(format="dicom", bits_stored=16, signed=False),
    )
    (warning,) = check_input(image, model)
    assert warning.code == "intensity" and "almost no contrast" in warning.text
    twelve = image.replace(source=Source(format="dicom", bits_stored=8, signed=False))
    assert codes(twelve, model) == []


def test_interpolation_has_no_training_data():
    image = ct(np.zeros((16, 16)), modality="US")
    assert check_input(image, load_model("bicubic", scale=2)) == []
