"""Learning-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medsr.errors import ConfigError
from medsr.train.config import ScheduleConfig
from medsr.train.schedules import Schedule, lr_factor


def factors(config: ScheduleConfig, total: int, base: float = 1.0) -> list[float]:
    return [lr_factor(config, t, total, base_lr=base) for t in range(total)]


def test_constant_step_multistep():
    assert factors(ScheduleConfig(), 3) == [1.0, 1.0, 1.0]
    step = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    assert factors(step, 5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    multi = ScheduleConfig(name="multistep", milestones=[1, 3], gamma=0.1)
    assert factors(multi, 4) == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_halfway_is_the_thick_thin_switch():
    # 1e-4 for the first half of the steps, 1e-5 from mid-training on
    config = ScheduleConfig(name="halfway", gamma=0.1)
    rates = [1e-4 * f for f in factors(config, 10)]
    assert rates[:5] == [1e-4] * 5
    assert rates[5:] == pytest.approx([1e-5] * 5)


def test_cosine_goes_from_base_to_min():
    config = ScheduleConfig(name="cosine", min_lr=1e-6)
    values = [1e-4 * f for f in factors(config, 100, base=1e-4)]
    assert values[0] == pytest.approx(1e-4)
    assert values[50] == pytest.approx((1e-4 + 1e-6) / 2)
    assert values[-1] > 1e-6 and all(a >= b for a, b in itertools.pairwise(values))
    assert lr_factor(config, 100, 100, base_lr=1e-4) == pytest.approx(0.01)


def test_warmup_and_bad_step():
    config = ScheduleConfig(warmup_steps=4)
    assert factors(config, 6) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    with pytest.raises(ConfigError):
        lr_factor(config, -1, 6)


def test_schedule_sets_the_optimizer_and_round_trips():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.1)
    schedule = Schedule(
        opt, ScheduleConfig(name="step", step_size=1, gamma=0.5), base_lr=0.1, total_steps=4
    )
    assert schedule.apply(2) == pytest.approx(0.025)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)
    state = schedule.state_dict()
    other_opt = torch.optim.SGD([p], lr=0.1)
    other = Schedule(
        other_opt, ScheduleConfig(name="step", step_size=1, gamma=0.5), base_lr=0.1, total_steps=4
    )
    other.load_state_dict(state)
    assert other.last_step == 2 and math.isclose(other_opt.param_groups[0]["lr"], 0.025)
    wrong = Schedule(other_opt, ScheduleConfig(), base_lr=0.1, total_steps=4)
    with pytest.raises(ConfigError, match="does not match"):
        wrong.load_state_dict(state)
