"""Real slices and volumes for the transform tests (read directly: medsr.io is not used here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.transforms.intensity import fit_normaliser

BRATS_PATIENT = "brain-mri-brats2013/pat0003"


@pytest.fixture(scope="session")
def flair_volume(shared_data: Path) -> np.ndarray:
    """BraTS 2013 FLAIR of pat0003, (X, Y, Z) = (240, 240, 155) at 1 mm, z-scored floats."""
    nibabel = pytest.importorskip("nibabel")
    path = shared_data / BRATS_PATIENT / "Flair_subtrMeanDivStd.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return np.asarray(nibabel.load(path).get_fdata(dtype=np.float32))


@pytest.fixture(scope="session")
def flair_unit(flair_volume: np.ndarray) -> torch.Tensor:
    """The FLAIR volume normalised to [0, 1] by foreground percentiles, as a tensor."""
    normaliser = fit_normaliser(flair_volume, modality="MR")
    return torch.from_numpy(normaliser.forward(flair_volume))


@pytest.fixture(scope="session")
def flair_slice(flair_unit: torch.Tensor) -> torch.Tensor:
    """An axial FLAIR slice through the tumour, (240, 240) in [0, 1]."""
    return flair_unit[:, :, 80].T.contiguous()
