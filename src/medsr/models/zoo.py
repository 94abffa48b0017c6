"""The name tables of generators and discriminators, and the builders that use them.

Plain dicts, written out by hand: nothing is discovered by scanning, importing registers
nothing. A config names an ``arch`` (a key below) and its keyword hyper-parameters.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsr.errors import ConfigError
from medsr.models.cxrgan import CXRGANGenerator
from medsr.models.discriminators import (
    DCGANDiscriminator,
    MedSRGANDiscriminator,
    UNetDiscriminatorSN,
    VGGStyleDiscriminator,
)
from medsr.models.edsr import EDSR, EDSRFull
from medsr.models.espcn import ESPCN
from medsr.models.interpolation import Bicubic, Bilinear, Lanczos, Nearest
from medsr.models.layers import Discriminator, Generator
from medsr.models.rcan import RCAN
from medsr.models.rescnn import ResCNN
from medsr.models.rlfn import RLFN
from medsr.models.rrdbnet import RRDBNet
from medsr.models.rwman import RWMAN
from medsr.models.span import SPAN
from medsr.models.srcnn import SRCNN
from medsr.models.srresnet import SRResNet
from medsr.schema import convert, one_of, type_name

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "MODEL_TAGS",
    "PRETRAINED",
    "PRETRAINED_DIR",
    "PretrainedWeights",
    "build_discriminator",
    "build_generator",
    "count_parameters",
    "count_parameters_of",
    "hparam_names",
    "tagged_model",
]

GENERATORS: dict[str, type[Generator]] = {
    "nearest": Nearest,
    "bilinear": Bilinear,
    "bicubic": Bicubic,
    "lanczos": Lanczos,
    "srcnn": SRCNN,
    "espcn": ESPCN,
    "rescnn": ResCNN,
    "srresnet": SRResNet,
    "edsr": EDSR,
    "edsr_full": EDSRFull,
    "rcan": RCAN,
    "rwman": RWMAN,
    "rrdbnet": RRDBNet,
    "cxrgan": CXRGANGenerator,
    "span": SPAN,
    "rlfn": RLFN,
}

DISCRIMINATORS: dict[str, type[Discriminator]] = {
    "srgan": VGGStyleDiscriminator,
    "unet": UNetDiscriminatorSN,
    "medsrgan": MedSRGANDiscriminator,
    "dcgan": DCGANDiscriminator,
}


PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
"""Where the shipped weights live inside the package: one checkpoint folder per name."""


@dataclass(frozen=True)
class PretrainedWeights:
    """A set of weights medsr ships: which model, trained on what, under which licence.

    ``path`` is the checkpoint folder (``model.safetensors`` + ``config.json``) relative to
    :data:`PRETRAINED_DIR`; the folder also holds the model card ``MODEL_CARD.md``.
    ``modalities``: what it was trained on; ``kind``: ``psnr`` (pixel loss, fidelity first)
    or ``gan`` (perceptual quality first).
    """

    name: str
    arch: str
    scale: int
    in_channels: int
    description: str
    training_data: str
    license: str
    path: str
    kind: str = "psnr"
    tag: str = ""
    """``fast`` (the default: speed first) or ``quality`` (PSNR first); ``""``: by name only.
    ``--model fast`` / ``--model quality`` pick the weights with that tag at the scale."""

    def folder(self) -> Path:
        """The absolute checkpoint folder inside the installed package."""
        return PRETRAINED_DIR / self.path

    def card(self) -> Path:
        """The model card (Markdown) of these weights."""
        return self.folder() / "MODEL_CARD.md"


_DATA = "spine MRI, brain MRI (BraTS 2013), chest CT (Lung-PET-CT-Dx), chest X-ray (NIH)"
_LICENSE = "weights: MIT (medsr); trained on data incl. BraTS (CC BY-NC-SA 3.0): see the model card"
_DATA_ALL = (
    "spine MRI, brain MRI (BraTS 2013, child MPRAGE, PD and TOF), cardiac MRI, head and chest CT, "
    "chest X-ray (NIH, pydicom-data CR); stroke, thick-slice brain, body CT and COVID-Net "
    "radiographs kept out as the external test set"
)
_LICENSE_ALL = (
    "weights: MIT (medsr); trained on data incl. BraTS (CC BY-NC-SA 3.0) and PD/TOF (CC BY-NC "
    "4.0): non-commercial, see the model card"
)


def _grey_edsr(
    name: str, scale: int, description: str, tag: str, *, data: str, license: str
) -> PretrainedWeights:
    """A shipped one-channel EDSR whose folder is named after it."""
    return PretrainedWeights(
        name=name,
        arch="edsr",
        scale=scale,
        in_channels=1,
        description=description,
        training_data=data,
        license=license,
        path=name,
        tag=tag,
    )


_TINY = "compact EDSR (4 blocks, 32 features, bicubic skip), L1"
_QUALITY = "EDSR (8 blocks, 64 features, bicubic skip), L1, every modality"

# Weights shipped with medsr (each folder has its MODEL_CARD.md), listed by ``medsr models``
# and loaded by name with ``medsr.infer.load_model(name)``.
PRETRAINED: dict[str, PretrainedWeights] = {
    weights.name: weights
    for weights in (
        _grey_edsr(
            "medsr-edsr-tiny-x2",
            2,
            f"{_TINY}; fast on a CPU",
            "fast",
            data=_DATA,
            license=_LICENSE,
        ),
        _grey_edsr(
            "medsr-edsr-tiny-x4",
            4,
            f"{_TINY}; fast on a CPU",
            "fast",
            data=_DATA,
            license=_LICENSE,
        ),
        _grey_edsr(
            "medsr-edsr-tiny-x3",
            3,
            f"{_TINY}, every modality, started from the tiny x2 weights; fast on a CPU",
            "fast",
            data=_DATA_ALL,
            license=_LICENSE_ALL,
        ),
        _grey_edsr(
            "medsr-edsr-quality-x4",
            4,
            f"{_QUALITY}; quality first",
            "quality",
            data=_DATA_ALL,
            license=_LICENSE_ALL,
        ),
        _grey_edsr(
            "medsr-edsr-quality-x2",
            2,
            f"{_QUALITY}, started from the quality x4 weights; quality first",
            "quality",
            data=_DATA_ALL,
            license=_LICENSE_ALL,
        ),
    )
}


MODEL_TAGS = ("fast", "quality")
"""The tags ``--model`` accepts instead of a name (see :func:`tagged_model`)."""


def tagged_model(tag: str, scale: int) -> str:
    """The name of the shipped weights with ``tag`` (``fast`` or ``quality``) at ``scale``.

    Raises ConfigError for an unknown tag, or when no weights carry it at that scale (the
    message lists what is shipped).
    """
    one_of("model tag", tag, MODEL_TAGS)
    for name, entry in PRETRAINED.items():
        if entry.tag == tag and entry.scale == scale:
            return name
    shipped = ", ".join(f"{e.tag} x{e.scale}" for e in PRETRAINED.values() if e.tag) or "none"
    raise ConfigError(f"no {tag!r} model is shipped for x{scale}; shipped: {shipped}")


def hparam_names(cls: type[nn.Module]) -> list[str]:
    """The keyword hyper-parameters of a model class, in signature order."""
    return [
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def _build(table: dict[str, type[nn.Module]], what: str, arch: str, params: dict[str, Any]):
    one_of(what, arch, table)
    cls = table[arch]
    valid = hparam_names(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ConfigError(
            f"{arch}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid)}"
        )
    hints = typing.get_type_hints(cls.__init__)
    for name, value in params.items():
        try:
            convert(value, hints[name], name)
        except ConfigError:
            raise ConfigError(
                f"{arch}: {name} must be {type_name(hints[name])}, got {value!r}"
            ) from None
    return cls(**params)


def build_generator(arch: str, params: dict[str, Any] | None = None) -> Generator:
    """Build ``GENERATORS[arch](**params)``.

    Raises ConfigError for an unknown arch or parameter (listing the valid ones), a value of
    the wrong type, or an unsupported value (e.g. a scale the architecture cannot do).
    """
    return _build(GENERATORS, "generator", arch, dict(params or {}))


def build_discriminator(arch: str, params: dict[str, Any] | None = None) -> Discriminator:
    """Build ``DISCRIMINATORS[arch](**params)``; errors as :func:`build_generator`."""
    return _build(DISCRIMINATORS, "discriminator", arch, dict(params or {}))


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as BN statistics are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_parameters_of(
    arch: str, params: dict[str, Any] | None = None, *, discriminator: bool = False
) -> int:
    """Parameter count of a model built from the tables, without allocating its weights."""
    with torch.device("meta"):
        model = (build_discriminator if discriminator else build_generator)(arch, params)
    return count_parameters(model)
