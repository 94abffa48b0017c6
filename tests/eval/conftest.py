"""A tiny prepared dataset for the evaluation tests: BraTS-like volumes with brain masks and
spine-like npz volumes without masks, prepared with ``medsr.data.manifest.prepare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from medsr.data.manifest import PrepareOptions, prepare
from medsr.models import build_generator
from tests.data.conftest import make_brats_like, make_npz_folder


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``manifest.csv`` folder: 3 BraTS-like patients (2 sequences each, 48 x 48 slices,
    brain masks) and 3 spine-like npz volumes (48 x 44 slices), 1/1/1 subjects per split;
    one 64 x 64 chest X-ray PNG (train only: too few subjects for val and test)."""
    root = tmp_path_factory.mktemp("eval-data")
    brain = make_brats_like(root / "brain-mri", patients=3, shape=(6, 48, 48))
    spine = make_npz_folder(root / "spine-mri", ["VB1_01", "VB1_02", "VB1_03"], shape=(48, 44, 5))
    xray = root / "chest-xray"
    xray.mkdir()
    rng = np.random.default_rng(1)
    PILImage.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(xray / "cxr-01.png")
    out = root / "prepared"
    prepare([brain, spine, xray], out, PrepareOptions(salt="test"))
    return out


class TinyNet(nn.Module):
    """A random 3-layer network with the generator contract (x4, 1 channel)."""

    def __init__(self, *, scale: int = 4, in_channels: int = 1) -> None:
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = 1
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, scale * scale, 3, padding=1),
            nn.PixelShuffle(scale),
        )
        self.up = build_generator("bicubic", {"scale": scale, "in_channels": 1})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centre = x[:, self.in_channels // 2 : self.in_channels // 2 + 1]
        return self.up(centre) + 0.05 * self.body(x)

    def hparams(self) -> dict[str, int]:
        return {"scale": self.scale, "in_channels": self.in_channels}


@pytest.fixture
def tiny_net() -> TinyNet:
    return TinyNet()


def rows_by(rows, **where):
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def finite(x) -> bool:
    return bool(np.isfinite(x))
