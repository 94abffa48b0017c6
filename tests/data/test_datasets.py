from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medsr.data.datasets import SRDataset, collate, make_loader
from medsr.data.manifest import PrepareOptions, prepare, read_manifest
from medsr.errors import ConfigError
from medsr.io import read
from medsr.transforms.degrade import bicubic, build_degradation
from medsr.transforms.intensity import normaliser_from_dict
from tests.data.conftest import make_brats_like

BICUBIC = build_degradation({"name": "bicubic", "scale": 4})
NOISY = build_degradation(
    [{"name": "bicubic", "scale": 4}, {"name": "gaussian_noise", "sigma": 0.05}]
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """4 BraTS-like patients, volumes (10, 42, 50), blank slices kept (so slice 0 is a row)."""
    tmp = tmp_path_factory.mktemp("prepared")
    root = make_brats_like(tmp / "brain-mri", patients=4, shape=(10, 42, 50))
    prepare([root], tmp / "out", PrepareOptions(remove_blank=False))
    return tmp / "out"


def _store(prepared: Path, row) -> np.ndarray:
    return np.load(prepared / row.store_path).astype(np.float32)


def _unit(prepared: Path, row, index=None) -> torch.Tensor:
    plane = _store(prepared, row)[row.slice_index if index is None else index]
    return torch.from_numpy(row.load_normaliser().forward(plane))


def _find(patch: torch.Tensor, image: torch.Tensor) -> tuple[int, int]:
    p = patch.shape[-1]
    for top in range(image.shape[0] - p + 1):
        for left in range(image.shape[1] - p + 1):
            if torch.equal(image[top : top + p, left : left + p], patch):
                return top, left
    raise AssertionError("patch not found in its slice")


def test_train_items_are_patches_of_the_normalised_slice(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, patch_size=16, augment=False, split="train")
    assert len(ds) == len(read_manifest(prepared)) // 2  # 2 of the 4 patients train
    for index in (0, 7, len(ds) - 1):
        item = ds[index]
        assert item["lr"].shape == (1, 4, 4) and item["hr"].shape == (1, 16, 16)
        assert item["hr"].dtype == torch.float32 and 0 <= item["hr"].min() <= item["hr"].max() <= 1
        assert item["index"] == index
        _find(item["hr"][0], _unit(prepared, ds.row(index)))
        torch.testing.assert_close(item["lr"], bicubic(item["hr"], 4))


def test_deterministic_per_seed_epoch_and_index(prepared: Path) -> None:
    a = SRDataset(prepared, degradation=NOISY, patch_size=16, seed=1)
    b = SRDataset(prepared, degradation=NOISY, patch_size=16, seed=1)
    assert torch.equal(a[3]["lr"], b[3]["lr"]) and torch.equal(a[3]["hr"], b[3]["hr"])
    assert torch.equal(a[3]["lr"], a[3]["lr"])
    b.set_epoch(1)
    assert not torch.equal(a[3]["lr"], b[3]["lr"])
    c = SRDataset(prepared, degradation=NOISY, patch_size=16, seed=2)
    assert not torch.equal(a[3]["lr"], c[3]["lr"])


def test_patches_per_slice_and_foreground_bias(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, patch_size=16, patches_per_slice=3)
    n = len(ds.rows)
    assert len(ds) == 3 * n and ds.row(n + 2) is ds.row(2)
    uniform = SRDataset(prepared, degradation=BICUBIC, patch_size=16, foreground_tries=1)
    biased = SRDataset(
        prepared, degradation=BICUBIC, patch_size=16, foreground_tries=8, min_patch_foreground=1
    )

    def mean_foreground(d: SRDataset) -> float:
        return float(np.mean([(d[i]["hr"] > 0.05).float().mean() for i in range(len(d.rows))]))

    assert mean_foreground(biased) > mean_foreground(uniform) + 0.1


def test_masks_follow_the_flips(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, patch_size=16, return_mask=True)
    for index in range(len(ds)):
        item = ds[index]
        assert item["mask"].shape == (1, 16, 16) and item["mask"].dtype == torch.bool
        assert torch.all(item["hr"][~item["mask"]] == 0)  # outside the mask is background


def test_two_point_five_d_stacks_neighbours_with_edge_replication(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, split="val", mode="eval", neighbours=1)
    assert ds.in_channels == 3
    rows = [i for i, r in enumerate(ds.rows) if r.slice_index in (0, 5)]
    for index in rows:
        item, row = ds[index], ds.row(index)
        hr = _unit(prepared, row)[:40, :48]
        torch.testing.assert_close(item["hr"][0], hr)
        assert item["lr"].shape == (3, 10, 12)
        for channel, j in enumerate((max(row.slice_index - 1, 0), row.slice_index + 1)):
            neighbour = _unit(prepared, row, j)[:40, :48]
            torch.testing.assert_close(item["lr"][2 * channel], bicubic(neighbour, 4))
    train = SRDataset(prepared, degradation=BICUBIC, patch_size=16, neighbours=2)
    item = train[0]
    assert item["lr"].shape == (5, 4, 4) and item["hr"].shape == (1, 16, 16)


def test_eval_items_are_whole_slices_with_their_normaliser(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, split="test", mode="eval", return_mask=True)
    assert len(ds) == len([r for r in read_manifest(prepared) if r.split == "test"])
    item = ds[4]
    row = ds.row(4)
    assert item["hr"].shape == (1, 40, 48)  # 42 x 50 cropped to a multiple of 4, origin kept
    assert item["lr"].shape == (1, 10, 12) and item["mask"].shape == (1, 40, 48)
    assert (item["volume_id"], item["slice_index"], item["subject_id"]) == (
        row.volume_id,
        row.slice_index,
        row.subject_id,
    )
    physical = normaliser_from_dict(item["normaliser"]).inverse(item["hr"][0].numpy())
    source = _store(prepared, row)[row.slice_index, :40, :48]
    low, high = item["normaliser"]["low"], item["normaliser"]["high"]
    inside = (source >= low) & (source <= high)
    np.testing.assert_allclose(physical[inside], source[inside], rtol=1e-5, atol=1e-3)
    again = SRDataset(prepared, degradation=NOISY, split="test", mode="eval")
    again.set_epoch(5)  # evaluation does not change with the epoch
    assert torch.equal(
        again[4]["lr"], SRDataset(prepared, degradation=NOISY, split="test", mode="eval")[4]["lr"]
    )


def test_slices_smaller_than_the_patch_are_padded_with_background(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=BICUBIC, patch_size=64, augment=False)
    item = ds[2]
    assert item["hr"].shape == (1, 64, 64) and item["lr"].shape == (1, 16, 16)
    assert torch.all(item["hr"][:, 42:, :] == 0) and torch.all(item["hr"][:, :, 50:] == 0)


def test_workers_give_the_same_batches(prepared: Path) -> None:
    ds = SRDataset(prepared, degradation=NOISY, patch_size=16, neighbours=1)
    single = list(make_loader(ds, batch_size=4, num_workers=0, shuffle=False))
    double = list(make_loader(ds, batch_size=4, num_workers=2, shuffle=False))
    assert len(single) == len(double) == len(ds) // 4
    for a, b in zip(single, double, strict=True):
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
        assert a["index"] == b["index"]
    first = next(iter(make_loader(ds, batch_size=4, num_workers=0, seed=9)))["index"]
    assert first == next(iter(make_loader(ds, batch_size=4, num_workers=0, seed=9)))["index"]
    assert first != list(range(4))  # shuffled


def test_collate_keeps_odd_sizes_as_lists() -> None:
    items = [
        {"hr": torch.zeros(1, 8, 8), "normaliser": {"kind": "minmax"}, "index": 0},
        {"hr": torch.zeros(1, 8, 12), "normaliser": {"kind": "minmax"}, "index": 1},
    ]
    batch = collate(items)
    assert isinstance(batch["hr"], list) and batch["normaliser"][1] == {"kind": "minmax"}
    assert batch["index"] == [0, 1]
    same = collate([items[0], items[0]])
    assert same["hr"].shape == (2, 1, 8, 8)


def test_bad_options(prepared: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of the scale"):
        SRDataset(prepared, degradation=BICUBIC, patch_size=30)
    with pytest.raises(ConfigError, match="Degradation"):
        SRDataset(prepared, degradation=[{"name": "bicubic", "scale": 4}])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no rows"):
        SRDataset(prepared, degradation=BICUBIC, split="holdout")
    with pytest.raises(ConfigError, match="mode"):
        SRDataset(prepared, degradation=BICUBIC, mode="test")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="foreground_tries"):
        SRDataset(prepared, degradation=BICUBIC, foreground_tries=0)
    with pytest.raises(ConfigError, match="dataset"):
        SRDataset(prepared, degradation=BICUBIC, datasets=["spine"])


def test_dataset_repeats_oversample_a_dataset_in_training_only(prepared: Path) -> None:
    plain = SRDataset(prepared, degradation=BICUBIC, patch_size=16)
    dataset = plain.rows[0].dataset
    repeated = SRDataset(prepared, degradation=BICUBIC, patch_size=16, dataset_repeats={dataset: 3})
    assert len(repeated) == 3 * len(plain)
    assert [r.content_hash for r in repeated.rows[:3]] == [plain.rows[0].content_hash] * 3
    # distinct indices of a repeated slice give distinct random patches
    assert not torch.equal(repeated[0]["hr"], repeated[1]["hr"])
    val = SRDataset(
        prepared, degradation=BICUBIC, split="val", mode="eval", dataset_repeats={dataset: 3}
    )
    assert len(val) == len(SRDataset(prepared, degradation=BICUBIC, split="val", mode="eval"))
    with pytest.raises(ConfigError, match="dataset_repeats"):
        SRDataset(prepared, degradation=BICUBIC, patch_size=16, dataset_repeats={dataset: 0})


def test_modality_degradations_replace_the_default_for_their_modality(prepared: Path) -> None:
    import dataclasses

    kspace = build_degradation({"name": "kspace", "scale": 4, "window": "tukey"})
    ds = SRDataset(
        prepared,
        degradation=BICUBIC,
        patch_size=16,
        augment=False,
        modality_degradations={"MR": kspace},
    )
    item = ds[3]
    torch.testing.assert_close(item["lr"], kspace(item["hr"]))  # the MR slices' own operator
    assert not torch.allclose(item["lr"], bicubic(item["hr"], 4))
    # a row of another modality falls back to the default degradation
    ct_row = dataclasses.replace(ds.row(3), modality="CT")
    assert ds.degradation_for(ct_row) is BICUBIC and ds.degradation_for(ds.row(3)) is kspace
    val = SRDataset(
        prepared,
        degradation=BICUBIC,
        split="val",
        mode="eval",
        modality_degradations={"MR": kspace},
    )
    whole = val[0]
    torch.testing.assert_close(whole["lr"], kspace(whole["hr"]))
    # eval splits may lack a modality the training split has
    SRDataset(
        prepared,
        degradation=BICUBIC,
        split="val",
        mode="eval",
        modality_degradations={"CT": kspace},
    )
    with pytest.raises(ConfigError, match=r"modality CT, but no slice of split 'train'.*: MR"):
        SRDataset(
            prepared, degradation=BICUBIC, patch_size=16, modality_degradations={"CT": kspace}
        )
    x2 = build_degradation({"name": "bicubic", "scale": 2})
    with pytest.raises(ConfigError, match=r"modality MR has scale factors \(2, 2\)"):
        SRDataset(prepared, degradation=BICUBIC, patch_size=16, modality_degradations={"MR": x2})
    with pytest.raises(ConfigError, match="modality MR must be a Degradation"):
        SRDataset(
            prepared, degradation=BICUBIC, modality_degradations={"MR": [{"name": "bicubic"}]}
        )  # type: ignore[dict-item]


def test_real_brats_slice_round_trips_to_physical_units(shared_data: Path, tmp_path: Path) -> None:
    flair = shared_data / "brain-mri-brats2013" / "pat0003" / "Flair_subtrMeanDivStd.nii.gz"
    if not flair.is_file():
        pytest.skip("BraTS pat0003 missing")
    (tmp_path / "brain-mri").mkdir()
    (tmp_path / "brain-mri" / flair.name).symlink_to(flair)
    prepare([tmp_path / "brain-mri"], tmp_path / "out", PrepareOptions(fractions=(1.0, 0, 0)))
    ds = SRDataset(tmp_path / "out", degradation=BICUBIC, mode="eval", neighbours=1)
    index = next(i for i, r in enumerate(ds.rows) if r.slice_index == 80)
    item = ds[index]
    volume = read(flair).array
    physical = normaliser_from_dict(item["normaliser"]).inverse(item["hr"][0].numpy())
    norm = item["normaliser"]
    inside = (volume[80] > norm["low"]) & (volume[80] < norm["high"])
    np.testing.assert_allclose(physical[inside], volume[80][inside], atol=1e-5)
    assert item["lr"].shape == (3, 60, 60)
    train = SRDataset(tmp_path / "out", degradation=BICUBIC, patch_size=128)
    assert train[index]["hr"].shape == (1, 128, 128)


def test_intensity_scale_multiplies_each_training_patch_before_degradation(
    prepared: Path,
) -> None:
    plain = SRDataset(prepared, degradation=BICUBIC, patch_size=16, augment=False, seed=3)
    scaled = SRDataset(
        prepared,
        degradation=BICUBIC,
        patch_size=16,
        augment=False,
        seed=3,
        intensity_scale=(0.5, 0.9),
    )
    factors = []
    for index in range(6):
        a, b = plain[index], scaled[index]
        bright = a["hr"] > 0.05
        factor = float((b["hr"][bright] / a["hr"][bright]).mean())
        assert 0.5 <= factor <= 0.9
        torch.testing.assert_close(b["hr"], a["hr"] * factor)  # same patch, one factor
        torch.testing.assert_close(b["lr"], bicubic(b["hr"], 4))  # degraded after scaling
        factors.append(factor)
    assert len({round(f, 4) for f in factors}) == len(factors)  # one draw per item
    val = SRDataset(
        prepared, degradation=BICUBIC, split="val", mode="eval", intensity_scale=(0.5, 0.9)
    )
    plain_val = SRDataset(prepared, degradation=BICUBIC, split="val", mode="eval")
    assert torch.equal(val[0]["hr"], plain_val[0]["hr"])  # evaluation is never scaled
    for bad in [(0, 1), (0.8, 0.5), (0.5, 1.5), (0.5,), "x"]:
        with pytest.raises(ConfigError, match="intensity_scale"):
            SRDataset(prepared, degradation=BICUBIC, patch_size=16, intensity_scale=bad)
