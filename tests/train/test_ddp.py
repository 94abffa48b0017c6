"""DistributedDataParallel on CPU (gloo): two processes with batch B train exactly like one
process with batch 2B. The models have no BatchNorm (EDSR, the spectral-norm U-Net
discriminator): BatchNorm statistics are per process under DDP (each rank normalises its own
half batch), so a BN model would differ slightly from the single-process run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from medsr.models import build_generator
from medsr.train import parse_config, train
from medsr.train.state import load_state

from .synthetic import GAN_STAGE, SyntheticSR, tiny_config


def config(batch_size: int):
    data = tiny_config(
        **{
            "data.batch_size": batch_size,
            "stages.0.steps": 3,
            "model.discriminator": {"arch": "unet", "params": {"num_features": 4}},
            "train.ema_decay": 0.9,
        }
    )
    data["stages"].append(dict(GAN_STAGE, steps=2))
    return parse_config(data)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    train(
        config(batch_size=2),
        out_dir=out,
        train_dataset=SyntheticSR(12),
        val_dataset=SyntheticSR(2, size=24, mode="eval"),
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_doubled_batch(tmp_path: Path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    train(
        config(batch_size=4),
        out_dir=tmp_path / "single",
        train_dataset=SyntheticSR(12),
        val_dataset=SyntheticSR(2, size=24, mode="eval"),
    )
    ddp_state = load_state(tmp_path / "ddp" / "state" / "last.pt")
    single = load_state(tmp_path / "single" / "state" / "last.pt")
    assert ddp_state["global_step"] == single["global_step"] == 5
    for part in ("generator", "discriminator", "ema"):
        for key, value in single[part].items():
            assert torch.allclose(ddp_state[part][key], value, atol=2e-6, rtol=1e-5), (part, key)
    # the weights moved, so the comparison means something
    torch.manual_seed(3)
    initial = build_generator(
        "edsr", {"scale": 2, "in_channels": 1, "num_features": 8, "num_blocks": 1}
    )
    assert any(
        not torch.allclose(v, single["generator"][k]) for k, v in initial.state_dict().items()
    )
    meta = (tmp_path / "ddp" / "checkpoints" / "last" / "config.json").read_text()
    assert '"processes": 2' in meta and '"global_batch": 4' in meta
