"""Small real sample images shipped with medsr (for the demo and tests); see NOTICE.md.

``path(name)`` gives the file or folder of a sample; ``SAMPLES`` describes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from medsr.errors import ConfigError


@dataclass(frozen=True)
class Sample:
    """``seen_in_training``: the sample's subject is in the training data of the shipped
    models (``medsr.models.PRETRAINED``), so their scores on it are optimistic."""

    relative_path: str
    modality: str
    description: str
    license: str
    seen_in_training: bool = False


SAMPLES: dict[str, Sample] = {
    "chest-ct": Sample(
        "chest-ct",
        "CT",
        "3 axial chest CT slices (DICOM series, 512x512, 0.84 mm pixels, 5 mm slices, HU) from "
        "TCIA Lung-PET-CT-Dx subject A0001",
        "CC BY 4.0",
        # the one chest CT series of ../shared/data, which trained the shipped models
        seen_in_training=True,
    ),
    "chest-xray": Sample(
        "chest-xray.png",
        "DX",
        "frontal chest radiograph (PNG, 1024x1024, 8-bit) from NIH ChestX-ray14",
        "no restrictions (NIH Clinical Center)",
    ),
    "brain-mri": Sample(
        "brain-mri-flair.nii.gz",
        "MR",
        "axial FLAIR slice with a glioma (NIfTI, 240x240, 1 mm, z-scored inside the brain) "
        "from BraTS 2013 patient 0003",
        "CC BY-NC-SA 3.0 (non-commercial, share-alike)",
    ),
}


def path(name: str) -> Path:
    """Path of a sample (a file, or a folder for a DICOM series)."""
    if name not in SAMPLES:
        raise ConfigError(f"unknown sample {name!r}; choose from {sorted(SAMPLES)}")
    return Path(str(files("medsr.samples") / SAMPLES[name].relative_path))
