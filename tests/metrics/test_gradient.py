from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from medsr.errors import ConfigError
from medsr.metrics import gmsd

from .conftest import degrade


def _gmsd_reference(sr: np.ndarray, hr: np.ndarray) -> float:
    """Xue et al.'s published MATLAB GMSD, transcribed with numpy/scipy for 8-bit images:
    ``conv2(Y, ones(2)/4, 'same')`` then every 2nd pixel, Prewitt ``conv2(.., 'same')``
    (zero padding), ``T = 170``, ``std2`` (divides by N - 1)."""

    def down(a):
        # conv2 'same' with a 2x2 kernel sums a(i, j) .. a(i+1, j+1) (zero beyond the edge)
        padded = np.pad(a, ((0, 1), (0, 1)))
        s = padded[:-1, :-1] + padded[1:, :-1] + padded[:-1, 1:] + padded[1:, 1:]
        return (s / 4)[::2, ::2]

    dx = np.array([[1, 0, -1]] * 3, float) / 3
    grads = []
    for a in (down(sr), down(hr)):
        ix = ndimage.convolve(a, dx, mode="constant")
        iy = ndimage.convolve(a, dx.T, mode="constant")
        grads.append(np.sqrt(ix**2 + iy**2))
    g1, g2 = grads
    q = (2 * g1 * g2 + 170) / (g1**2 + g2**2 + 170)
    return float(np.std(q, ddof=1))


def test_zero_padding_matches_the_reference_code(pair):
    sr, case = pair
    k = 255.0 / case.data_range
    ref = _gmsd_reference(sr * k, case.hr * k)
    ours = gmsd(sr, case.hr, data_range=case.data_range, padding="zero")
    assert ours.shape == (1,) and ours.dtype == torch.float64
    assert abs(float(ours) - ref) < 1e-4


def test_valid_padding_differs_little_from_zero_padding(pair):
    """The documented size of the border effect (docs/metrics.md): below 0.003."""
    sr, case = pair
    valid = float(gmsd(sr, case.hr, data_range=case.data_range))
    zero = float(gmsd(sr, case.hr, data_range=case.data_range, padding="zero"))
    assert abs(valid - zero) < 3e-3


def test_valid_padding_is_shift_invariant_zero_padding_is_not(load):
    case = load("ct-small")
    sr = degrade(case.hr, "blur+noise", case.data_range)
    v = float(gmsd(sr, case.hr, data_range=4096))
    assert float(gmsd(sr + 1000, case.hr + 1000, data_range=4096)) == pytest.approx(v, abs=1e-12)
    z = float(gmsd(sr, case.hr, data_range=4096, padding="zero"))
    shifted = float(gmsd(sr + 1000, case.hr + 1000, data_range=4096, padding="zero"))
    assert abs(shifted - z) > 1e-4


def test_gmsd_properties_and_masks(load):
    case = load("ct-small")
    hr = case.hr
    assert float(gmsd(hr, hr, data_range=4096)) == 0.0
    mild = degrade(hr, "blur", 4096)
    strong = degrade(mild, "blur+noise", 4096)
    g_mild, g_strong = (float(gmsd(s, hr, data_range=4096)) for s in (mild, strong))
    assert 0.0 < g_mild < g_strong
    everywhere = np.ones(hr.shape, bool)
    assert float(gmsd(strong, hr, data_range=4096, mask=everywhere)) == pytest.approx(g_strong)
    assert math.isfinite(float(gmsd(strong, hr, data_range=4096, mask=case.mask)))
    assert math.isnan(float(gmsd(strong, hr, data_range=4096, mask=np.zeros(hr.shape, bool))))
    # units: the same images in other units with the range in those units, same score
    assert float(gmsd(strong / 4096, hr / 4096, data_range=1.0)) == pytest.approx(g_strong)
    with pytest.raises(ConfigError, match="6x6"):
        gmsd(hr[:5, :5], hr[:5, :5], data_range=4096)
    with pytest.raises(ConfigError, match="padding"):
        gmsd(hr, hr, data_range=4096, padding="reflect")
