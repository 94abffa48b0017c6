"""The YAML form: the :data:`DEGRADATIONS` name table, :class:`Degradation` (a sequence of
stages) and the builders that check a config strictly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medsr.errors import ConfigError
from medsr.schema import check_keys, read_yaml, required_fields
from medsr.transforms.degrade.base import (
    Seed,
    Stage,
    _check_divisible,
    _from4d,
    _to4d,
    as_generator,
)
from medsr.transforms.degrade.jpeg import JPEGCompression
from medsr.transforms.degrade.noise import GaussianNoise, PoissonNoise, RicianNoise
from medsr.transforms.degrade.realesrgan import RealESRGAN
from medsr.transforms.degrade.resample import (
    Bicubic,
    Bilinear,
    GaussianBlur,
    KSpaceTruncation,
    MixedDownsample,
)
from medsr.transforms.degrade.slices import ThickSlice

DEGRADATIONS: dict[str, type[Stage]] = {
    "bicubic": Bicubic,
    "bilinear": Bilinear,
    "gaussian_blur": GaussianBlur,
    "kspace": KSpaceTruncation,
    "mixed_downsample": MixedDownsample,
    "thick_slice": ThickSlice,
    "rician_noise": RicianNoise,
    "gaussian_noise": GaussianNoise,
    "poisson_noise": PoissonNoise,
    "jpeg": JPEGCompression,
    "realesrgan": RealESRGAN,
}
"""Name table: the ``name`` of a stage in a YAML degradation -> its class."""


# -- pipeline ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Degradation:
    """A sequence of stages: ``deg(hr, generator=seed) -> lr``.

    ``hr`` is ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]; the output has the same
    number of dimensions and ``H / factors[0]`` x ``W / factors[1]`` pixels. ``generator``
    (a ``torch.Generator`` or an int seed) is required when any stage is random.
    """

    stages: tuple[Stage, ...]

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if not stages:
            raise ConfigError("a degradation needs at least one stage")
        object.__setattr__(self, "stages", stages)

    @property
    def factors(self) -> tuple[int, int]:
        """HR pixels per LR pixel along (H, W): the product over the stages."""
        fh, fw = 1, 1
        for stage in self.stages:
            sh, sw = stage.factors()
            fh, fw = fh * sh, fw * sw
        return fh, fw

    @property
    def scale(self) -> int:
        """The (isotropic) scale factor; raises ConfigError for anisotropic pipelines."""
        fh, fw = self.factors
        if fh != fw:
            raise ConfigError(
                f"this degradation is anisotropic (factors {fh, fw} along H, W); "
                "use .factors, or along_axis() for through-plane degradation of volumes"
            )
        return fh

    @property
    def random(self) -> bool:
        return any(stage.random for stage in self.stages)

    def __call__(self, hr: torch.Tensor, *, generator: Seed | None = None) -> torch.Tensor:
        x4, nd = _to4d(hr, "degradation")
        _check_divisible(x4, self.factors, "degradation")
        g = None
        if self.random:
            names = [s.name for s in self.stages if s.random]
            g = as_generator(generator, what=f"this degradation (random stages {names})")
        out = x4
        for stage in self.stages:
            out = stage.apply(out, g)
        return _from4d(out, nd)

    def downsample_only(self) -> Degradation:
        """The same resampling without noise or compression: deterministic, needs no seed.

        Use it for the consistency check (downsample SR with it and compare with the LR).
        Noise and JPEG stages are dropped; ``realesrgan`` becomes antialiased bicubic at its
        scale (its random blur and resize have no single deterministic counterpart).
        """
        kept = [s.deterministic() for s in self.stages]
        stages = tuple(s for s in kept if s is not None)
        if not stages:
            fh, fw = self.factors
            stages = (Bicubic(scale=(fh, fw)),)
        return Degradation(stages)

    def to_config(self) -> list[dict[str, Any]]:
        """The YAML/JSON form (every parameter spelled out); ``build_degradation`` reads it."""
        return [stage.to_config() for stage in self.stages]


def build_stage(config: Mapping[str, Any]) -> Stage:
    """One stage from its mapping ``{"name": ..., <parameters>}``, strictly checked."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"a degradation stage must be a mapping with a 'name', got {config!r}")
    params = dict(config)
    name = params.pop("name", None)
    if name not in DEGRADATIONS:
        raise ConfigError(
            f"unknown degradation {name!r}; valid names: {', '.join(sorted(DEGRADATIONS))}"
        )
    cls = DEGRADATIONS[name]
    keys = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    check_keys(params, keys, f"degradation {name!r}", required=required_fields(cls))
    return cls(**params)


def build_degradation(config: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> Degradation:
    """A :class:`Degradation` from a list of stage mappings (or a single one), e.g. parsed
    YAML ``[{name: bicubic, scale: 4}]``. Unknown names or keys raise ConfigError listing
    the valid ones."""
    if isinstance(config, Mapping):
        config = [config]
    if isinstance(config, str | bytes) or not isinstance(config, Sequence):
        raise ConfigError(f"a degradation config is a list of stages, got {config!r}")
    return Degradation(tuple(build_stage(c) for c in config))


def load_degradation(path: str | Path) -> Degradation:
    """Read a YAML degradation file (a list of stages, or one stage) and build it."""
    config = read_yaml(path, what="degradation", top=(list, dict))
    try:
        return build_degradation(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
