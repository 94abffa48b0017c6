"""The resumable sharded sampler, the batch stream and validation helpers."""

from __future__ import annotations

import pytest
import torch

from medsr.errors import ConfigError
from medsr.train.config import DataConfig
from medsr.train.data import (
    BatchStream,
    ResumableBatchSampler,
    build_modality_degradations,
    centre_crop_pair,
    validation_indices,
)

from .synthetic import SyntheticSR


def test_each_epoch_is_a_new_seeded_permutation():
    sampler = ResumableBatchSampler(10, batch_size=3, seed=1)
    assert sampler.batches_per_epoch == 3 and len(sampler) == 3
    first = list(sampler)
    assert all(len(b) == 3 for b in first)
    assert len({i for b in first for i in b}) == 9  # no repeats; the last partial batch dropped
    assert list(ResumableBatchSampler(10, batch_size=3, seed=1)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(ResumableBatchSampler(10, batch_size=3, seed=2)) != first


def test_ranks_split_each_global_batch():
    single = ResumableBatchSampler(12, batch_size=4, seed=5)
    ranks = [ResumableBatchSampler(12, batch_size=2, seed=5, rank=r, world_size=2) for r in (0, 1)]
    for epoch in range(2):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        for whole, part0, part1 in zip(single, *ranks, strict=True):
            assert sorted(whole) == sorted(part0 + part1)
            assert not set(part0) & set(part1)


def test_start_in_the_middle_of_an_epoch():
    sampler = ResumableBatchSampler(12, batch_size=2, seed=0)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 2
    with pytest.raises(ConfigError):
        sampler.set_epoch(0, start=7)


def test_too_small_a_dataset_is_refused():
    with pytest.raises(ConfigError, match="fewer than one global batch"):
        ResumableBatchSampler(3, batch_size=2, seed=0, world_size=2)


def test_stream_resumes_exactly_and_crosses_epochs():
    data = SyntheticSR(6, size=8)

    def stream(epoch=0, position=0):
        sampler = ResumableBatchSampler(len(data), batch_size=2, seed=4)
        return BatchStream(data, sampler, seed=4, epoch=epoch, position=position)

    whole = stream()
    batches = [whole.next() for _ in range(7)]  # 3 per epoch: crosses two epoch ends
    assert whole.state() == {"epoch": 2, "position": 1}
    first = stream()
    for _ in range(4):
        first.next()
    state = first.state()
    assert state == {"epoch": 1, "position": 1}
    second = stream(**state)
    for expected in batches[4:]:
        got = second.next()
        assert torch.equal(got["hr"], expected["hr"]) and torch.equal(got["lr"], expected["lr"])
    # a state saved at the very end of an epoch continues with the next epoch
    end = stream(epoch=0, position=3)
    assert torch.equal(end.next()["index"], batches[3]["index"])


def test_workers_give_the_same_batches():
    data = SyntheticSR(8, size=8)
    plain = BatchStream(data, ResumableBatchSampler(8, batch_size=2, seed=1), seed=1)
    workers = BatchStream(
        data, ResumableBatchSampler(8, batch_size=2, seed=1), seed=1, num_workers=2
    )
    for _ in range(5):
        a, b = plain.next(), workers.next()
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["index"], b["index"])
    workers.close()


def test_validation_indices():
    assert validation_indices(5, None) == [0, 1, 2, 3, 4]
    assert validation_indices(5, 10) == [0, 1, 2, 3, 4]
    assert validation_indices(101, 3) == [0, 50, 100]


def test_centre_crop_pair_keeps_the_lr_hr_correspondence():
    hr = torch.arange(30 * 40, dtype=torch.float32).reshape(1, 30, 40)
    lr = hr[:, ::2, ::2].repeat(3, 1, 1)  # LR pixel (i, j) <-> HR pixel (2i, 2j)
    lr_c, hr_c = centre_crop_pair(lr, hr, 21, (2, 2))
    assert hr_c.shape == (1, 20, 20) and lr_c.shape == (3, 10, 10)
    assert torch.equal(lr_c[0], hr_c[0, ::2, ::2])
    assert centre_crop_pair(lr, hr, None, (2, 2))[1] is hr
    with pytest.raises(ConfigError):
        centre_crop_pair(lr, hr, 1, (2, 2))


def test_modality_degradations_are_built_per_modality_and_errors_name_the_key(tmp_path):
    stages = [{"name": "mixed_downsample", "scale": 2, "kinds": ["bicubic", "gaussian_blur"]}]
    yaml_file = tmp_path / "mr.yaml"
    yaml_file.write_text("- {name: kspace, scale: 2}\n")
    data = DataConfig(
        manifest="m", degradation=[], modality_degradation={"CT": stages, "MR": str(yaml_file)}
    )
    built = build_modality_degradations(data)
    assert built["CT"].to_config()[0]["kinds"] == ["bicubic", "gaussian_blur"]
    assert built["MR"].to_config()[0]["name"] == "kspace"
    assert build_modality_degradations(DataConfig(manifest="m", degradation=[])) == {}
    bad = DataConfig(manifest="m", degradation=[], modality_degradation={"DX": [{"name": "x"}]})
    with pytest.raises(ConfigError, match=r"data\.modality_degradation\.DX: .*x"):
        build_modality_degradations(bad)
