"""Real test images for the metrics, read directly with Pillow, nibabel and pydicom.

Every case is a 2-D float64 ground truth in physical units with an explicit data range
(and a real region mask where one exists). The chest X-ray and BraTS cases need
``../shared/data`` and skip without it; the DICOM cases come with pydicom.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage


@dataclass(frozen=True)
class Case:
    name: str
    hr: np.ndarray  # (H, W) float64, physical units
    data_range: float
    mask: np.ndarray | None  # (H, W) bool: a real region where the data has one


@functools.cache
def _chest_xray(path: Path) -> Case:
    from PIL import Image

    full = np.asarray(Image.open(path)).astype(np.float64)
    # a 256x256 crop through the right lung and the mediastinum: real texture and edges
    hr = np.ascontiguousarray(full[384:640, 300:556])
    return Case(path.stem, hr, 255.0, hr > 100)


@functools.cache
def _brats(root: Path) -> Case:
    import nibabel as nib

    flair = np.asarray(nib.load(root / "Flair_subtrMeanDivStd.nii.gz").dataobj, np.float64)
    brain = np.asarray(nib.load(root / "brainmask.nii.gz").dataobj, np.float64)
    # the range of the whole volume, so every slice of it is scored on the same scale
    width = float(flair.max() - flair.min())
    return Case("brats-flair", flair[:, :, 80], width, np.round(brain[:, :, 80]) == 1)


@functools.cache
def _dicom(path: Path) -> Case:
    import pydicom

    ds = pydicom.dcmread(path)
    hr = ds.pixel_array.astype(np.float64)
    hr = hr * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    if path.name.startswith("CT"):
        return Case("ct-small", hr, 4096.0, hr > -500)  # CT window -1024..3071 HU
    return Case("mr-small", hr, 4096.0, None)  # 12-bit MR scanner units


CASES = ("cxr-01", "cxr-02", "brats-flair", "ct-small", "mr-small")


def load_case(request: pytest.FixtureRequest, name: str) -> Case:
    if name.startswith("cxr"):
        shared: Path = request.getfixturevalue("shared_data")
        return _chest_xray(shared / "chest-xray" / f"{name}.png")
    if name == "brats-flair":
        shared = request.getfixturevalue("shared_data")
        return _brats(shared / "brain-mri-brats2013" / "pat0003")
    dicom_file = request.getfixturevalue("dicom_file")
    return _dicom(dicom_file("CT_small.dcm" if name == "ct-small" else "MR_small.dcm"))


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> Case:
    """Each real image in turn (cases whose data is absent are skipped)."""
    return load_case(request, request.param)


@pytest.fixture
def load(request: pytest.FixtureRequest):
    """``load(name)``: one real case by name."""
    return functools.partial(load_case, request)


def degrade(hr: np.ndarray, kind: str, data_range: float, seed: int = 0) -> np.ndarray:
    """A degraded copy of ``hr``: "blur" (Gaussian sigma 1), "noise" (2% of the range) or
    "blur+noise"."""
    out = hr
    if "blur" in kind:
        out = ndimage.gaussian_filter(out, 1.0, mode="reflect")
    if "noise" in kind:
        rng = np.random.default_rng(seed)
        out = out + rng.normal(0.0, 0.02 * data_range, hr.shape)
    return out


DEGRADATIONS = ("blur", "noise", "blur+noise")


@pytest.fixture(params=DEGRADATIONS)
def pair(case: Case, request: pytest.FixtureRequest) -> tuple[np.ndarray, Case]:
    """``(sr, case)``: each real image with each degradation."""
    return degrade(case.hr, request.param, case.data_range), case


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """The metrics tests use small images, where a second intra-op thread only adds
    synchronisation; on a loaded 2-core machine it made them several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def blurred_noisy_pair(case: Case) -> tuple[np.ndarray, Case]:
    """``(sr, case)`` with blur and noise only: for the slower reference implementations."""
    return degrade(case.hr, "blur+noise", case.data_range), case
