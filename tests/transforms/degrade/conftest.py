"""Shared by the degradation tests: random images, the example configs, the scales tested."""

from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs" / "degradations"
SCALES = (2, 3, 4, 8)


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    """Uniform [0, 1) float32 tensor of ``shape``, the same for the same ``seed``."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))
