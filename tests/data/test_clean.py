from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsr.data.clean import (
    PlaneTransform,
    content_hash,
    plan_transform,
    slice_facts,
    slice_statistics,
    store_dtype,
)
from medsr.errors import ConfigError


def _foreground(shape, box):
    fg = np.zeros(shape, bool)
    (z0, z1), (y0, y1), (x0, x1) = box
    fg[z0:z1, y0:y1, x0:x1] = True
    return fg


def test_identity_without_options() -> None:
    t = plan_transform(np.ones((3, 20, 30), bool))
    assert t == PlaneTransform.identity(20, 30)
    assert not (t.cropped or t.padded or t.resized)
    volume = np.arange(3 * 20 * 30, dtype=np.float32).reshape(3, 20, 30)
    assert np.array_equal(t.apply(volume, fill=0.0), volume)


def test_crop_is_the_union_of_foreground_plus_margin() -> None:
    fg = _foreground((4, 50, 60), ((1, 2), (10, 20), (30, 41)))
    fg[3, 25, 35] = True  # another slice extends the box downwards
    t = plan_transform(fg, crop_border=True, crop_margin=2)
    assert (t.crop_top, t.crop_left, t.crop_height, t.crop_width) == (8, 28, 20, 15)
    t0 = plan_transform(fg, crop_border=True, crop_margin=50)  # clamped to the image
    assert (t0.crop_top, t0.crop_left, t0.crop_height, t0.crop_width) == (0, 0, 50, 60)
    empty = plan_transform(np.zeros((2, 8, 8), bool), crop_border=True)
    assert not empty.cropped


def test_pad_to_and_pad_multiple_are_centred_and_never_shrink() -> None:
    t = plan_transform(np.ones((1, 240, 240), bool), pad_to=256)
    assert (t.pad_top, t.pad_bottom, t.pad_left, t.pad_right) == (8, 8, 8, 8)
    assert (t.height, t.width) == (256, 256)
    big = plan_transform(np.ones((1, 300, 100), bool), pad_to=256)
    assert (big.height, big.width) == (300, 256)
    odd = plan_transform(np.ones((1, 221, 224), bool), pad_multiple=16)
    assert (odd.height, odd.width) == (224, 224)
    assert (odd.pad_top, odd.pad_bottom, odd.pad_left, odd.pad_right) == (1, 2, 0, 0)
    with pytest.raises(ConfigError, match="either"):
        plan_transform(np.ones((1, 4, 4), bool), pad_to=8, pad_multiple=8)


def test_padding_uses_the_given_fill_and_masks_get_false() -> None:
    t = plan_transform(np.ones((1, 4, 6), bool), pad_to=8)
    out = t.apply(np.full((1, 4, 6), 5.0, np.float32), fill=-1024.0)
    assert out.shape == (1, 8, 8) and out[0, 0, 0] == -1024.0 and out[0, 2, 1] == 5.0
    mask = t.apply(np.ones((1, 4, 6), bool), fill=0, mask=True)
    assert mask.dtype == bool and mask.sum() == 24 and not mask[0, 0, 0]


def test_resize_is_antialiased_and_clipped_and_spacing_follows() -> None:
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 255, (2, 64, 64)).astype(np.float32)
    t = plan_transform(np.ones((2, 64, 64), bool), resize=(32, 16))
    out = t.apply(volume, fill=0.0)
    expected = F.interpolate(
        torch.from_numpy(volume)[:, None], size=(32, 16), mode="bicubic", antialias=True
    )[:, 0].clamp(0, 255)
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)
    assert out.min() >= volume.min() and out.max() <= volume.max()
    assert t.spacing(0.5, 0.5) == (1.0, 2.0)


def test_to_source_maps_stored_pixels_back_through_crop_pad_resize() -> None:
    t = PlaneTransform(100, 120, 10, 20, 40, 60, 4, 4, 2, 2, 24, 32)  # padded 48 x 64, halved
    rows, cols = t.to_source(np.array([0, 23]), np.array([0, 31]))
    # stored pixel 0 covers padded pixels 0..1 (centre 0.5) = source 0.5 - 4 + 10
    np.testing.assert_allclose(rows, [6.5, 52.5])
    np.testing.assert_allclose(cols, [18.5, 80.5])
    ident = PlaneTransform.identity(5, 5)
    np.testing.assert_allclose(ident.to_source(np.arange(5), np.arange(5))[0], np.arange(5))


def test_transform_of_a_real_geometry_keeps_pixels_where_to_source_says() -> None:
    volume = np.arange(30 * 40, dtype=np.float32).reshape(1, 30, 40)
    fg = np.zeros((1, 30, 40), bool)
    fg[0, 5:20, 10:30] = True
    t = plan_transform(fg, crop_border=True, crop_margin=1, pad_multiple=8)
    out = t.apply(volume, fill=-1.0)
    r, c = t.to_source(np.arange(out.shape[1]), np.arange(out.shape[2]))
    rows = (r >= t.crop_top) & (r < t.crop_top + t.crop_height)
    cols = (c >= t.crop_left) & (c < t.crop_left + t.crop_width)
    assert t.padded and not rows.all()
    copied = volume[0][np.ix_(r[rows].astype(int), c[cols].astype(int))]
    assert np.array_equal(out[0][np.ix_(rows, cols)], copied)
    assert np.all(out[0][~rows] == -1.0) and np.all(out[0][:, ~cols] == -1.0)


def test_store_dtype_is_the_smallest_exact_one() -> None:
    assert store_dtype(np.array([0, 255], np.float32)) == np.uint8
    assert store_dtype(np.array([-1024.0, 3071.0])) == np.int16
    assert store_dtype(np.array([0.0, 1000.0])) == np.uint16
    assert store_dtype(np.array([0.5, 1.0])) == np.float32
    assert store_dtype(np.array([0.0, 1e6])) == np.int32
    assert store_dtype(np.array([0.0, np.nan])) == np.float32


def test_statistics_and_hash() -> None:
    volume = np.stack([np.zeros((4, 4)), np.arange(16.0).reshape(4, 4)])
    stats = slice_statistics(volume)
    assert stats["max"].tolist() == [0.0, 15.0] and stats["mean"][1] == 7.5
    assert stats["p50"][1] == 7.5 and stats["std"][0] == 0.0
    a = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert content_hash(a) == content_hash(a.copy())
    assert content_hash(a) != content_hash(a.astype(np.uint16))  # dtype matters
    assert content_hash(a) != content_hash(a.reshape(2, 8))  # shape matters
    b = a.copy()
    b[0, 0] += 1
    assert content_hash(a) != content_hash(b)


def test_slice_facts_in_chunks_equal_one_pass() -> None:
    rng = np.random.default_rng(1)
    volume = rng.integers(0, 200, (7, 9, 11)).astype(np.float32)
    volume[3] = 0

    def forward(x):
        return np.clip(x / 100.0, 0, 1)

    whole = slice_facts(volume, forward, 0.5)
    chunked = slice_facts(volume, forward, 0.5, chunk_pixels=2 * 99)
    for key in whole.stats:
        np.testing.assert_allclose(whole.stats[key], chunked.stats[key])
    np.testing.assert_allclose(whole.foreground, chunked.foreground)
    np.testing.assert_allclose(whole.unit_std, chunked.unit_std)
    assert np.array_equal(whole.union, chunked.union)
    assert whole.foreground[3] == 0 and whole.unit_std[3] == 0
    expected = (forward(volume) > 0.5).reshape(7, -1).mean(axis=1)
    np.testing.assert_allclose(whole.foreground, expected)
    assert np.array_equal(whole.union, (forward(volume) > 0.5).any(axis=0))
