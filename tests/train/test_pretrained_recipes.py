"""The recipes of the shipped models (configs/pretrained/) run end to end in smoke mode."""

from __future__ import annotations

import math

import pytest
import torch

from medsr.models import PRETRAINED, load, read_config
from medsr.train import load_config, train
from tests.conftest import REPO

from .realdata import VGG16

PRETRAINED_RECIPES = sorted((REPO / "configs" / "pretrained").glob("*.yaml"))


def test_every_shipped_model_has_its_recipe():
    names = {p.stem for p in PRETRAINED_RECIPES}
    for entry in PRETRAINED.values():
        meta = read_config(entry.folder())["metadata"]
        assert meta["recipe"]["name"] in names


@pytest.mark.parametrize("path", PRETRAINED_RECIPES, ids=lambda p: p.stem)
def test_pretrained_recipe_smoke_run(path, prepared, shared_data, tmp_path):
    # the mixed manifest is four datasets; the spine subset stands in (dataset_repeats of
    # absent datasets are ignored)
    overrides: dict = {"data.manifest": str(prepared["spine"])}
    recipe = load_config(path)
    by_modality = recipe.data.modality_degradation
    if by_modality:  # the spine subset is MR only: its slices take the CT stages instead
        overrides["data.modality_degradation"] = {"MR": by_modality["CT"]}
    for i, stage in enumerate(recipe.stages):
        if stage.losses.perceptual is not None:
            overrides[f"stages.{i}.losses.perceptual.weights"] = str(shared_data / VGG16)
    config = load_config(path, overrides, smoke=True)
    assert config.data.dataset_repeats and isinstance(config.data.degradation, list)
    result = train(config, out_dir=tmp_path, config_path=path)
    assert result.finished and result.skipped_steps == 0
    assert math.isfinite(result.validation["psnr"])
    model = load(tmp_path / "checkpoints" / "last")
    meta = read_config(tmp_path / "checkpoints" / "last")["metadata"]
    assert meta["degradation"][0]["name"] == "mixed_downsample"
    if by_modality:
        assert meta["modality_degradation"]["MR"][0]["kinds"] == by_modality["CT"][0]["kinds"]
    assert model.global_skip
    with torch.no_grad():
        assert model(torch.rand(1, 1, 12, 12)).shape == (1, 1, 12 * model.scale, 12 * model.scale)
