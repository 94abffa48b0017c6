"""Every recipe of configs/ runs end to end in smoke mode on a small real subset."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from medsr.models import load, read_config
from medsr.train import load_config, train
from tests.conftest import REPO

from .realdata import VGG16

RECIPES = {
    "1-medsrgan-lumbar-spine": "spine",
    "2-chest-xray-cnn": "chest-xray",
    "2-chest-xray-gan": "chest-xray",
    "3-real-esrgan-brain": "brats-256",
    "4-brain-tumour-srgan": "brats",
    "4-brain-tumour-espcn": "brats",
    "5-thick-thin-srgan": "brats",
}


def test_every_recipe_is_listed():
    assert sorted(p.stem for p in (REPO / "configs").glob("*.yaml")) == sorted(RECIPES)


def smoke_config(name: str, manifest: Path, shared: Path):
    path = REPO / "configs" / f"{name}.yaml"
    overrides = {"data.manifest": str(manifest)}
    full = load_config(path)
    for i, stage in enumerate(full.stages):
        if stage.losses.perceptual is not None:
            overrides[f"stages.{i}.losses.perceptual.weights"] = str(shared / VGG16)
    return path, load_config(path, overrides, smoke=True)


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_smoke_run(name, prepared, shared_data, tmp_path):
    path, config = smoke_config(name, prepared[RECIPES[name]], shared_data)
    result = train(config, out_dir=tmp_path, config_path=path)
    assert result.finished and result.skipped_steps == 0
    assert result.global_step == 2 * len(config.stages)
    metrics = result.validation
    assert metrics is not None and metrics["slices"] >= 1
    assert math.isfinite(metrics["psnr"]) and math.isfinite(metrics["psnr_bicubic"])
    model = load(tmp_path / "checkpoints" / "last")
    meta = read_config(tmp_path / "checkpoints" / "last")["metadata"]
    assert meta["recipe"]["name"] == name and meta["training"]["steps"] == result.global_step
    datasets = meta["training_data"]["datasets"]
    assert datasets and all(not d["license"].startswith("unknown") for d in datasets)
    assert meta["normalisation"] == {
        "method": "auto", "window": "wide", "percentiles": [0.5, 99.5], "clip": False,
    }  # fmt: skip
    assert meta["normalisation_details"]["training_clip"] is True
    assert meta["training_data"]["prepare"]["pad_to"] == (256 if "3-" in name else None)
    scale = meta["scale"]
    k = config.data.neighbours
    lr = torch.rand(1, 2 * k + 1, 12, 12)
    with torch.no_grad():
        assert model(lr).shape == (1, 1, 12 * scale, 12 * scale)
    for stage in config.stages:
        assert (tmp_path / "checkpoints" / stage.name / "model.safetensors").is_file()


def test_loader_workers_give_the_same_training(prepared, shared_data, tmp_path):
    """SRDataset samples seed themselves: 0 or 2 loader workers train identically."""
    from medsr.train.state import load_state

    states = []
    for workers in (0, 2):
        path, config = smoke_config("4-brain-tumour-espcn", prepared["brats"], shared_data)
        config = load_config(
            path,
            {"data.manifest": str(prepared["brats"]), "data.num_workers": workers,
             "stages.0.steps": 6},
            smoke=True,
        )  # fmt: skip
        train(config, out_dir=tmp_path / str(workers))
        states.append(load_state(tmp_path / str(workers) / "state" / "last.pt")["generator"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
