from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from medsr.errors import ConfigError
from medsr.eval.figures import detail_box, figure_grid


def _textured(h: int = 64, w: int = 80, at: tuple[int, int] = (20, 36), size: int = 16):
    rng = np.random.default_rng(0)
    image = np.full((h, w), 100.0)
    t, left = at
    image[t : t + size, left : left + size] += rng.normal(0, 50, (size, size))
    return image


def test_detail_box_finds_the_textured_patch() -> None:
    image = _textured()
    assert detail_box(image, size=16) == (20, 36, 16)
    top, left, size = detail_box(image, size=16, multiple=4)
    assert (top % 4, left % 4, size) == (0, 0, 16) and abs(top - 20) <= 4 and abs(left - 36) <= 4


def test_detail_box_stays_in_the_foreground() -> None:
    image = _textured()
    foreground = np.zeros(image.shape, dtype=bool)
    foreground[:, 44:] = True  # the patch at columns 36..51 is only half inside
    top, left, size = detail_box(image, size=16, foreground=foreground)
    assert foreground[top : top + size, left : left + size].mean() >= 0.9
    assert left < 51  # still over part of the patch
    # without a square inside the foreground, every square competes
    nothing = np.zeros(image.shape, dtype=bool)
    assert detail_box(image, size=16, foreground=nothing) == detail_box(image, size=16)


def test_detail_box_bad_size() -> None:
    with pytest.raises(ConfigError, match="inset size"):
        detail_box(np.zeros((10, 10)), size=11)


def test_figure_grid_writes_a_small_png() -> None:
    hr = _textured()
    lr = hr.reshape(16, 4, 20, 4).mean(axis=(1, 3))
    up = np.repeat(np.repeat(lr, 4, 0), 4, 1)
    grid = figure_grid(
        lr=lr,
        outputs=[("nearest", up), ("noisy", hr + 3.0)],
        hr=hr,
        window=(0.0, 250.0),
        box=(20, 36, 16),
        title="synthetic",
        labels={"nearest": "20.00 dB / 0.5000"},
        units="(a.u.)",
    )
    image = PILImage.open(io.BytesIO(grid.png))
    assert image.format == "PNG" and image.mode == "P"  # palette-quantised
    assert image.size[0] > image.size[1] > 100
    errors = np.concatenate([np.abs(up - hr).ravel(), np.full(hr.size, 3.0)])
    assert grid.error_max == pytest.approx(np.percentile(errors, 99.5))
    assert len(grid.png) < 200_000


def test_figure_grid_checks_shapes_and_box() -> None:
    hr = np.zeros((32, 32))
    with pytest.raises(ConfigError, match="outside"):
        figure_grid(lr=hr[::4, ::4], outputs=[], hr=hr, window=(0, 1), box=(20, 20, 16))
    with pytest.raises(ConfigError, match="SR shape"):
        figure_grid(lr=hr[::4, ::4], outputs=[("x", hr[:16])], hr=hr, window=(0, 1), box=(0, 0, 8))


def test_detail_box_keeps_a_margin_from_the_border() -> None:
    image = _textured(at=(0, 0))  # the texture touches the corner
    assert detail_box(image, size=16, margin=0) == (0, 0, 16)
    top, left, _ = detail_box(image, size=16)  # default margin: 16 // 4
    assert top >= 4 and left >= 4
