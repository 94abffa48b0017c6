"""The model zoo: generators, discriminators, their name tables and checkpoints.

Typical use::

    from medsr import models
    g = models.build_generator("edsr", {"scale": 4, "in_channels": 1})
    models.save(g, "runs/edsr-x4", metadata={"normalisation": {...}})
    g2 = models.load("runs/edsr-x4")          # same class, same hyper-parameters, same weights

Generator contract: ``forward(lr: (B, C, H, W) in [0, 1]) -> (B, C_out, s*H, s*W)`` with
attributes ``scale``, ``in_channels``, ``out_channels`` and ``hparams()``.
"""

from __future__ import annotations

from medsr.models.checkpoint import (
    load,
    load_official_esrgan,
    load_state_dict_file,
    read_config,
    save,
)
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
from medsr.models.zoo import (
    DISCRIMINATORS,
    GENERATORS,
    MODEL_TAGS,
    PRETRAINED,
    PretrainedWeights,
    build_discriminator,
    build_generator,
    count_parameters,
    count_parameters_of,
    tagged_model,
)

__all__ = [
    "DISCRIMINATORS",
    "EDSR",
    "ESPCN",
    "GENERATORS",
    "MODEL_TAGS",
    "PRETRAINED",
    "RCAN",
    "RLFN",
    "RWMAN",
    "SPAN",
    "SRCNN",
    "Bicubic",
    "Bilinear",
    "CXRGANGenerator",
    "DCGANDiscriminator",
    "Discriminator",
    "EDSRFull",
    "Generator",
    "Lanczos",
    "MedSRGANDiscriminator",
    "Nearest",
    "PretrainedWeights",
    "RRDBNet",
    "ResCNN",
    "SRResNet",
    "UNetDiscriminatorSN",
    "VGGStyleDiscriminator",
    "build_discriminator",
    "build_generator",
    "count_parameters",
    "count_parameters_of",
    "load",
    "load_official_esrgan",
    "load_state_dict_file",
    "read_config",
    "save",
    "tagged_model",
]
