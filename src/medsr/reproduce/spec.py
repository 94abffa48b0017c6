"""Typed descriptions of a reproduction: its data, the models it trains, its evaluation.

A :class:`WorkSpec` is plain data; :mod:`medsr.reproduce.works` holds the five of them and
:mod:`medsr.reproduce.runner` runs one. Nothing here imports torch.

Profiles (:data:`PROFILES`):

- ``full``: the recipe of ``configs/`` as it is (a GPU's worth of training);
- ``cpu``: the recipe with the model's ``cpu`` overrides on top of :data:`CPU_TRAIN`
  (narrower, shallower, fewer steps, smaller patches: about 30 CPU-minutes per model on a
  2-core machine), and the evaluation's ``cpu`` subset of slices;
- ``smoke``: the recipe's own ``--smoke`` shrinking (2 steps per stage, tiny widths) and a
  handful of slices: checks the whole pipeline in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medsr.errors import ConfigError
from medsr.schema import one_of

__all__ = [
    "CPU_TRAIN",
    "PROFILES",
    "EvalSpec",
    "PrepareSpec",
    "TrainSpec",
    "WorkSpec",
    "check_profile",
]

PROFILES = ("cpu", "full", "smoke")

CPU_TRAIN: dict[str, Any] = {
    "train.device": "cpu",
    "train.precision": "fp32",
    "train.tensorboard": False,
    "train.progress": False,
    "train.num_val_images": 2,
    # a saved state every 100 steps: a long CPU run interrupted loses minutes, not hours
    "train.checkpoint_every": 100,
    "data.num_workers": 1,
    "data.val_max_slices": 8,
    "data.val_crop": 128,
}
"""Overrides of every ``cpu`` profile run (on top of the recipe, under the model's own)."""


def check_profile(profile: str) -> str:
    one_of("profile", profile, PROFILES)
    return profile


@dataclass(frozen=True)
class PrepareSpec:
    """One ``medsr prepare`` run: ``sources`` are folders under the data root (``--data``);
    ``optional_sources`` are used when present; ``pydicom_files`` are file names of the
    pydicom-data package, linked into a dataset folder named ``pydicom_dataset``.
    ``options``: keyword arguments of :class:`medsr.data.manifest.PrepareOptions`."""

    name: str
    sources: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    optional_sources: tuple[str, ...] = ()
    pydicom_files: tuple[str, ...] = ()
    pydicom_dataset: str = "pydicom-cr"


@dataclass(frozen=True)
class TrainSpec:
    """One model of the comparison, trained from a recipe of ``configs/``.

    ``name``: the method name in the tables. ``stages``: the recipe's stages kept (empty:
    all). ``overrides``: dotted config overrides of every profile (they turn the recipe into
    this model, e.g. another generator); stage keys may use the stage name
    (``stages.gan.steps``). ``cpu``: the extra overrides of the ``cpu`` profile; ``smoke``:
    those of the ``smoke`` profile, on top of the recipe's own ``smoke`` block.
    ``init_from``: the model (of the same work) whose final generator starts this one.
    ``manifest``: the :class:`PrepareSpec` whose output it trains on.
    """

    name: str
    recipe: str
    manifest: str
    cpu: Mapping[str, Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    init_from: str | None = None


@dataclass(frozen=True)
class EvalSpec:
    """The benchmark: a ``medsr benchmark`` config mapping without methods and manifest
    (``config``), the interpolations compared (``interpolations``: name -> model spec), and
    per profile the slice subset (``every`` / ``max_slices_per_volume`` overrides)."""

    manifest: str
    config: Mapping[str, Any]
    interpolations: Mapping[str, str]
    cpu: Mapping[str, Any] = field(default_factory=dict)
    smoke: Mapping[str, Any] = field(default_factory=lambda: {"max_slices_per_volume": 2})


@dataclass(frozen=True)
class StudySpec:
    """A reader-study folder (rating mode: image quality and diagnostic usefulness, 1-5):
    ``cases`` slices of ``split`` (the ones with the most foreground), the HR image and
    ``methods`` (our method names), ``readers`` reader tokens."""

    methods: tuple[str, ...]
    cases: int = 12
    split: str = "test"
    readers: int = 3
    smoke_cases: int = 2


@dataclass(frozen=True)
class WorkSpec:
    """One source work. ``research_only``: datasets whose images (and figures) must never
    leave the working folder. ``deviations``: what differs from the paper whatever the
    profile (the data we have, a proxy), stated in the report."""

    number: int
    slug: str
    title: str
    prepare: tuple[PrepareSpec, ...]
    models: tuple[TrainSpec, ...]
    evaluation: EvalSpec | None
    study: StudySpec | None = None
    research_only: tuple[str, ...] = ()
    deviations: tuple[str, ...] = ()

    def model(self, name: str) -> TrainSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise ConfigError(
            f"work {self.number} has no model {name!r}; models: {[m.name for m in self.models]}"
        )
