"""The engine end to end on a tiny synthetic dataset: outputs, resume, non-finite steps."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from medsr import __version__
from medsr.errors import ConfigError, TrainingError
from medsr.models import load, read_config
from medsr.train import parse_config, train
from medsr.train.logging import read_metrics
from medsr.train.state import load_state

from .synthetic import GAN_STAGE, SyntheticSR, tiny_config


def gan_config(**overrides):
    data = tiny_config(
        **{
            "model.discriminator": {"arch": "unet", "params": {"num_features": 4}},
            "train.ema_decay": 0.9,
            "stages.0.steps": 3,
            "data.val_crop": 16,
            **overrides,
        }
    )
    data["stages"].append(dict(GAN_STAGE))
    return parse_config(data)


def datasets(**kwargs):
    return {
        "train_dataset": SyntheticSR(8, **kwargs),
        "val_dataset": SyntheticSR(3, size=24, mode="eval"),
    }


def test_outputs_of_a_two_stage_run(tmp_path):
    config = gan_config()
    result = train(config, out_dir=tmp_path, **datasets())
    assert result.finished and not result.stopped_early and result.global_step == 6
    for name in ("last", "best", "pretrain", "gan"):
        assert (tmp_path / "checkpoints" / name / "model.safetensors").is_file()
        assert yaml.safe_load((tmp_path / "checkpoints" / name / "train_config.yaml").read_text())
    # the exported model is a medsr checkpoint holding the EMA weights
    model = load(tmp_path / "checkpoints" / "last")
    state = load_state(tmp_path / "state" / "last.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["ema"][key])
    meta = read_config(tmp_path / "checkpoints" / "last")["metadata"]
    assert meta["medsr_version"] == __version__ and meta["scale"] == 2
    assert meta["degradation"] == [{"name": "bicubic", "scale": 2, "antialias": True, "clip": True}]
    assert meta["training"]["steps"] == 6 and meta["training"]["weights"] == "ema"
    assert meta["training"]["stage"] == "gan" and meta["recipe"]["name"] == "tiny"
    assert meta["recipe"]["config"]["model"]["generator"]["params"]["scale"] == 2
    assert meta["validation"]["metrics"]["step"] == 6
    assert meta["input"] == {
        "channels": 1,
        "neighbours": 0,
        "description": "one 2D slice",
        "range": [0.0, 1.0],
    }
    # resolved config beside the run, with the implied channels and scale filled in
    resolved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert resolved["model"]["discriminator"]["params"]["in_channels"] == 1
    assert parse_config(resolved).model.generator.params["in_channels"] == 1
    # metrics: every step's losses, validation after each stage
    rows = read_metrics(tmp_path / "metrics.csv")
    steps = sorted({r["step"] for r in rows if r["split"] == "train" and r["name"] == "g_total"})
    assert steps == [1, 2, 3, 4, 5, 6]
    val = {(r["step"], r["name"]) for r in rows if r["split"] == "val"}
    assert {(3, "psnr"), (3, "ssim"), (6, "psnr"), (6, "psnr_bicubic")} <= val
    assert {r["name"] for r in rows if r["stage"] == "gan"} >= {"adversarial", "d_real", "d_fake"}
    assert len(list((tmp_path / "samples" / "step-0000006").glob("*.png"))) == 1
    assert json.loads(json.dumps(meta))  # JSON-clean


def test_refuses_to_overwrite_and_resume_needs_a_state(tmp_path):
    config = parse_config(tiny_config(**{"stages.0.steps": 1}))
    train(config, out_dir=tmp_path, **datasets())
    with pytest.raises(ConfigError, match="--resume"):
        train(config, out_dir=tmp_path, **datasets())
    with pytest.raises(Exception, match="nothing to resume"):
        train(config, out_dir=tmp_path / "new", resume=True, **datasets())


def test_resume_rejects_a_changed_config(tmp_path):
    config = parse_config(tiny_config(**{"train.stop_after": 1}))
    train(config, out_dir=tmp_path, **datasets())
    changed = parse_config(tiny_config(**{"stages.0.optimizer.lr": 0.5}))
    with pytest.raises(ConfigError, match=r"stages\.0\.optimizer\.lr"):
        train(changed, out_dir=tmp_path, resume=True, **datasets())
    # runtime-only keys may change
    same = parse_config(tiny_config(**{"train.log_every": 2, "data.num_workers": 0}))
    assert train(same, out_dir=tmp_path, resume=True, **datasets()).finished


def _weights(folder):
    state = load_state(folder / "state" / "last.pt")
    return {k: state[k] for k in ("generator", "discriminator", "ema", "g_optimizer")}


def _assert_identical(a, b):
    for part in ("generator", "discriminator", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for key, value in a["g_optimizer"]["state"].items():
        for name, tensor in value.items():
            assert torch.equal(tensor, b["g_optimizer"]["state"][key][name])


@pytest.mark.parametrize("stop", [2, 3, 4])  # inside stage 1, at its end, inside the GAN stage
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, stop):
    whole = train(gan_config(), out_dir=tmp_path / "whole", **datasets())
    first = train(gan_config(**{"train.stop_after": stop}), out_dir=tmp_path / "cut", **datasets())
    assert first.stopped_early and first.global_step == stop
    assert load_state(tmp_path / "cut" / "state" / "last.pt")["global_step"] == stop
    second = train(gan_config(), out_dir=tmp_path / "cut", resume=True, **datasets())
    assert second.finished and second.global_step == whole.global_step
    _assert_identical(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"))
    # the metrics file reads as one run
    rows = read_metrics(tmp_path / "cut" / "metrics.csv")
    totals = [r["step"] for r in rows if r["name"] == "g_total"]
    assert totals == list(range(1, 7))


def test_a_non_finite_step_is_skipped_and_counted(tmp_path):
    config = parse_config(tiny_config(**{"stages.0.steps": 8, "train.ema_decay": 0.5}))
    result = train(config, out_dir=tmp_path, **datasets(nan_indices=(5,)))
    # item 5 is in one batch per epoch: 8 steps = 2 epochs of 4 batches
    assert result.skipped_steps == 2 and result.finished
    model = load(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    state = load_state(tmp_path / "state" / "last.pt")
    assert state["nonfinite"] == {"in_row": 0, "total": 2}
    rows = read_metrics(tmp_path / "metrics.csv")
    skipped = [r["step"] for r in rows if r["name"] == "skipped_steps"]
    assert len(skipped) == 2  # logged at the steps that were skipped (log_every 1)
    assert all(math.isfinite(r["value"]) for r in rows if r["name"] != "skipped_steps")
    assert {r["step"] for r in rows if r["name"] == "l1"}.isdisjoint(skipped)


def test_too_many_non_finite_steps_stop_with_the_last_state_intact(tmp_path):
    # epoch 0 (4 steps) is clean and saved; every item of epoch 1 on is NaN
    config = parse_config(
        tiny_config(**{"stages.0.steps": 20, "train.checkpoint_every": 4, "train.max_nonfinite": 3})
    )
    with pytest.raises(TrainingError) as info:
        train(config, out_dir=tmp_path, **datasets(nan_from_epoch=1))
    message = str(info.value)
    assert "3 steps in a row" in message and "step 7" in message
    assert str(tmp_path / "state" / "last.pt") in message
    state = load_state(tmp_path / "state" / "last.pt")
    assert state["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    assert all(
        torch.isfinite(v).all()
        for v in load(tmp_path / "checkpoints" / "last").state_dict().values()
    )


def test_a_model_without_parameters_is_refused(tmp_path):
    # the parameter-free bicubic generator gives exactly the bicubic reference
    data = tiny_config(**{"model.generator": {"arch": "bicubic"}})
    config = parse_config(data)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        train(config, out_dir=tmp_path, **datasets())


def test_validation_metrics_match_a_manual_computation(tmp_path):
    from medsr.metrics import psnr
    from medsr.train.validation import validate

    generator = torch.nn.Upsample(scale_factor=2, mode="bicubic", align_corners=False)
    val = SyntheticSR(2, size=24, mode="eval", low=-1000.0, high=1000.0)
    result = validate(generator, val, [0, 1], factors=(2, 2), device=torch.device("cpu"))
    m = result.metrics
    assert m["psnr"] == pytest.approx(m["psnr_bicubic"]) and m["ssim"] == pytest.approx(
        m["ssim_bicubic"]
    )
    expected = []
    for i in (0, 1):
        item = val[i]
        sr = generator(item["lr"][None]).clamp(0, 1).double() * 2000 - 1000
        hr = item["hr"][None].double() * 2000 - 1000
        expected.append(float(psnr(sr, hr, data_range=2000.0)[0]))
    assert m["psnr"] == pytest.approx(sum(expected) / 2, abs=1e-9)
    assert m["slices"] == 2
    # the same slices in other physical units give the same PSNR (data_range follows)
    other = SyntheticSR(2, size=24, mode="eval", low=0.0, high=5.0)
    again = validate(generator, other, [0, 1], factors=(2, 2), device=torch.device("cpu"))
    assert again.metrics["psnr"] == pytest.approx(m["psnr"], abs=1e-9)
    assert not math.isnan(again.metrics["ssim"])


def test_channels_last_trains_like_the_default(tmp_path):
    plain = train(parse_config(tiny_config()), out_dir=tmp_path / "a", **datasets())
    last = train(
        parse_config(tiny_config(**{"train.channels_last": True})),
        out_dir=tmp_path / "b",
        **datasets(),
    )
    assert plain.finished and last.finished
    a = load_state(tmp_path / "a" / "state" / "last.pt")["generator"]
    b = load_state(tmp_path / "b" / "state" / "last.pt")["generator"]
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_bf16_is_refused_on_cpu(tmp_path):
    config = parse_config(tiny_config(**{"train.precision": "bf16", "train.device": "cpu"}))
    with pytest.raises(ConfigError, match="CUDA only"):
        train(config, out_dir=tmp_path, **datasets())


def test_progress_bar_and_tensorboard(tmp_path, capsys):
    config = parse_config(tiny_config(**{"train.progress": True, "train.tensorboard": True}))
    train(config, out_dir=tmp_path, **datasets())
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert "pretrain" in capsys.readouterr().err  # the bar's stage label, on stderr


def test_without_tensorboard_training_goes_on(tmp_path, monkeypatch, caplog):
    import builtins

    from medsr.train import logging as train_logging

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setattr(train_logging.TensorBoard, "_warned", False)
    config = parse_config(tiny_config(**{"train.tensorboard": True}))
    with caplog.at_level("WARNING"):
        assert train(config, out_dir=tmp_path, **datasets()).finished
    assert sum("tensorboard is not installed" in r.message for r in caplog.records) == 1
    assert not (tmp_path / "tensorboard").exists()


def test_deterministic_mode_is_switched_back_off(tmp_path):
    assert not torch.are_deterministic_algorithms_enabled()
    config = parse_config(tiny_config(**{"train.deterministic": True, "stages.0.steps": 1}))
    assert train(config, out_dir=tmp_path, **datasets()).finished
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.gpu
def test_bf16_autocast_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    data = tiny_config(**{"train.ema_decay": 0.9, "train.channels_last": True})
    data["model"]["discriminator"] = {"arch": "unet", "params": {"num_features": 4}}
    data["stages"].append(dict(GAN_STAGE))
    result = train(parse_config(data), out_dir=tmp_path, **datasets())
    assert result.finished and result.skipped_steps == 0
    meta = read_config(tmp_path / "checkpoints" / "last")["metadata"]
    expected = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    assert meta["training"]["precision"] == expected and meta["training"]["device"] == "cuda"
    assert math.isfinite(result.validation["psnr"])


def test_inference_reads_the_checkpoint_metadata(tmp_path):
    """medsr.infer (issue 7) takes the normalisation policy and the degradation from it."""
    infer = pytest.importorskip("medsr.infer", reason="medsr.infer (issue 7) not installed")
    config = parse_config(tiny_config(**{"stages.0.steps": 1}))
    train(config, out_dir=tmp_path, **datasets())
    model = infer.load_model(str(tmp_path / "checkpoints" / "last"))
    assert model.scale == 2 and model.in_channels == 1
    assert model.normalisation.method == "auto" and model.normalisation.clip is False
    assert model.degradation.to_config()[0]["name"] == "bicubic"


def test_resume_removes_the_temporary_files_of_killed_writes(tmp_path):
    config = parse_config(tiny_config(**{"train.stop_after": 1}))
    train(config, out_dir=tmp_path, **datasets())
    # what a SIGKILL in the middle of writes leaves (old-stage/ is not written again)
    (tmp_path / "checkpoints" / "old-stage").mkdir()
    stale = [
        tmp_path / "checkpoints" / "best" / ".model.safetensors.q1w2e3r4.tmp",
        tmp_path / "checkpoints" / "old-stage" / ".model.safetensors.a1b2c3d4.tmp",
        tmp_path / "checkpoints" / "old-stage" / ".config.json.zz99yy88.tmp",
        tmp_path / "state" / ".last.pt.k9l8m7n6.tmp",
    ]
    for path in stale:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\0" * 100)
    kept = tmp_path / "checkpoints" / "old-stage" / "notes.txt"
    kept.write_text("mine")
    assert train(parse_config(tiny_config()), out_dir=tmp_path, resume=True, **datasets()).finished
    assert [path for path in stale if path.exists()] == [] and kept.exists()


def test_init_generator_from_another_scale_copies_what_fits(tmp_path, caplog):
    from medsr.models import EDSR, save
    from medsr.train.loop import Trainer

    source = EDSR(scale=4, num_features=8, num_blocks=1)
    torch.nn.init.normal_(source.head.weight)  # recognisable weights
    save(source, tmp_path / "x4")
    config = parse_config(tiny_config(**{"model.init_generator": str(tmp_path / "x4")}))
    with caplog.at_level("INFO", logger="medsr.train.loop"):
        trainer = Trainer(config, out_dir=tmp_path / "run", **datasets())
    own = trainer.generator.state_dict()
    # x2 holds the x4 model's first sub-pixel step; every tensor fits and is copied
    for name, tensor in own.items():
        assert torch.equal(tensor, source.state_dict()[name]), name
    assert "tensors copied" in caplog.text and "x4 model" in caplog.text

    # the other way round the second sub-pixel step of x4 starts fresh
    save(trainer.generator, tmp_path / "x2")
    config = parse_config(
        tiny_config(
            **{
                "model.init_generator": str(tmp_path / "x2"),
                "model.generator.params.scale": 4,
                "data.degradation": [{"name": "bicubic", "scale": 4}],
            }
        )
    )
    caplog.clear()
    with caplog.at_level("INFO", logger="medsr.train.loop"):
        trainer = Trainer(config, out_dir=tmp_path / "run4", **datasets())
    assert torch.equal(trainer.generator.head.weight, source.head.weight)
    assert "initialised afresh: upsample.2.bias, upsample.2.weight" in caplog.text


def test_init_generator_deepens_a_shallower_edsr(tmp_path, caplog):
    from medsr.models import EDSR, save
    from medsr.train.loop import Trainer

    source = EDSR(scale=2, num_features=8, num_blocks=1)
    torch.nn.init.normal_(source.tail.weight)  # recognisable weights
    save(source, tmp_path / "shallow")
    config = parse_config(
        tiny_config(
            **{
                "model.init_generator": str(tmp_path / "shallow"),
                "model.generator.params.num_blocks": 3,
            }
        )
    )
    with caplog.at_level("INFO", logger="medsr.train.loop"):
        trainer = Trainer(config, out_dir=tmp_path / "run", **datasets())
    lr = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(trainer.generator.eval()(lr), source.eval()(lr), atol=1e-6)
    assert "1-block EDSR" in caplog.text and "blocks 2-3 start as the identity" in caplog.text


def test_init_generator_must_be_the_same_architecture(tmp_path):
    from medsr.models import EDSR, save

    save(EDSR(scale=2, num_features=16, num_blocks=1), tmp_path / "other")
    config = parse_config(tiny_config(**{"model.init_generator": str(tmp_path / "other")}))
    with pytest.raises(ConfigError, match="only the scale may differ"):
        train(config, out_dir=tmp_path / "run", **datasets())
