"""Learning-rate schedules as pure functions of the step within a stage.

The rate at step ``t`` (0-based, the step about to be taken) of a stage of ``T`` steps is
``base_lr * factor(t)``, so a schedule has no hidden state: resuming at step ``t`` gives
exactly the rate an uninterrupted run had. :class:`Schedule` sets it on an optimiser before
each step; its ``state_dict`` (saved in the training state) records the configuration and
the last step for inspection.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import torch

from medsr.errors import ConfigError
from medsr.train.config import ScheduleConfig

__all__ = ["Schedule", "lr_factor"]


def lr_factor(config: ScheduleConfig, step: int, total: int, *, base_lr: float = 1.0) -> float:
    """Multiplier of the base rate at 0-based ``step`` of a stage of ``total`` steps.

    - ``constant``: 1;
    - ``step``: ``gamma ** (step // step_size)``;
    - ``multistep``: ``gamma ** (number of milestones <= step)``;
    - ``cosine``: ``m + (1 - m) * (1 + cos(pi * step / total)) / 2`` with ``m`` the ratio
      ``min_lr / base_lr`` (capped at 1);
    - ``halfway``: 1 for ``step < total // 2``, then ``gamma``.

    ``warmup_steps`` > 0 multiplies by ``(step + 1) / warmup_steps`` during the warm-up.
    """
    if step < 0:
        raise ConfigError(f"schedule step must be >= 0, got {step}")
    name = config.name
    if name == "constant":
        factor = 1.0
    elif name == "step":
        assert config.step_size is not None
        factor = config.gamma ** (step // config.step_size)
    elif name == "multistep":
        factor = config.gamma ** bisect.bisect_right(config.milestones, step)
    elif name == "cosine":
        progress = min(step / max(total, 1), 1.0)
        floor = min(config.min_lr / base_lr, 1.0)
        factor = floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    elif name == "halfway":
        factor = 1.0 if step < total // 2 else config.gamma
    else:  # pragma: no cover - rejected by ScheduleConfig
        raise ConfigError(f"unknown schedule {name!r}")
    if config.warmup_steps and step < config.warmup_steps:
        factor *= (step + 1) / config.warmup_steps
    return factor


class Schedule:
    """Sets ``base_lr * factor(step)`` on every parameter group of ``optimizer``.

    Call :meth:`apply` with the 0-based step within the stage before ``optimizer.step()``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        config: ScheduleConfig,
        *,
        base_lr: float,
        total_steps: int,
    ) -> None:
        self.optimizer = optimizer
        self.config = config
        self.base_lr = float(base_lr)
        self.total_steps = int(total_steps)
        self.last_step = -1

    def lr_at(self, step: int) -> float:
        factor = lr_factor(self.config, step, self.total_steps, base_lr=self.base_lr)
        return self.base_lr * factor

    def apply(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.last_step = step
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "base_lr": self.base_lr,
            "total_steps": self.total_steps,
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.config.name or state.get("total_steps") != self.total_steps:
            raise ConfigError(
                f"the saved schedule ({state.get('name')}, {state.get('total_steps')} steps) "
                f"does not match the config ({self.config.name}, {self.total_steps} steps)"
            )
        self.last_step = int(state["last_step"])
        if self.last_step >= 0:
            self.apply(self.last_step)
