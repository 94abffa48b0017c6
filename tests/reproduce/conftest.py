"""A tiny stand-in for ``../shared/data`` with the folder layout the reproductions read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.conftest import REPO
from tests.data.conftest import blob_volume, make_brats_like, make_npz_folder, write_nifti


@pytest.fixture(scope="session")
def fake_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """spine-mri (3 npz volumes), brain-mri-brats2013 (3 patients, 30 x 48 x 48),
    chest-xray and chest-xray-covid (4 radiographs each, 64 x 64) and brain-mri-thick (one
    3-slice volume, 6.5 mm)."""
    root = tmp_path_factory.mktemp("shared-data")
    make_npz_folder(root / "spine-mri", ["VB1_01", "VB1_02", "VB1_03"], shape=(48, 44, 5))
    make_brats_like(root / "brain-mri-brats2013", patients=3, shape=(30, 48, 48))
    xray = root / "chest-xray"
    xray.mkdir()
    rng = np.random.default_rng(3)
    for k in range(4):
        xx = np.mgrid[0:64, 0:64][1]
        image = 120 + 60 * np.sin(xx / (5 + k)) + rng.normal(0, 10, (64, 64))
        PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(xray / f"cxr-{k}.png")
    covid = root / "chest-xray-covid"  # stands in for the research-only radiographs
    covid.mkdir()
    for k in range(4):
        image = 100 + 50 * np.cos(np.mgrid[0:64, 0:64][0] / (4 + k)) + rng.normal(0, 8, (64, 64))
        PILImage.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(covid / f"anon-{k}.png")
    thick = blob_volume((3, 32, 32), seed=9, blank=0)
    write_nifti(thick, root / "brain-mri-thick" / "case1_T1w.nii.gz", spacing=(6.5, 0.8, 0.8))
    return root


@pytest.fixture
def at_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root: the recipes name configs/ relative to it."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two threads spin against each other and
    make the tiny smoke models many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
