"""Small real subsets of ../shared/data, prepared with ``medsr prepare`` for smoke runs.

Each helper copies a few volumes (cut to a few slices) into a folder named like the shared
dataset, so that the dataset names (and their licences in the recipes) stay the same, and
prepares it into ``out``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

SPINE = ("VB1_02", "VB1_03", "IVD_11")


def _prepare(sources: list[Path], out: Path, **options) -> None:
    from medsr.data.manifest import PrepareOptions, prepare

    prepare(sources, out, PrepareOptions(**options))


BRATS = ("pat0003", "pat0004", "pat0005")


def spine(shared: Path, work: Path) -> Path:
    """Three spine volumes, 8 central sagittal slices each (3 subjects: 1/1/1 split)."""
    source = work / "spine-mri"
    source.mkdir(parents=True, exist_ok=True)
    for name in SPINE:
        image = np.load(shared / "spine-mri" / f"{name}.npz")["image"]
        centre = image.shape[2] // 2
        np.savez(source / f"{name}.npz", image=image[:, :, centre - 4 : centre + 4])
    out = work / "prepared-spine"
    _prepare([source], out)
    return out


def brats(shared: Path, work: Path, *, pad_to: int | None = None) -> Path:
    """FLAIR of three BraTS patients, 8 axial slices through the tumour region each."""
    import nibabel as nib

    source = work / "brain-mri-brats2013"
    if not source.exists():
        for patient in BRATS:
            folder = source / patient
            folder.mkdir(parents=True)
            volume = nib.load(
                shared / "brain-mri-brats2013" / patient / "Flair_subtrMeanDivStd.nii.gz"
            )
            data = np.asarray(volume.dataobj, dtype=np.float32)[:, :, 70:78]
            nib.save(nib.Nifti1Image(data, volume.affine), folder / "Flair_subtrMeanDivStd.nii.gz")
    out = work / (f"prepared-brats-{pad_to}" if pad_to else "prepared-brats")
    _prepare([source], out, pad_to=pad_to)
    return out


def chest_xray(shared: Path, work: Path) -> Path:
    """The two radiographs resized to 512 x 512 (1 train, 1 val)."""
    source = work / "chest-xray"
    shutil.copytree(shared / "chest-xray", source)
    out = work / "prepared-chest-xray-512"
    _prepare([source], out, resize=(512, 512))
    return out


VGG16 = "weights/vgg16-features-imagenet-mri-finetuned.safetensors"
