"""The training configuration: frozen dataclasses parsed strictly from YAML.

A config file is a mapping with the sections of :class:`RunConfig`. Parsing is strict:

- an unknown key raises :class:`~medsr.errors.ConfigError` naming its dotted path and
  listing the valid keys of its section;
- every value is type-checked against the field's annotation (an ``int`` is accepted where a
  ``float`` is expected, never a ``bool`` where a number is);
- value checks (positive steps, known optimiser and schedule names...) name the bad value
  and the allowed ones.

``--set a.b.c=value`` overrides (:func:`apply_overrides`) act on the raw mapping before
parsing; the value is read as YAML (``--set train.ema_decay=0.999``,
``--set stages.1.optimizer.lr=1e-5``, ``--set model.discriminator=null``); list items are
addressed by their index. :func:`to_dict` gives back the plain mapping (the resolved config
written beside every checkpoint), and ``parse_config(to_dict(c)) == c``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import ConfigError
from medsr.schema import (
    at_least,
    one_of,
    parse_dataclass,
    positive,
    read_yaml,
    type_name,
    unit_range,
    yaml_load,
)

__all__ = [
    "OPTIMIZERS",
    "PIXEL_KINDS",
    "PRECISIONS",
    "SCHEDULES",
    "AdversarialLossConfig",
    "DataConfig",
    "FeatureMatchingLossConfig",
    "LossesConfig",
    "ModelConfig",
    "ModelSpec",
    "OptimizerConfig",
    "PerceptualLossConfig",
    "PixelLossConfig",
    "RunConfig",
    "ScheduleConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "apply_smoke",
    "load_config",
    "parse_config",
    "parse_override",
    "schema_reference",
    "to_dict",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "step", "multistep", "cosine", "halfway")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
PIXEL_KINDS = ("l1", "mse", "charbonnier")
INIT_FROM = ("ema", "model")
BEST_METRICS = ("psnr", "ssim")


# ---------------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelSpec:
    """One network of the model zoo: ``arch`` (a key of ``GENERATORS`` / ``DISCRIMINATORS``)
    and its keyword hyper-parameters (checked by the model builder)."""

    arch: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """``generator`` (required), ``discriminator`` (needed by adversarial stages), and
    ``init_generator``: a medsr checkpoint folder whose weights start the first stage (same
    architecture and hyper-parameters; its scale may differ: the tensors that fit are copied;
    an EDSR may start from one with fewer blocks: ``EDSR.deepen_from``)."""

    generator: ModelSpec
    discriminator: ModelSpec | None = None
    init_generator: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from and how it is cut into batches.

    ``manifest``: the output folder of ``medsr prepare`` (or its manifest file).
    ``degradation``: a YAML file of degradation stages, or the list of stages inline.
    ``batch_size`` is per process (under DDP the global batch is ``batch_size * world``).
    ``val_max_slices``: validation uses this many slices of the validation split, evenly
    spaced (null: all); ``val_crop``: centre crop of each validation slice (HR pixels, a
    multiple of the scale factors; null: whole slices).
    ``licenses``: dataset name -> licence text, written into the checkpoint's metadata.
    ``dataset_repeats``: dataset name -> k >= 1; the training split lists each slice of that
    dataset k times (oversampling the small datasets of a mixed manifest).
    ``modality_degradation``: manifest modality (``MR``, ``CT``, ``DX``, ``CR``) -> stages
    (inline or a YAML file) used for that modality's slices instead of ``degradation``, with
    the same scale (e.g. k-space truncation for MR only).
    ``intensity_scale``: ``[low, high]`` with ``0 < low <= high <= 1``; each training patch is
    multiplied by a factor drawn uniformly from it before degradation (null: none).
    """

    manifest: str
    degradation: str | list[dict[str, Any]]
    datasets: list[str] | None = None
    train_split: str = "train"
    val_split: str | None = "val"
    patch_size: int = 128
    neighbours: int = 0
    batch_size: int = 16
    num_workers: int = 2
    patches_per_slice: int = 1
    augment: bool = True
    foreground_tries: int = 5
    min_patch_foreground: float = 0.5
    val_max_slices: int | None = 32
    val_crop: int | None = None
    licenses: dict[str, str] = field(default_factory=dict)
    dataset_repeats: dict[str, int] = field(default_factory=dict)
    modality_degradation: dict[str, str | list[dict[str, Any]]] = field(default_factory=dict)
    intensity_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        positive("patch_size", self.patch_size)
        for dataset, k in self.dataset_repeats.items():
            positive(f"dataset_repeats.{dataset}", k)
        positive("batch_size", self.batch_size)
        positive("patches_per_slice", self.patches_per_slice)
        positive("foreground_tries", self.foreground_tries)
        at_least("neighbours", self.neighbours, 0)
        at_least("num_workers", self.num_workers, 0)
        if self.val_max_slices is not None:
            positive("val_max_slices", self.val_max_slices)
        if self.val_crop is not None:
            positive("val_crop", self.val_crop)
        if self.intensity_scale is not None:
            unit_range("intensity_scale", self.intensity_scale)
        if not 0.0 <= self.min_patch_foreground <= 1.0:
            raise ConfigError(
                f"min_patch_foreground must be in [0, 1], got {self.min_patch_foreground}"
            )


@dataclass(frozen=True)
class PixelLossConfig:
    """``kind``: l1, mse or charbonnier; ``weight`` multiplies it."""

    kind: str = "l1"
    weight: float = 1.0
    eps: float = 1e-3

    def __post_init__(self) -> None:
        one_of("kind", self.kind, PIXEL_KINDS)
        at_least("weight", self.weight, 0)


@dataclass(frozen=True)
class PerceptualLossConfig:
    """VGG feature distance (``medsr.losses.PerceptualLoss``). ``weights``: the VGG weights
    file (null: the torchvision cache); ``normalization`` must match those weights."""

    arch: str = "vgg16"
    layers: dict[str, float] | list[str] | None = None
    weights: str | None = "../shared/data/weights/vgg16-features-imagenet-mri-finetuned.safetensors"
    normalization: str = "caffe"
    criterion: str = "l1"
    weight: float = 1.0

    def __post_init__(self) -> None:
        at_least("weight", self.weight, 0)


@dataclass(frozen=True)
class AdversarialLossConfig:
    """GAN loss (``medsr.losses.AdversarialLoss``): ``kind`` vanilla / lsgan / ragan / hinge;
    ``weight`` scales the generator side."""

    kind: str = "vanilla"
    weight: float = 1e-3

    def __post_init__(self) -> None:
        from medsr.losses import ADVERSARIAL_KINDS

        one_of("kind", self.kind, ADVERSARIAL_KINDS)
        at_least("weight", self.weight, 0)


@dataclass(frozen=True)
class FeatureMatchingLossConfig:
    """Discriminator feature matching (``medsr.losses.FeatureMatchingLoss``)."""

    weight: float = 1.0
    criterion: str = "l1"

    def __post_init__(self) -> None:
        one_of("criterion", self.criterion, ("l1", "mse"))
        at_least("weight", self.weight, 0)


@dataclass(frozen=True)
class LossesConfig:
    """The generator's loss terms (each null = off). A stage with ``adversarial`` or
    ``feature_matching`` is adversarial: it trains the discriminator too."""

    pixel: PixelLossConfig | None = None
    perceptual: PerceptualLossConfig | None = None
    adversarial: AdversarialLossConfig | None = None
    feature_matching: FeatureMatchingLossConfig | None = None

    def __post_init__(self) -> None:
        if self.pixel is None and self.perceptual is None and not self.adversarial_stage:
            raise ConfigError(
                "a stage needs at least one loss: pixel, perceptual, adversarial, feature_matching"
            )
        if self.feature_matching is not None and self.adversarial is None:
            raise ConfigError(
                "feature_matching needs an adversarial loss to train the discriminator"
            )

    @property
    def adversarial_stage(self) -> bool:
        return self.adversarial is not None or self.feature_matching is not None


@dataclass(frozen=True)
class OptimizerConfig:
    """``name``: adam, adamw or sgd. ``betas``/``eps`` are Adam's; ``momentum``/``nesterov``
    SGD's; ``weight_decay`` all three (decoupled for adamw)."""

    name: str = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        one_of("name", self.name, OPTIMIZERS)
        positive("lr", self.lr)
        for beta in self.betas:
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"betas must be in [0, 1), got {list(self.betas)}")
        at_least("weight_decay", self.weight_decay, 0)
        at_least("momentum", self.momentum, 0)


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate schedule over the steps of a stage (see ``medsr.train.schedules``):

    - ``constant``;
    - ``step``: times ``gamma`` every ``step_size`` steps;
    - ``multistep``: times ``gamma`` at each of ``milestones`` (steps within the stage);
    - ``cosine``: from the base rate down to ``min_lr`` over the stage;
    - ``halfway``: the base rate for the first half, then times ``gamma`` (1e-4 -> 1e-5 with
      ``gamma: 0.1``, the thick/thin work's switch at mid-training).

    ``warmup_steps``: linear warm-up from 0 first (any schedule).
    """

    name: str = "constant"
    gamma: float = 0.5
    step_size: int | None = None
    milestones: list[int] = field(default_factory=list)
    min_lr: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        one_of("name", self.name, SCHEDULES)
        positive("gamma", self.gamma)
        at_least("min_lr", self.min_lr, 0)
        at_least("warmup_steps", self.warmup_steps, 0)
        if self.name == "step" and (self.step_size is None or self.step_size <= 0):
            raise ConfigError(f"the step schedule needs a positive step_size, got {self.step_size}")
        if self.name == "multistep":
            if not self.milestones:
                raise ConfigError("the multistep schedule needs milestones (a list of steps)")
            if list(self.milestones) != sorted(set(self.milestones)) or self.milestones[0] <= 0:
                raise ConfigError(
                    f"milestones must be increasing positive steps, got {self.milestones}"
                )


@dataclass(frozen=True)
class StageConfig:
    """One training stage: ``steps`` optimiser steps with its own losses, optimisers and
    schedules. ``d_optimizer``/``d_schedule`` (the discriminator's) default to the
    generator's. ``init_from``: a stage after the first starts from the previous stage's
    ``ema`` weights (when EMA is on) or its raw ``model`` weights. ``grad_clip``: maximal
    gradient norm (null: no clipping), for both networks."""

    name: str
    steps: int
    losses: LossesConfig
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    d_optimizer: OptimizerConfig | None = None
    d_schedule: ScheduleConfig | None = None
    grad_clip: float | None = None
    init_from: str = "ema"

    def __post_init__(self) -> None:
        positive("steps", self.steps)
        one_of("init_from", self.init_from, INIT_FROM)
        if self.grad_clip is not None:
            positive("grad_clip", self.grad_clip)
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise ConfigError(
                f"stage name {self.name!r} must be non-empty letters, digits, '-' or '_' "
                "(it names checkpoint folders)"
            )

    @property
    def adversarial(self) -> bool:
        return self.losses.adversarial_stage


@dataclass(frozen=True)
class TrainConfig:
    """How the engine runs.

    ``device``: auto (CUDA when available), cpu or cuda. ``precision``: auto (bf16 autocast
    on CUDA, fp32 on CPU), fp32, or bf16 (CUDA only). ``compile``: ``torch.compile`` the
    networks; ``channels_last``: channels-last memory format. ``ema_decay``: exponential
    moving average of the generator weights (null: off; the EMA weights are validated and
    exported). ``val_every``/``checkpoint_every``/``log_every``: in steps (0: only at the end
    of each stage). ``max_nonfinite``: consecutive non-finite steps before training stops.
    ``stop_after``: stop (with a saved state) after this many steps in total: resume with
    ``--resume``. ``num_val_images``: validation slices saved as PNG panels.
    ``best_metric``: psnr or ssim, for ``checkpoints/best``.
    """

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    channels_last: bool = False
    ema_decay: float | None = None
    val_every: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 10
    num_val_images: int = 4
    max_nonfinite: int = 10
    stop_after: int | None = None
    progress: bool = True
    tensorboard: bool = True
    best_metric: str = "psnr"
    deterministic: bool = False

    def __post_init__(self) -> None:
        one_of("device", self.device, DEVICES)
        one_of("precision", self.precision, PRECISIONS)
        one_of("best_metric", self.best_metric, BEST_METRICS)
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        for name in ("val_every", "checkpoint_every", "log_every", "num_val_images"):
            at_least(name, getattr(self, name), 0)
        positive("max_nonfinite", self.max_nonfinite)
        if self.stop_after is not None:
            positive("stop_after", self.stop_after)


@dataclass(frozen=True)
class RunConfig:
    """A whole training recipe. ``smoke``: dotted overrides that ``--smoke`` applies on top of
    the generic shrinking (tiny widths, a few steps); ``source``: what the recipe follows."""

    name: str
    model: ModelConfig
    data: DataConfig
    stages: tuple[StageConfig, ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    output_dir: str | None = None
    description: str = ""
    source: str = ""
    smoke: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stages:
            raise ConfigError("stages: at least one stage is needed")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}")
        if any(s.adversarial for s in self.stages) and self.model.discriminator is None:
            bad = [s.name for s in self.stages if s.adversarial]
            raise ConfigError(f"stage(s) {bad} are adversarial but model.discriminator is not set")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


def parse_config(data: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` from a plain mapping (parsed YAML), strictly checked."""
    return parse_dataclass(RunConfig, data, "")


def to_dict(config: Any) -> Any:
    """The plain (YAML/JSON-ready) form of a config or any of its sections."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, list | tuple):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


# --------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[str, Any]:
    """``"a.b.c=value"`` -> ``("a.b.c", value)`` with the value read as YAML."""
    import yaml

    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects KEY=VALUE with a dotted KEY (a.b.c=1), got {text!r}")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({error})") from error
    return key, value


def apply_overrides(
    data: Mapping[str, Any], overrides: Mapping[str, Any] | Sequence[tuple[str, Any]]
) -> dict[str, Any]:
    """A deep copy of ``data`` with each dotted key set to its value. Missing mappings on
    the way are created (unknown keys are then rejected by :func:`parse_config`); list
    items are addressed by index."""
    out = copy.deepcopy(dict(data))
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for key, value in items:
        parts = key.split(".")
        node: Any = out
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]), key)
        _assign(node, parts[-1], copy.deepcopy(value), key)
    return out


def _child(node: Any, part: str, path: str, key: str) -> Any:
    if isinstance(node, list):
        index = _index(node, part, path, key)
        return node[index]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {key}: {path} is not a mapping or a list")
    if node.get(part) is None:
        node[part] = {}
    return node[part]


def _assign(node: Any, part: str, value: Any, key: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, key, key)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"--set {key}: the parent of {part!r} is not a mapping or a list")


def _index(node: list, part: str, path: str, key: str) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(
            f"--set {key}: {path} is a list; address its items by index (0..{len(node) - 1})"
        ) from None
    if not -len(node) <= index < len(node):
        raise ConfigError(f"--set {key}: index {index} outside the list of {len(node)} items")
    return index


# ------------------------------------------------------------------------------------- smoke
SMOKE_STEPS = 2


def apply_smoke(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--smoke`` version of a raw config: every stage 2 steps, batches of 2, no
    workers, 2 validation slices, validation and checkpoints once per stage, then the
    recipe's own ``smoke`` overrides (tiny widths, tiny patches) on top."""
    out = copy.deepcopy(dict(data))
    stages = out.get("stages")
    if isinstance(stages, list):
        for stage in stages:
            if isinstance(stage, dict) and isinstance(stage.get("steps"), int):
                stage["steps"] = min(stage["steps"], SMOKE_STEPS)
    section = out.setdefault("data", {})
    if isinstance(section, dict):
        if isinstance(section.get("batch_size", 16), int):
            section["batch_size"] = min(section.get("batch_size", 16), 2)
        section["num_workers"] = 0
        section["val_max_slices"] = 2
    run = out.setdefault("train", {})
    if isinstance(run, dict):
        run.update(val_every=0, checkpoint_every=0, log_every=1, progress=False)
        run["num_val_images"] = min(int(run.get("num_val_images", 4) or 0), 1)
    smoke = out.get("smoke") or {}
    if not isinstance(smoke, Mapping):
        raise ConfigError(f"smoke: expected a mapping of dotted keys to values, got {smoke!r}")
    return apply_overrides(out, smoke)


def load_config(
    path: str | Path,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    smoke: bool = False,
) -> RunConfig:
    """Read a YAML recipe, apply ``--smoke`` (optional) and then the ``--set`` overrides
    (``"a.b=v"`` strings or a mapping), and parse the result strictly."""
    data = read_yaml(path, what="training config")
    if smoke:
        data = apply_smoke(data)
    if isinstance(overrides, Mapping):
        pairs = list(overrides.items())
    else:
        pairs = [parse_override(text) for text in overrides]
    data = apply_overrides(data, pairs)
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from error


# ------------------------------------------------------------------------- schema reference
def schema_reference() -> str:
    """Markdown tables of every section, key, type and default (used by the docs test)."""
    lines: list[str] = []
    sections: list[tuple[str, type]] = [
        ("(top level)", RunConfig),
        ("model", ModelConfig),
        ("model.generator / model.discriminator", ModelSpec),
        ("data", DataConfig),
        ("stages[i]", StageConfig),
        ("stages[i].losses", LossesConfig),
        ("stages[i].losses.pixel", PixelLossConfig),
        ("stages[i].losses.perceptual", PerceptualLossConfig),
        ("stages[i].losses.adversarial", AdversarialLossConfig),
        ("stages[i].losses.feature_matching", FeatureMatchingLossConfig),
        ("stages[i].optimizer / d_optimizer", OptimizerConfig),
        ("stages[i].schedule / d_schedule", ScheduleConfig),
        ("train", TrainConfig),
    ]
    for title, cls in sections:
        hints = typing.get_type_hints(cls)
        lines += [f"`{title}`", "", "| key | type | default |", "|---|---|---|"]
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f"`{json.dumps(to_dict(f.default))}`"
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
                if dataclasses.is_dataclass(value):
                    default = "its section's defaults"
                else:
                    default = f"`{json.dumps(to_dict(value))}`"
            else:
                default = "required"
            lines.append(f"| `{f.name}` | {type_name(hints[f.name])} | {default} |")
        lines.append("")
    return "\n".join(lines)
