"""A tiny synthetic super-resolution dataset following the engine's dataset interface.

Items seed themselves from ``(seed, epoch, index)`` like ``medsr.data.SRDataset``, so the
data do not depend on workers or on resuming. HR images are smooth random patterns (sums of
a few random sinusoids) in [0, 1]; LR is antialiased bicubic downsampling.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def _pattern(g: torch.Generator, size: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    image = torch.zeros(size, size)
    for _ in range(3):
        fy, fx = (torch.rand(2, generator=g) * 0.5).tolist()
        phase = float(torch.rand(1, generator=g)) * 2 * math.pi
        image += torch.cos(2 * math.pi * (fy * y + fx * x) / 4 + phase)
    image = (image - image.min()) / (image.max() - image.min() + 1e-6)
    return image[None].float()


class SyntheticSR(Dataset):
    """``length`` items of ``(lr, hr)`` at ``scale``; ``mode="eval"`` items carry a
    normaliser dict (min-max from ``low`` to ``high`` physical units).

    ``nan_indices``: items whose LR is NaN (in every epoch); ``nan_from_epoch``: every item of
    that epoch and later is NaN. ``neighbours`` adds 2k copies (shifted) as LR channels.
    """

    def __init__(
        self,
        length: int = 8,
        *,
        size: int = 16,
        scale: int = 2,
        seed: int = 0,
        mode: str = "train",
        neighbours: int = 0,
        nan_indices: tuple[int, ...] = (),
        nan_from_epoch: int | None = None,
        low: float = -100.0,
        high: float = 300.0,
    ) -> None:
        self.length = length
        self.size = size
        self.scale = scale
        self.seed = seed
        self.mode = mode
        self.neighbours = neighbours
        self.nan_indices = set(nan_indices)
        self.nan_from_epoch = nan_from_epoch
        self.low, self.high = low, high
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Any]:
        epoch = 0 if self.mode == "eval" else self.epoch
        g = torch.Generator().manual_seed(self.seed * 7919 + epoch * 104_729 + index)
        hr = _pattern(g, self.size)
        stack = [
            torch.roll(hr, shifts=s, dims=-1) for s in range(-self.neighbours, self.neighbours + 1)
        ]
        lr = F.interpolate(
            torch.cat(stack)[None], scale_factor=1 / self.scale, mode="bicubic", antialias=True
        )[0].clamp(0, 1)
        if index in self.nan_indices or (
            self.nan_from_epoch is not None and epoch >= self.nan_from_epoch
        ):
            lr = torch.full_like(lr, float("nan"))
        item: dict[str, Any] = {"lr": lr, "hr": hr, "index": index}
        if self.mode == "eval":
            item["normaliser"] = {
                "kind": "minmax",
                "low": self.low,
                "high": self.high,
                "clip": True,
            }
        return item


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """A raw config for a tiny EDSR x2 (no BatchNorm), one content stage of 4 steps."""
    config: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "model": {
            "generator": {"arch": "edsr", "params": {"num_features": 8, "num_blocks": 1}},
        },
        "data": {
            "manifest": "unused",
            "degradation": [{"name": "bicubic", "scale": 2}],
            "batch_size": 2,
            "num_workers": 0,
            "val_max_slices": 2,
        },
        "stages": [
            {
                "name": "pretrain",
                "steps": 4,
                "losses": {"pixel": {"kind": "l1"}},
                "optimizer": {"name": "adam", "lr": 1e-3},
            }
        ],
        "train": {
            "val_every": 0,
            "checkpoint_every": 0,
            "log_every": 1,
            "progress": False,
            "tensorboard": False,
            "num_val_images": 1,
        },
    }
    from medsr.train.config import apply_overrides

    return apply_overrides(config, overrides)


GAN_STAGE: dict[str, Any] = {
    "name": "gan",
    "steps": 3,
    "losses": {
        "pixel": {"kind": "l1", "weight": 1.0},
        "adversarial": {"kind": "vanilla", "weight": 0.1},
    },
    "optimizer": {"name": "adam", "lr": 5e-4, "betas": [0.5, 0.999]},
    "schedule": {"name": "halfway", "gamma": 0.1},
}
