"""The strict config schema, overrides and smoke mode."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from medsr.errors import ConfigError
from medsr.train import config as cfg
from medsr.train.config import (
    apply_overrides,
    apply_smoke,
    load_config,
    parse_config,
    parse_override,
    schema_reference,
    to_dict,
)

from .synthetic import GAN_STAGE, tiny_config


def test_round_trip_and_defaults():
    config = parse_config(tiny_config())
    assert config.stages[0].schedule.name == "constant"
    assert config.train.precision == "auto" and config.data.patch_size == 128
    assert parse_config(to_dict(config)) == config
    assert config.total_steps == 4
    assert yaml.safe_load(yaml.safe_dump(to_dict(config))) == to_dict(config)


def test_unknown_key_lists_valid_keys():
    data = tiny_config(**{"stages.0.optimizer.learning_rate": 0.1})
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    message = str(info.value)
    assert "stages.0.optimizer.learning_rate" in message
    assert "name, lr, betas, eps, weight_decay, momentum, nesterov" in message
    with pytest.raises(ConfigError, match="valid keys of config: name, model, data, stages"):
        parse_config({**tiny_config(), "epochs": 3})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("stages.0.steps", "ten", "stages.0.steps: expected int"),
        ("stages.0.steps", 2.5, "expected int"),
        ("stages.0.steps", 0, "steps must be positive"),
        ("train.compile", "yes", "train.compile: expected bool"),
        ("stages.0.optimizer.lr", True, "expected float"),
        ("stages.0.optimizer.name", "rmsprop", "unknown name 'rmsprop'; valid: adam, adamw, sgd"),
        ("stages.0.optimizer.betas", [0.9], "a list of 2 numbers"),
        ("stages.0.schedule.name", "poly", "valid: constant, step, multistep, cosine, halfway"),
        ("stages.0.schedule", {"name": "step"}, "positive step_size"),
        ("stages.0.schedule", {"name": "multistep", "milestones": [5, 3]}, "increasing"),
        ("train.precision", "fp16", "valid: auto, fp32, bf16"),
        ("train.ema_decay", 1.5, "ema_decay must be in (0, 1)"),
        ("data.batch_size", -1, "batch_size must be positive"),
        ("data.intensity_scale", [0.9, 0.5], "intensity_scale must satisfy 0 < low <= high"),
        ("data.intensity_scale", [0.5], "data.intensity_scale: expected a list of 2 numbers"),
        ("stages.0.losses", {}, "at least one loss"),
        ("stages.0.losses.pixel.kind", "l3", "unknown kind 'l3'"),
        ("stages.0.name", "pre train", "letters, digits"),
        ("model.generator", {"params": {}}, "model.generator.arch is required"),
    ],
)
def test_bad_values_are_named(key, value, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        parse_config(tiny_config(**{key: value}))
    assert fragment in str(info.value), str(info.value)


def test_adversarial_stage_needs_a_discriminator():
    data = tiny_config()
    data["stages"].append(GAN_STAGE)
    with pytest.raises(ConfigError, match=r"\['gan'\] are adversarial"):
        parse_config(data)
    data["model"]["discriminator"] = {"arch": "unet"}
    assert parse_config(data).stages[1].adversarial
    data["stages"][0]["losses"]["feature_matching"] = {"weight": 1.0}
    with pytest.raises(ConfigError, match="feature_matching needs an adversarial loss"):
        parse_config(data)


def test_stage_names_unique():
    data = tiny_config()
    data["stages"].append(dict(data["stages"][0]))
    with pytest.raises(ConfigError, match="unique"):
        parse_config(data)


def test_overrides_are_yaml_typed_and_index_lists():
    assert parse_override("train.ema_decay=0.999") == ("train.ema_decay", 0.999)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_override("model.discriminator=null") == ("model.discriminator", None)
    assert parse_override("x=1e-5") == ("x", 1e-5)
    assert parse_override("x=hello") == ("x", "hello")
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            parse_override(bad)
    data = tiny_config()
    out = apply_overrides(data, [("stages.0.optimizer.lr", 0.5), ("train.ema_decay", 0.9)])
    assert out["stages"][0]["optimizer"]["lr"] == 0.5 and out["train"]["ema_decay"] == 0.9
    assert data["stages"][0]["optimizer"]["lr"] == 1e-3  # the input is not modified
    with pytest.raises(ConfigError, match="address its items by index"):
        apply_overrides(data, [("stages.pretrain.steps", 3)])
    with pytest.raises(ConfigError, match="index 5 outside"):
        apply_overrides(data, [("stages.5.steps", 3)])
    # a mapping that was null is created; the schema then checks it
    out = apply_overrides(data, [("model.discriminator.arch", "srgan")])
    assert out["model"]["discriminator"] == {"arch": "srgan"}


def test_load_config_with_overrides_and_smoke(tmp_path):
    data = tiny_config(**{"stages.0.steps": 500, "data.batch_size": 16, "data.num_workers": 2})
    data["smoke"] = {"model.generator.params.num_features": 4, "data.patch_size": 8}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    full = load_config(path, ["stages.0.optimizer.lr=0.01"])
    assert full.stages[0].steps == 500 and full.stages[0].optimizer.lr == 0.01
    smoke = load_config(path, ["data.batch_size=3"], smoke=True)
    assert smoke.stages[0].steps == 2
    assert smoke.data.batch_size == 3  # --set wins over smoke
    assert smoke.data.num_workers == 0 and smoke.data.val_max_slices == 2
    assert smoke.model.generator.params["num_features"] == 4 and smoke.data.patch_size == 8
    assert not smoke.train.progress
    assert apply_smoke(data)["stages"][0]["steps"] == 2
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, ["train.unknown=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="a training config is a mapping"):
        load_config(bad)


def test_schema_reference_lists_every_field():
    text = schema_reference()
    classes = [
        cfg.RunConfig,
        cfg.ModelConfig,
        cfg.ModelSpec,
        cfg.DataConfig,
        cfg.StageConfig,
        cfg.LossesConfig,
        cfg.PixelLossConfig,
        cfg.PerceptualLossConfig,
        cfg.AdversarialLossConfig,
        cfg.FeatureMatchingLossConfig,
        cfg.OptimizerConfig,
        cfg.ScheduleConfig,
        cfg.TrainConfig,
    ]
    for cls in classes:
        typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f"| `{f.name}` |" in text, (cls.__name__, f.name)


def test_docs_show_the_current_schema():
    from tests.conftest import REPO

    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    section = text.split("<!-- schema:begin -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert section == schema_reference(), "regenerate the schema section of docs/training.md"
