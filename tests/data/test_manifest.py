from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medsr.data.manifest import (
    COLUMNS,
    PrepareOptions,
    SliceRecord,
    modality_from_name,
    prepare,
    read_manifest,
    write_manifest,
)
from medsr.errors import ConfigError
from medsr.io import read
from tests.data.conftest import blob_volume, make_npz_folder, write_dicom_series, write_nifti


def _by_volume(records: list[SliceRecord]) -> dict[str, list[SliceRecord]]:
    out: dict[str, list[SliceRecord]] = {}
    for r in records:
        out.setdefault(r.volume_id, []).append(r)
    return out


def test_brats_like_folder(brats_like: Path, tmp_path: Path) -> None:
    result = prepare([brats_like], tmp_path / "out")
    records = result.records
    volumes = _by_volume(records)
    assert len(volumes) == 8
    # slices 0, 1, 8, 9 of every volume are all zero: removed as blank
    for rows in volumes.values():
        assert [r.slice_index for r in rows] == [2, 3, 4, 5, 6, 7]
    report = result.report
    assert report["totals"] == {
        "volumes": 8,
        "slices": 80,
        "blank_removed": 32,
        "duplicate_removed": 0,
        "kept": 48,
        "subjects": 4,
    }
    assert report["removed"]["brain-mri/pat0001/Flair"]["blank"] == [0, 1, 8, 9]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["totals"] == report["totals"]
    first = volumes["brain-mri/pat0001/Flair"][0]
    assert (first.modality, first.dataset, first.subject_id) == ("MR", "brain-mri", "pat0001")
    assert first.has_mask and first.mask_path and 0 < first.mask_fraction < 1
    assert first.load_normaliser().kind == "percentile"
    # the store holds every slice of the volume in physical units, memory-mapped
    store = np.load(tmp_path / "out" / first.store_path, mmap_mode="r")
    source = read(brats_like / "pat0001" / "Flair.nii.gz").array
    assert store.shape == (10, 24, 28) and store.dtype == np.uint16
    assert np.array_equal(store, source)
    mask = np.load(tmp_path / "out" / first.mask_path, mmap_mode="r")
    assert mask.dtype == bool and np.array_equal(mask, source > 0)
    assert first.mask_fraction == pytest.approx((source[2] > 0).mean())


def test_no_subject_crosses_splits_and_sequences_stay_together(tmp_path: Path) -> None:
    from tests.data.conftest import make_brats_like

    root = make_brats_like(tmp_path / "mri", patients=12, shape=(6, 12, 12))
    records = prepare([root], tmp_path / "out", PrepareOptions(seed=3)).records
    split_of: dict[str, set[str]] = {}
    for r in records:
        split_of.setdefault(r.subject_id, set()).add(r.split)
    assert all(len(s) == 1 for s in split_of.values())
    counts = [sum(1 for s in split_of.values() if name in s) for name in ("train", "val", "test")]
    assert counts == [10, 1, 1]
    again = prepare([root], tmp_path / "again", PrepareOptions(seed=3)).records
    assert [r.split for r in again] == [r.split for r in records]


def test_duplicates_are_removed_by_content_and_reported(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "spine", ["A_01", "A_02"])
    shutil.copy(root / "A_01.npz", root / "B_01.npz")  # the same scan under another name
    result = prepare([root], tmp_path / "out")
    by_volume = _by_volume(result.records)
    assert "spine/B_01" not in by_volume
    removed = result.report["removed"]["spine/B_01"]
    assert len(removed["duplicate"]) == len(by_volume["spine/A_01"])
    assert removed["duplicate"][0]["same_as"].startswith("spine/A_01:")
    kept = prepare([root], tmp_path / "keep", PrepareOptions(remove_duplicates=False)).records
    assert len(_by_volume(kept)["spine/B_01"]) == len(by_volume["spine/A_01"])
    everything = prepare(
        [root], tmp_path / "all", PrepareOptions(remove_duplicates=False, remove_blank=False)
    )
    assert len(everything.records) == 3 * 9


def test_npz_slices_last_by_default_and_axis_option(tmp_path: Path) -> None:
    root = make_npz_folder(tmp_path / "spine-mri", ["VB1_02"], shape=(20, 24, 9))
    default = prepare([root], tmp_path / "a", PrepareOptions(remove_blank=False)).records
    assert (default[0].num_slices, default[0].height, default[0].width) == (9, 20, 24)
    assert default[0].slice_axis == 2 and default[0].source_shape == "20x24x9"
    assert default[0].modality == "MR" and default[0].subject_id == "VB1_02"
    axis0 = prepare(
        [root], tmp_path / "b", PrepareOptions(slice_axis={"spine-mri": 0}, remove_blank=False)
    ).records
    assert (axis0[0].num_slices, axis0[0].height, axis0[0].width) == (20, 24, 9)
    raw = np.load(root / "VB1_02.npz")["image"]
    store = np.load(tmp_path / "b" / axis0[5].store_path)
    assert np.array_equal(store[5], raw[5])


def test_crop_pad_resize_are_recorded_and_applied(brats_like: Path, tmp_path: Path) -> None:
    options = PrepareOptions(crop_border=True, crop_margin=1, pad_to=32, resize=(16, 16))
    records = prepare([brats_like], tmp_path / "out", options).records
    r = records[0]
    t = r.plane_transform()
    assert t.cropped and t.padded and t.resized
    assert (r.height, r.width) == (16, 16) and (r.source_height, r.source_width) == (24, 28)
    assert r.crop_height + r.pad_top + r.pad_bottom == 32
    assert r.spacing_y == pytest.approx(32 / 16) and r.slice_spacing == 1.0
    store = np.load(tmp_path / "out" / r.store_path)
    assert store.shape == (10, 16, 16) and store.dtype == np.float32
    assert store.min() >= 0  # padding uses the volume minimum (0 here), resize is clipped


def test_manifest_round_trip_and_strict_columns(brats_like: Path, tmp_path: Path) -> None:
    records = prepare([brats_like], tmp_path / "out").records
    assert read_manifest(tmp_path / "out") == records
    assert read_manifest(tmp_path / "out" / "manifest.csv") == records
    first = dataclasses.asdict(records[0])
    assert list(first) == list(COLUMNS)
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,volume_id\nx,y\n")
    with pytest.raises(ConfigError, match="not a medsr manifest"):
        read_manifest(bad)


def test_parquet_manifest(brats_like: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    result = prepare([brats_like], tmp_path / "out", PrepareOptions(format="parquet"))
    assert (tmp_path / "out" / "manifest.csv").is_file()
    assert read_manifest(tmp_path / "out" / "manifest.parquet") == result.records
    write_manifest(result.records[:3], tmp_path / "x.parquet")
    assert read_manifest(tmp_path / "x.parquet") == result.records[:3]


def test_normaliser_gives_back_physical_units(brats_like: Path, tmp_path: Path) -> None:
    records = prepare([brats_like], tmp_path / "out").records
    r = records[0]
    normaliser = r.load_normaliser()
    store = np.load(tmp_path / "out" / r.store_path).astype(np.float32)[r.slice_index]
    unit = normaliser.forward(store)
    assert unit.min() >= 0 and unit.max() <= 1
    inside = (store >= normaliser.low) & (store <= normaliser.high)
    np.testing.assert_allclose(normaliser.inverse(unit)[inside], store[inside], rtol=1e-5)


def test_patient_ids_never_reach_the_outputs(dicom_file, tmp_path: Path) -> None:
    write_dicom_series(
        dicom_file("MR_small.dcm"),
        tmp_path / "mr" / "S1",
        blob_volume((4, 64, 64)),
        patient_id="SECRET-4711",
    )
    prepare([tmp_path / "mr"], tmp_path / "out", PrepareOptions(salt="x"))
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert b"SECRET-4711" not in path.read_bytes(), path


def test_overwrite_errors_and_skips(brats_like: Path, tmp_path: Path) -> None:
    prepare([brats_like], tmp_path / "out")
    with pytest.raises(ConfigError, match="overwrite"):
        prepare([brats_like], tmp_path / "out")
    (brats_like / "pat0002" / "Extra.nii.gz").write_bytes(b"\x1f\x8b broken")
    result = prepare([brats_like], tmp_path / "out", overwrite=True)
    assert [Path(s["path"]).name for s in result.report["skipped"]] == ["Extra.nii.gz"]
    assert len(_by_volume(result.records)) == 8
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no image found"):
        prepare([empty], tmp_path / "o2")
    with pytest.raises(ConfigError, match="slice axis"):
        PrepareOptions(slice_axis={"": 3})
    with pytest.raises(ConfigError, match="normaliser"):
        PrepareOptions(normaliser="zscore")


def test_modality_from_dataset_names() -> None:
    assert modality_from_name("spine-mri") == "MR"
    assert modality_from_name("brain-mri-brats2013") == "MR"
    assert modality_from_name("chest-ct") == "CT"
    assert modality_from_name("chest-xray") == "DX"
    assert modality_from_name("NIH_X-ray") == "DX"
    assert modality_from_name("project") is None  # no whole word
    assert modality_from_name("ct-and-mri") is None  # ambiguous


# -- real data -----------------------------------------------------------------------------------
def test_real_brats_patient_and_spine_volume(shared_data: Path, tmp_path: Path) -> None:
    brats = shared_data / "brain-mri-brats2013" / "pat0003"
    spine = shared_data / "spine-mri" / "VB1_02.npz"
    if not (brats.is_dir() and spine.is_file()):
        pytest.skip("BraTS pat0003 or spine VB1_02 missing")
    root = tmp_path / "brain-mri" / "pat0003"  # links keep the test to one patient
    root.mkdir(parents=True)
    for f in brats.iterdir():
        (root / f.name).symlink_to(f)
    result = prepare([tmp_path / "brain-mri", spine], tmp_path / "out")
    volumes = _by_volume(result.records)
    assert sorted(volumes) == [
        "brain-mri/pat0003/Flair_subtrMeanDivStd",
        "brain-mri/pat0003/T1c_subtrMeanDivStd",
        "spine-mri/VB1_02",
    ]
    flair = volumes["brain-mri/pat0003/Flair_subtrMeanDivStd"]
    assert {r.subject_id for r in flair + volumes["brain-mri/pat0003/T1c_subtrMeanDivStd"]} == {
        "pat0003"
    }
    assert flair[0].num_slices == 155 and (flair[0].height, flair[0].width) == (240, 240)
    assert 100 < len(flair) < 155  # the empty slices above and below the head are gone
    assert all(r.has_mask for r in flair) and max(r.mask_fraction for r in flair) > 0.2
    assert all(r.foreground_fraction >= 0.01 for r in flair)
    split_of: dict[str, set[str]] = {}
    for r in result.records:
        split_of.setdefault(r.subject_id, set()).add(r.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    spine_rows = volumes["spine-mri/VB1_02"]
    assert spine_rows[0].num_slices == 57 and spine_rows[0].store_dtype == "uint8"
    assert spine_rows[0].modality == "MR" and spine_rows[0].subject_id == "VB1_02"


def test_two_d_images_colour_to_grey_and_xray_bit_depth(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    root = tmp_path / "chest-xray"
    root.mkdir()
    grey = np.random.default_rng(0).integers(20, 255, (32, 40)).astype(np.uint8)
    PILImage.fromarray(grey).save(root / "a.png")
    rgb = np.stack([grey, grey // 2, grey // 3], axis=-1)
    PILImage.fromarray(rgb).save(root / "b.png")
    result = prepare([root], tmp_path / "out")
    a, b = sorted(result.records, key=lambda r: r.volume_id)
    assert (a.num_slices, a.height, a.width, a.slice_index) == (1, 32, 40, 0)
    assert a.modality == "DX" and a.normaliser_dict() == {
        "kind": "bit_depth",
        "bits_stored": 8,
        "signed": False,
        "clip": True,
    }
    assert np.array_equal(np.load(tmp_path / "out" / a.store_path)[0], grey)
    stored = np.load(tmp_path / "out" / b.store_path)[0]
    np.testing.assert_allclose(stored, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)
    assert result.report["transforms"]["colour_to_grey"] == 1


def test_options_fail_before_any_work(brats_like: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="percentiles"):
        PrepareOptions(percentiles=(99.5, 0.5))
    with pytest.raises(ConfigError, match="does not match"):
        prepare([brats_like], tmp_path / "a", PrepareOptions(subject_regex=r"sub-\d+"))
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'medsr\[parquet\]'"):
        prepare([brats_like], tmp_path / "b", PrepareOptions(format="parquet"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_bad_masks_are_reported_and_the_image_kept(brats_like: Path, tmp_path: Path) -> None:
    (brats_like / "pat0001" / "brainmask.nii.gz").write_bytes(b"\x1f\x8b broken")
    (brats_like / "pat0002" / "brainmask.nii.gz").unlink()
    write_nifti(np.ones((4, 5, 6), np.float32), brats_like / "pat0002" / "brainmask.nii.gz")
    result = prepare([brats_like], tmp_path / "out")
    volumes = _by_volume(result.records)
    assert len(volumes) == 8
    for patient in ("pat0001", "pat0002"):
        assert not volumes[f"brain-mri/{patient}/Flair"][0].has_mask
    assert volumes["brain-mri/pat0003/Flair"][0].has_mask
    warnings = result.report["warnings"]
    assert any("cannot be read" in w for w in warnings)
    assert any("has shape (4, 5, 6)" in w for w in warnings)
    facts = {v["volume_id"]: v["mask"] for v in result.report["volumes"]}
    assert facts["brain-mri/pat0001/Flair"] is None
    assert facts["brain-mri/pat0003/Flair"].endswith("brainmask.nii.gz")
