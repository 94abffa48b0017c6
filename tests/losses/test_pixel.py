from __future__ import annotations

import math

import pytest
import torch

from medsr.errors import ConfigError
from medsr.losses import PIXEL_LOSSES, CharbonnierLoss, L1Loss, MSELoss


def test_known_values():
    hr = torch.zeros(1, 1, 2, 2)
    sr = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    assert L1Loss()(sr, hr)[0].item() == pytest.approx(1.0)
    assert MSELoss()(sr, hr)[0].item() == pytest.approx(1.5)
    eps = 1e-3
    expected = sum(math.sqrt(d * d + eps * eps) - eps for d in (1, 1, 0, 2)) / 4
    assert CharbonnierLoss(eps=eps)(sr, hr)[0].item() == pytest.approx(expected)


@pytest.mark.parametrize("name", list(PIXEL_LOSSES))
def test_zero_for_identical_images_and_weighted_parts(name):
    x = torch.rand(2, 1, 8, 8)
    total, parts = PIXEL_LOSSES[name]()(x, x.clone())
    assert total.item() == 0.0
    y = torch.rand(2, 1, 8, 8, requires_grad=True)
    total, parts = PIXEL_LOSSES[name](weight=2.5)(y, x)
    unweighted, _ = PIXEL_LOSSES[name]()(y, x)
    assert list(parts) == [name]
    assert total.item() == pytest.approx(2.5 * unweighted.item())
    assert parts[name].item() == pytest.approx(total.item()) and not parts[name].requires_grad
    total.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_shape_mismatch_and_bad_eps():
    with pytest.raises(ConfigError, match="differ in shape"):
        L1Loss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ConfigError, match="eps"):
        CharbonnierLoss(eps=0)
