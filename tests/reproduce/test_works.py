"""Every model of every work gives a valid training config under every profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsr.errors import ConfigError
from medsr.reproduce.runner import train_config_data
from medsr.reproduce.spec import PROFILES
from medsr.reproduce.works import WORKS, get_work
from medsr.train import parse_config


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("work", sorted(WORKS))
def test_configs_parse(work: int, profile: str, at_repo: Path) -> None:
    spec = WORKS[work]
    full = {m.name: parse_config(train_config_data(m, "full")) for m in spec.models}
    for model in spec.models:
        config = parse_config(train_config_data(model, profile, data_root=Path("/nowhere")))
        # the paper's architecture family and losses stay; only sizes change
        assert config.model.generator.arch == full[model.name].model.generator.arch
        assert [s.name for s in config.stages] == [s.name for s in full[model.name].stages]
        if profile == "cpu":
            assert config.train.device == "cpu"
            for ours, theirs in zip(config.stages, full[model.name].stages, strict=True):
                assert (ours.losses.perceptual is None) == (theirs.losses.perceptual is None)
                assert ours.losses.adversarial == theirs.losses.adversarial
                assert ours.losses.pixel == theirs.losses.pixel
            assert config.data.degradation == full[model.name].data.degradation
        if model.init_from is not None:
            # a model that starts from another must have the same generator
            other = parse_config(train_config_data(spec.model(model.init_from), profile))
            assert other.model.generator == config.model.generator


def test_perceptual_weights_follow_the_data_root(at_repo: Path) -> None:
    model = get_work(3).models[0]
    data = train_config_data(model, "cpu", data_root=Path("/data/shared"))
    weights = data["stages"][0]["losses"]["perceptual"]["weights"]
    assert weights.startswith("/data/shared/weights/")


def test_unknown_stage_override_is_an_error(at_repo: Path) -> None:
    from dataclasses import replace

    model = replace(get_work(4).models[1], cpu={"stages.nope.steps": 3})
    with pytest.raises(ConfigError, match="no stage 'nope'"):
        train_config_data(model, "cpu")
