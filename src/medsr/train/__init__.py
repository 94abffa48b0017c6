"""The training engine: ``medsr train CONFIG.yaml``.

Typical use::

    from medsr.train import load_config, train
    config = load_config("configs/5-thick-thin-srgan.yaml", ["train.ema_decay=0.999"])
    result = train(config, out_dir="runs/thick-thin")
    result.checkpoint  # runs/thick-thin/checkpoints/last: a medsr.models checkpoint

See docs/training.md for the config schema, the stages, resume, DDP and the recipes.
"""

from __future__ import annotations

from medsr.train.config import (
    RunConfig,
    apply_overrides,
    apply_smoke,
    load_config,
    parse_config,
    to_dict,
)
from medsr.train.loop import Trainer, TrainResult, train

__all__ = [
    "RunConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "apply_smoke",
    "load_config",
    "parse_config",
    "to_dict",
    "train",
]
