from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsr.data.scan import is_mask_name, scan
from medsr.errors import ConfigError
from tests.data.conftest import blob_volume, write_dicom_series


def _png(path: Path, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.full((8, 8), value, np.uint8)).save(path)
    return path


def test_mask_names() -> None:
    for name in ("brainmask.nii.gz", "case1_seg.nii.gz", "img-label.png", "Mask.png"):
        assert is_mask_name(Path(name))
    for name in ("Flair_subtrMeanDivStd.nii.gz", "VB1_02.npz", "cxr-01.png"):
        assert not is_mask_name(Path(name))


def test_brats_layout_two_sequences_share_the_folder_mask(brats_like: Path) -> None:
    found = scan([brats_like])
    assert len(found.volumes) == 8 and not found.unattached_masks
    assert {v.dataset for v in found.volumes} == {"brain-mri"}
    ids = sorted(v.volume_id for v in found.volumes)
    assert ids[:2] == ["brain-mri/pat0001/Flair", "brain-mri/pat0001/T1c"]
    for volume in found.volumes:
        assert volume.mask_path == volume.path.parent / "brainmask.nii.gz"
        assert volume.format == "nifti"


def test_masks_match_by_name_else_stay_unattached(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for name in ("case1.png", "case1_mask.png", "case2.png", "case2-seg.png"):
        _png(root / name)
    _png(root / "other" / "a.png")
    _png(root / "other" / "x_mask.png")
    _png(root / "other" / "y_label.png")
    (root / "notes.txt").write_text("not an image")
    found = scan([root])
    masks = {v.path.name: v.mask_path and v.mask_path.name for v in found.volumes}
    assert masks == {"case1.png": "case1_mask.png", "case2.png": "case2-seg.png", "a.png": None}
    assert sorted(Path(m).name for m in found.unattached_masks) == ["x_mask.png", "y_label.png"]


def test_dicom_series_folders_and_sources_of_each_kind(dicom_file, tmp_path: Path) -> None:
    root = tmp_path / "chest"
    write_dicom_series(
        dicom_file("MR_small.dcm"), root / "A01", blob_volume((3, 64, 64)), patient_id="P1"
    )
    found = scan([root])
    assert [(v.dataset, v.volume_id, v.format) for v in found.volumes] == [
        ("chest", "chest/A01", "dicom")
    ]
    # a series folder given directly belongs to the dataset of its parent folder
    direct = scan([root / "A01"]).volumes
    assert [(v.dataset, v.volume_id) for v in direct] == [("chest", "chest/A01")]
    # a file given directly too; the same volume reached twice is listed once
    png = _png(tmp_path / "xr" / "img.png")
    files = scan([png, tmp_path / "xr"]).volumes
    assert [(v.dataset, v.volume_id) for v in files] == [("xr", "xr/img")]


def test_folder_with_two_series_gives_two_volumes(dicom_file, tmp_path: Path) -> None:
    folder = tmp_path / "d" / "mixed"
    write_dicom_series(dicom_file("MR_small.dcm"), folder, blob_volume((2, 64, 64)), patient_id="a")
    other = tmp_path / "other"
    write_dicom_series(dicom_file("MR_small.dcm"), other, blob_volume((2, 64, 64)), patient_id="a")
    for f in other.iterdir():
        shutil.copy(f, folder / f"b_{f.name}")
    found = scan([tmp_path / "d"]).volumes
    assert [v.volume_id for v in found] == ["d/mixed#1", "d/mixed#2"]
    assert all(v.series_uid for v in found)


def test_missing_or_unreadable_sources_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        scan([tmp_path / "nope"])
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an image"):
        scan([tmp_path / "a.txt"])
