from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import visual_information_fidelity as tm_vif

from medsr.errors import ConfigError
from medsr.metrics import vif

from .conftest import degrade

TOL = 1e-4


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None, None]


def test_vif_matches_torchmetrics_on_8bit_scale(blurred_noisy_pair):
    """torchmetrics (like the reference code) assumes 8-bit grey levels: ours with
    ``data_range=L`` equals it on the images rescaled by ``255 / L``."""
    sr, case = blurred_noisy_pair
    ours = vif(sr, case.hr, data_range=case.data_range)
    assert ours.shape == (1,) and ours.dtype == torch.float64
    k = 255.0 / case.data_range
    ref = tm_vif(_t(sr * k), _t(case.hr * k), reduction="none")
    assert abs(float(ours) - float(ref)) < TOL


def test_vif_depends_on_data_range_not_on_units(load):
    case = load("ct-small")
    sr = degrade(case.hr, "blur+noise", case.data_range)
    base = float(vif(sr, case.hr, data_range=4096))
    # same data in other units (x 0.01) with the range in those units: same VIF
    assert float(vif(sr / 100, case.hr / 100, data_range=40.96)) == pytest.approx(base, abs=1e-9)
    # shifting both images changes nothing either (only variances enter)
    assert float(vif(sr + 1024, case.hr + 1024, data_range=4096)) == pytest.approx(base, abs=1e-9)
    # a wider range lowers the visual noise's share: the score moves
    assert float(vif(sr, case.hr, data_range=40960)) != pytest.approx(base, abs=1e-3)


def test_vif_properties_and_masks(load):
    case = load("ct-small")
    hr = case.hr
    assert float(vif(hr, hr, data_range=4096)) == pytest.approx(1.0, abs=1e-9)
    mild = degrade(hr, "blur", 4096)
    strong = degrade(mild, "blur+noise", 4096)
    v_mild, v_strong = (float(vif(s, hr, data_range=4096)) for s in (mild, strong))
    assert 1.0 > v_mild > v_strong > 0.0
    everywhere = np.ones(hr.shape, bool)
    assert float(vif(strong, hr, data_range=4096, mask=everywhere)) == pytest.approx(
        v_strong, abs=1e-12
    )
    body = float(vif(strong, hr, data_range=4096, mask=case.mask))
    assert math.isfinite(body) and body != pytest.approx(v_strong, abs=1e-4)
    assert math.isnan(float(vif(strong, hr, data_range=4096, mask=np.zeros(hr.shape, bool))))
    batch = vif(np.stack([mild, strong])[:, None], np.stack([hr, hr])[:, None], data_range=4096)
    assert batch.tolist() == pytest.approx([v_mild, v_strong], abs=1e-12)


def test_vif_rejects_small_images_and_bad_noise():
    img = np.random.default_rng(0).random((40, 41))
    with pytest.raises(ConfigError, match="41x41"):
        vif(img, img, data_range=1.0)
    big = np.random.default_rng(0).random((41, 41))
    assert math.isfinite(float(vif(big * 0.5, big, data_range=1.0)))
    with pytest.raises(ConfigError, match="sigma_n_sq"):
        vif(big, big, data_range=1.0, sigma_n_sq=0.0)
