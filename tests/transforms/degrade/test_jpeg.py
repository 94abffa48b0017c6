"""JPEG compression: quality order, channels coded separately."""

from __future__ import annotations

import pytest
import torch

from medsr.errors import ConfigError
from medsr.transforms import degrade as D

from .conftest import rand


# -- JPEG --------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_jpeg_changes_the_image_and_respects_quality_order(
    source: str, request: pytest.FixtureRequest
) -> None:
    if source == "real":
        flair_slice = request.getfixturevalue("flair_slice")
    else:
        flair_slice = D.gaussian_blur(rand(96, 96, seed=4), 1.5)
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
    x = D.gaussian_blur(rand(1, 3, 32, 32), 1.0)
    out = D.jpeg(x, 50)
    for c in range(3):
        assert torch.equal(out[:, c : c + 1], D.jpeg(x[:, c : c + 1], 50))
    assert not torch.equal(D.jpeg(x, 50, color=True), out)
    with pytest.raises(ConfigError, match="generator"):
        D.jpeg(x, (30, 90))
    with pytest.raises(ConfigError, match="quality"):
        D.build_degradation({"name": "jpeg", "quality": 0})
