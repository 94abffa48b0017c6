"""medsr.display: 8-bit windowing and the MR presets (display only)."""

from __future__ import annotations

import numpy as np
import pytest

from medsr.display import MR_PRESETS, foreground_mask, mr_windows, to_uint8
from medsr.errors import ConfigError


def test_to_uint8_maps_the_window():
    out = to_uint8(np.array([[-10.0, 0.0, 50.0, 100.0, np.nan]]), window=(0, 100))
    assert out.tolist() == [[0, 0, 127, 255, 0]]  # 127.5 rounds to even
    with pytest.raises(ConfigError, match="low < high"):
        to_uint8(np.zeros((2, 2)), window=(1, 1))


def test_mr_windows_use_the_foreground():
    rng = np.random.default_rng(0)
    volume = np.zeros((8, 64, 64), np.float32)  # air around the body: most of the volume
    volume[:, 16:48, 16:48] = rng.normal(500, 50, (8, 32, 32))
    assert foreground_mask(volume.ravel()).mean() == pytest.approx(0.25, abs=0.01)
    windows = mr_windows(volume)
    assert set(windows) == set(MR_PRESETS)
    for low, high in windows.values():
        assert 300 < low < 500 < high < 700  # the tissue, not the air
    # narrower to wider: soft tissue inside brain inside spine
    assert windows["spine"][0] <= windows["brain"][0] <= windows["soft-tissue"][0]
    assert windows["soft-tissue"][1] <= windows["brain"][1] <= windows["spine"][1]


def test_mr_windows_of_a_constant_image():
    assert mr_windows(np.full((4, 4), 7.0)) == {name: [6.5, 7.5] for name in MR_PRESETS}
    assert mr_windows(np.full((4, 4), np.nan)) == {}
