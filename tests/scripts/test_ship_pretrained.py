"""scripts/ship_pretrained.py writes model cards whose recipe can be run as written."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ship_pretrained.py"


@pytest.fixture(scope="module")
def ship():
    spec = importlib.util.spec_from_file_location("ship_pretrained", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(name: str, init_generator: str | None) -> dict:
    recipe = {"name": name, "description": "EDSR.", "config": {"model": {}}}
    if init_generator is not None:
        recipe["config"]["model"]["init_generator"] = init_generator
    return {
        "arch": "edsr",
        "scale": 4,
        "hparams": {"scale": 4},
        "num_parameters": 10,
        "metadata": {"recipe": recipe, "training": {"steps": 100}, "training_data": {}},
    }


def _recipe_block(text: str) -> list[str]:
    block = text.split("## Recipe")[1].split("```bash")[1].split("```")[0]
    return [line for line in block.strip().splitlines() if not line.startswith("#")]


def test_a_card_runs_the_recipe_a_continued_run_starts_from_first(ship):
    text = ship.card("medsr-x", _config("x-long", "runs/x/checkpoints/last"), [], "fp16", 70.0)
    assert _recipe_block(text) == [
        "nice -n 10 medsr train configs/pretrained/x.yaml --out runs/x  # first",
        "nice -n 10 medsr train configs/pretrained/x-long.yaml --out runs/x-long",
        "python scripts/ship_pretrained.py medsr-x runs/x-long/checkpoints/last",
    ]


def test_a_card_runs_a_chain_of_continued_runs_oldest_first(ship, tmp_path, monkeypatch):
    # c continues b, which continues a (the repository's recipe files say so); a loop stops
    recipes = tmp_path / "configs" / "pretrained"
    recipes.mkdir(parents=True)
    (recipes / "b.yaml").write_text("model:\n  init_generator: runs/a/checkpoints/best\n")
    (recipes / "a.yaml").write_text("model:\n  init_generator: runs/c/checkpoints/last\n")
    monkeypatch.setattr(ship, "REPO", tmp_path)
    text = ship.card("medsr-c", _config("c", "runs/b/checkpoints/last"), [], "fp16", 70.0)
    assert _recipe_block(text) == [
        "nice -n 10 medsr train configs/pretrained/a.yaml --out runs/a  # first",
        "nice -n 10 medsr train configs/pretrained/b.yaml --out runs/b",
        "nice -n 10 medsr train configs/pretrained/c.yaml --out runs/c",
        "python scripts/ship_pretrained.py medsr-c runs/c/checkpoints/last",
    ]


@pytest.mark.parametrize("start", [None, "src/medsr/models/pretrained/medsr-edsr-tiny-x2"])
def test_a_card_of_a_recipe_from_scratch_or_shipped_weights_runs_it_alone(ship, start):
    text = ship.card("medsr-x", _config("x", start), [], "fp32", 0.0)
    assert _recipe_block(text) == [
        "nice -n 10 medsr train configs/pretrained/x.yaml --out runs/x",
        "python scripts/ship_pretrained.py medsr-x runs/x/checkpoints/last",
    ]


def test_the_card_spells_out_the_degradation_of_each_modality(ship):
    mixed = {
        "name": "mixed_downsample",
        "scale": 2,
        "kinds": ["bicubic", "bilinear", "gaussian_blur", "kspace"],
        "probs": [0.4, 0.2, 0.2, 0.2],
        "noise_prob": 0.1,
        "snr": [20.0, 40.0],
    }
    resampled = {**mixed, "kinds": ["bicubic", "gaussian_blur"], "probs": [3, 1], "noise_prob": 0}
    one = " ".join(ship.degradation_lines({"degradation": [mixed]}))
    assert "antialiased bicubic (40 %)" in one
    assert "k-space truncation with a Tukey window (20 %)" in one
    assert "Rician noise (SNR 20..40) on 10 % of patches" in one and "modality" not in one
    both = "\n".join(
        ship.degradation_lines(
            {"degradation": [mixed], "modality_degradation": {"CT": [resampled]}}
        )
    )
    assert "Slices of modality CT had their own degradation" in both
    ct = both.split("CT: ", 1)[1].split("`: ", 1)[1]  # the words after the stages
    assert "antialiased bicubic (75 %), Gaussian blur" in ct and "(25 %)" in ct
    assert "k-space" not in ct and "noise" not in ct
    assert ship.describe_degradation(None) == "not recorded"
    assert "brightness" not in both
    scaled = {"degradation": [mixed], "recipe": {"config": {"data": {"intensity_scale": [0.5, 1]}}}}
    last = ship.degradation_lines(scaled)[-1]
    assert "multiplied by a factor drawn uniformly from [0.5, 1] (`data.intensity_scale`)" in last


def test_the_repository_recipe_names_the_run_a_continued_model_starts_from(ship):
    # the run continued the shipped copy of the model it replaced; its recipe file in the
    # repository names the base run, so the card runs that first
    shipped = "src/medsr/models/pretrained/medsr-edsr-quality-x2"
    config = _config("medsr-edsr-quality-x2-modality", shipped)
    text = ship.card("medsr-edsr-quality-x2", config, [], "fp16", 70.0)
    assert _recipe_block(text)[:3] == [  # and the first quality x2 run started from x4's
        "nice -n 10 medsr train configs/pretrained/medsr-edsr-quality-x4.yaml "
        "--out runs/medsr-edsr-quality-x4  # first",
        "nice -n 10 medsr train configs/pretrained/medsr-edsr-quality-x2.yaml "
        "--out runs/medsr-edsr-quality-x2",
        "nice -n 10 medsr train configs/pretrained/medsr-edsr-quality-x2-modality.yaml "
        "--out runs/medsr-edsr-quality-x2-modality",
    ]


def test_the_note_of_a_card_is_read_back_for_card_only(ship):
    note = "The first run continued 2,000 steps.\n\nIt gained 0.1 dB (RESULTS)."
    text = ship.card("medsr-x", _config("x", None), [], "fp16", 70.0, note)
    assert ship.card_note(text) == note
    assert ship.card_note(ship.card("medsr-x", _config("x", None), [], "fp16", 70.0)) == ""
    assert ship.card_note("# a card written by hand") == ""
