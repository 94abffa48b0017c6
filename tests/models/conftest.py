"""Tiny hyper-parameters for every architecture, so the table loops stay fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medsr.models import Discriminator, Generator, build_discriminator, build_generator

TINY_GENERATORS: dict[str, dict[str, Any]] = {
    "nearest": {},
    "bilinear": {},
    "bicubic": {},
    "lanczos": {},
    "srcnn": {"num_features": 8, "mid_features": 4},
    "espcn": {"num_features": 8, "mid_features": 4},
    "rescnn": {"num_features": 8, "num_layers": 3},
    "srresnet": {"num_features": 8, "num_blocks": 1},
    "edsr": {"num_features": 8, "num_blocks": 1},
    "edsr_full": {"num_features": 8, "num_blocks": 1},
    "rcan": {"num_features": 8, "num_groups": 1, "num_blocks": 1, "reduction": 4},
    "rwman": {"num_features": 8, "num_groups": 1, "num_blocks": 1},
    "rrdbnet": {"num_features": 8, "num_blocks": 1, "growth": 4},
    "cxrgan": {"num_features": 8, "num_blocks": 1},
    "span": {"num_features": 8, "num_blocks": 2},
    "rlfn": {"num_features": 8, "num_blocks": 1, "esa_channels": 4},
}

TINY_DISCRIMINATORS: dict[str, dict[str, Any]] = {
    "srgan": {"num_features": 4, "pool_size": 2},
    "unet": {"num_features": 4},
    "medsrgan": {"num_features": 4, "pool_size": 2},
    "dcgan": {"num_features": 4},
}


@pytest.fixture
def tiny_generator() -> Callable[..., Generator]:
    """``tiny_generator(arch, **overrides)``: a small, seeded instance from the table."""

    def make(arch: str, **overrides: Any) -> Generator:
        torch_seed(0)
        return build_generator(arch, {**TINY_GENERATORS[arch], **overrides})

    return make


@pytest.fixture
def tiny_discriminator() -> Callable[..., Discriminator]:
    def make(arch: str, **overrides: Any) -> Discriminator:
        torch_seed(0)
        return build_discriminator(arch, {**TINY_DISCRIMINATORS[arch], **overrides})

    return make


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


@pytest.fixture
def tiny_tables() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    return TINY_GENERATORS, TINY_DISCRIMINATORS
