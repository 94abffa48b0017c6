from __future__ import annotations

import numpy as np
import pytest

from medsr.errors import GeometryError
from medsr.io import Image


def test_array_becomes_float32_and_geometry_is_validated():
    image = Image(array=np.arange(12, dtype=np.uint16).reshape(3, 4), spacing=(0.5, 0.25))
    assert image.array.dtype == np.float32
    assert image.spatial_shape == (3, 4) and not image.is_volume
    with pytest.raises(GeometryError, match="spacing"):
        Image(array=np.zeros((3, 4)), spacing=(1.0,))
    with pytest.raises(GeometryError, match="positive"):
        Image(array=np.zeros((3, 4)), spacing=(0.0, 1.0))
    with pytest.raises(GeometryError, match="axes"):
        Image(array=np.zeros(5), spacing=(1.0,))
    with pytest.raises(GeometryError, match="mask shape"):
        Image(array=np.zeros((3, 4)), spacing=(1, 1), mask=np.zeros((4, 3)))
    with pytest.raises(GeometryError, match="unit"):
        Image(array=np.zeros((3, 4)), spacing=(1, 1), direction=np.ones((3, 2)))


def test_colour_image_keeps_channels_out_of_geometry():
    image = Image(array=np.zeros((5, 6, 3)), spacing=(1, 1), color=True)
    assert image.spatial_shape == (5, 6) and image.ndim == 2
    with pytest.raises(GeometryError, match="trailing axis of 3"):
        Image(array=np.zeros((5, 6, 4)), spacing=(1, 1), color=True)


def test_affine_maps_voxels_to_patient_space():
    # columns are the LPS directions of the array axes (Z, Y, X): Z->S, Y->P, X->L
    direction = np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])
    image = Image(
        array=np.zeros((4, 5, 6)), spacing=(3.0, 2.0, 1.0), origin=(10, 20, 30), direction=direction
    )
    affine = image.affine()
    point = affine @ np.array([1, 2, 3, 1.0])
    # Z step 3 mm along column 0 = (0, 0, 1); Y 2 mm along (0, 1, 0); X 1 mm along (1, 0, 0)
    np.testing.assert_allclose(point[:3], [10 + 3, 20 + 4, 30 + 3])
    assert image.orientation_code() == "SPL"


def test_regrid_keeps_the_field_of_view():
    image = Image(array=np.zeros((2, 10, 20)), spacing=(5.0, 0.8, 0.4), origin=(0, 0, 0))
    sr = image.regrid(np.zeros((2, 40, 80)))
    assert sr.spacing == (5.0, 0.2, 0.1)
    # first pixel centre moves half an old pixel minus half a new pixel towards the corner
    np.testing.assert_allclose(sr.origin, [(0.1 - 0.4) / 2, (0.2 - 0.8) / 2, 0.0])

    # the outer edges of the grid coincide
    def edges(im):
        first = np.asarray(im.origin) - im.direction @ (np.asarray(im.spacing) / 2)
        last = first + im.direction @ (np.asarray(im.spacing) * np.asarray(im.spatial_shape))
        return first, last

    for a, b in zip(edges(image), edges(sr), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-9)
    with pytest.raises(GeometryError):
        image.regrid(np.zeros((40, 80)))


def test_describe_has_the_info_keys():
    image = Image(array=np.array([[1.0, -2.0], [np.nan, 4.0]]), spacing=(1, 1), modality="CT")
    facts = image.describe()
    assert {"shape", "spacing", "modality", "dtype", "min", "max"} <= set(facts)
    assert facts["min"] == -2.0 and facts["max"] == 4.0 and facts["modality"] == "CT"
