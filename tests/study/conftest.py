"""Fixtures for the reader-study tests: tiny synthetic cases and studies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from medsr.study import Study, create_study

METHODS = ("hr", "bicubic", "edsr_x4")


def _make_cases(
    n_cases: int = 4, methods: Sequence[str] = METHODS, size: int = 12, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """``n_cases`` cases (``case-00`` ...) with one random (size, size) image per method."""
    rng = np.random.default_rng(seed)
    return {
        f"case-{c:02d}": {m: rng.normal(100.0, 20.0, (size, size)) for m in methods}
        for c in range(n_cases)
    }


@pytest.fixture
def new_study(tmp_path: Path) -> Callable[..., Study]:
    """``new_study(name="s", **create_study_options)`` with small defaults; closed at teardown."""
    opened: list[Study] = []

    def make(name: str = "s", **options: object) -> Study:
        options.setdefault("cases", _make_cases())
        options.setdefault("readers", 3)
        options.setdefault("seed", 7)
        study = create_study(tmp_path / name, **options)
        opened.append(study)
        return study

    yield make
    for study in opened:
        study.close()


@pytest.fixture
def make_cases() -> Callable[..., dict[str, dict[str, np.ndarray]]]:
    """``make_cases(n_cases=4, methods=METHODS, size=12, seed=0)``: synthetic cases."""
    return _make_cases


@pytest.fixture
def methods() -> tuple[str, ...]:
    """The methods of the default cases."""
    return METHODS
