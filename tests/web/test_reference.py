"""medsr.web.reference: reference checks, polygon masks and region scores."""

from __future__ import annotations

import numpy as np
import pytest

from medsr.errors import ConfigError
from medsr.web.reference import check_reference, polygon_mask, region_scores, scores


def test_check_reference_names_both_shapes():
    check_reference(np.zeros((4, 8, 8)), [4, 8, 8], color=False)
    with pytest.raises(ConfigError, match="3x8x8 but the SR output has shape 4x8x8"):
        check_reference(np.zeros((3, 8, 8)), [4, 8, 8], color=False)
    with pytest.raises(ConfigError, match="grey image"):
        check_reference(np.zeros((8, 8)), [4, 8, 8], color=False)


def test_polygon_mask_rectangle_and_triangle():
    rect = polygon_mask((10, 12), [(2, 3), (6, 3), (6, 8), (2, 8)])
    assert rect.sum() == 4 * 5
    assert rect[3:8, 2:6].all()
    triangle = polygon_mask((10, 10), [(0, 0), (10, 0), (0, 10)])
    assert 40 <= triangle.sum() <= 55 and triangle[0, 0] and not triangle[9, 9]
    with pytest.raises(ConfigError, match="finite"):
        polygon_mask((4, 4), [(0, 0), (1, float("nan")), (2, 2)])


def test_scores_and_region_scores():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 100, (2, 32, 32)).astype(np.float32)
    noisy = ref + rng.normal(0, 1, ref.shape).astype(np.float32)
    s = scores(noisy, ref, 100.0)
    assert 35 < s["psnr"] < 45 and 0.9 < s["ssim"] <= 1
    assert scores(ref, ref, 100.0)["psnr"] is None  # infinite: not JSON
    worse = noisy.copy()
    worse[0, 8:24, 8:24] += 20  # all the damage inside the region
    mask = polygon_mask((32, 32), [(8, 8), (24, 8), (24, 24), (8, 24)])
    out = region_scores({"sr": noisy[0], "bicubic": worse[0]}, ref[0], mask, 100.0)
    assert out["pixels"] == 256
    assert out["bicubic"]["psnr"]["inside"] < out["sr"]["psnr"]["inside"] - 10
    assert out["bicubic"]["psnr"]["outside"] == pytest.approx(out["sr"]["psnr"]["outside"])
