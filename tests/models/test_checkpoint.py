"""Checkpoints: bit-exact round trips for every table entry, config contents, errors, and
third-party (ESRGAN / Real-ESRGAN) weights."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from medsr import __version__
from medsr.errors import CheckpointError, ConfigError
from medsr.models import (
    DISCRIMINATORS,
    GENERATORS,
    RRDBNet,
    build_generator,
    load,
    load_official_esrgan,
    load_state_dict_file,
    read_config,
    save,
)


def _exercise(model: torch.nn.Module, *inputs: torch.Tensor, **kw: torch.Tensor) -> None:
    """One training-mode pass so BN statistics and spectral-norm vectors are not at init."""
    model.train()
    with torch.no_grad():
        model(*inputs, **kw)
    model.eval()


@pytest.mark.parametrize("arch", list(GENERATORS))
def test_generator_round_trip_is_bit_exact(tiny_generator, arch, tmp_path):
    model = tiny_generator(arch, scale=2, in_channels=3, out_channels=1)
    _exercise(model, torch.rand(2, 3, 8, 8))
    folder = save(model, tmp_path / "ckpt", metadata={"normalisation": {"kind": "minmax"}})
    loaded = load(folder)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.hparams() == model.hparams()
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(lr), loaded(lr))


@pytest.mark.parametrize("arch", list(DISCRIMINATORS))
def test_discriminator_round_trip_is_bit_exact(tiny_discriminator, arch, tmp_path):
    model = tiny_discriminator(arch, in_channels=1)
    hr, lr = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 4, 4)
    _exercise(model, hr, lr=lr)
    loaded = load(save(model, tmp_path / arch))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(model(hr, lr=lr), loaded(hr, lr=lr))


def test_config_records_the_model_and_the_metadata(tiny_generator, tmp_path):
    model = tiny_generator("edsr", scale=3, in_channels=1)
    metadata = {"normalisation": {"kind": "percentile", "p": [0.5, 99.5]}, "psnr": 31.2}
    folder = save(model, tmp_path / "edsr", metadata=metadata)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = read_config(folder)
    assert config == json.loads((folder / "config.json").read_text())
    assert config["arch"] == "edsr" and config["kind"] == "generator"
    assert config["hparams"] == model.hparams()
    assert (config["scale"], config["in_channels"], config["out_channels"]) == (3, 1, 1)
    assert config["medsr_version"] == __version__
    assert config["metadata"] == metadata
    # Either file of the folder addresses the checkpoint too.
    assert read_config(folder / "model.safetensors") == config
    assert isinstance(load(folder / "config.json"), type(model))


def test_saving_again_replaces_the_files(tiny_generator, tmp_path):
    first = tiny_generator("srcnn")
    second = tiny_generator("srcnn")
    with torch.no_grad():
        for p in second.parameters():
            p.add_(1.0)
    save(first, tmp_path / "c")
    save(second, tmp_path / "c", metadata={"epoch": 2})
    loaded = load(tmp_path / "c")
    assert read_config(tmp_path / "c")["metadata"] == {"epoch": 2}
    assert torch.equal(loaded.body[0].weight, second.body[0].weight)
    assert [p.name for p in (tmp_path / "c").iterdir() if p.name.startswith(".")] == []


def test_save_rejects_bad_metadata_and_foreign_models(tiny_generator, tmp_path):
    with pytest.raises(ConfigError, match="JSON"):
        save(tiny_generator("bicubic"), tmp_path / "x", metadata={"bad": object()})
    with pytest.raises(ConfigError, match="only models of the medsr tables"):
        save(torch.nn.Conv2d(1, 1, 3), tmp_path / "y")


def test_load_errors_name_the_file(tiny_generator, tmp_path):
    with pytest.raises(CheckpointError, match=r"config\.json: no such file"):
        load(tmp_path / "missing")
    folder = save(tiny_generator("edsr"), tmp_path / "edsr")
    config = read_config(folder)

    config["hparams"]["num_blocks"] = 2  # the weights no longer match the hyper-parameters
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing body\.1\."):
        load(folder)

    config["arch"] = "edsr3000"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="unknown generator 'edsr3000'"):
        load(folder)

    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_config(folder)

    (folder / "config.json").write_text(json.dumps({"arch": "edsr"}))
    with pytest.raises(CheckpointError, match="not a medsr checkpoint"):
        read_config(folder)


def test_load_casts_half_precision_weights(tiny_generator, tmp_path):
    model = tiny_generator("espcn")
    folder = save(model, tmp_path / "half")
    half = {k: v.half() for k, v in model.state_dict().items()}
    save_file(half, str(folder / "model.safetensors"))
    loaded = load(folder)
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        assert torch.equal(value, half[key].float())


# ---------------------------------------------------------------- official ESRGAN weights


def _tiny_rrdbnet(scale: int = 4, channels: int = 3) -> RRDBNet:
    torch.manual_seed(0)
    return RRDBNet(scale=scale, in_channels=channels, num_features=8, num_blocks=2, growth=4).eval()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("wrapper", ["params_ema", "params", None])
def test_official_pth_files_load_with_weights_only(tmp_path, wrapper):
    model = _tiny_rrdbnet()
    state = model.state_dict()
    payload = {wrapper: state} if wrapper else state
    if wrapper == "params":
        payload["params_ema_missing"] = 1  # unrelated entries next to the weights are fine
    torch.save(payload, tmp_path / "net.pth")
    loaded = load_official_esrgan(tmp_path / "net.pth", scale=4)
    assert _same_weights(model, loaded)
    assert (loaded.num_blocks, loaded.num_features, loaded.growth) == (2, 8, 4)


def test_params_ema_is_preferred_over_params(tmp_path):
    ema, plain = _tiny_rrdbnet(), _tiny_rrdbnet()
    with torch.no_grad():
        for p in plain.parameters():
            p.mul_(2)
    torch.save({"params": plain.state_dict(), "params_ema": ema.state_dict()}, tmp_path / "b.pth")
    assert _same_weights(load_official_esrgan(tmp_path / "b.pth"), ema)


@pytest.mark.parametrize(("scale", "channels"), [(2, 3), (1, 3), (8, 1), (4, 1)])
def test_official_scales_are_read_from_the_shapes(tmp_path, scale, channels):
    model = _tiny_rrdbnet(scale, channels)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    loaded = load_official_esrgan(tmp_path / "w.safetensors")
    assert (loaded.scale, loaded.in_channels, loaded.out_channels) == (scale, channels, channels)
    lr = torch.rand(1, channels, 9, 7)  # odd sizes: x1/x2 pad for the pixel unshuffle
    with torch.no_grad():
        out = loaded(lr)
        assert out.shape == (1, channels, 9 * scale, 7 * scale)
        assert torch.equal(out, model(lr))
    with pytest.raises(CheckpointError, match=f"holds a x{scale} model"):
        load_official_esrgan(tmp_path / "w.safetensors", scale=3)


def test_original_esrgan_layout_is_converted(tmp_path):
    model = _tiny_rrdbnet()
    old: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        parts = key.split(".")
        if parts[0] == "body":
            old[f"model.1.sub.{parts[1]}.RDB{parts[2][-1]}.{parts[3]}.0.{parts[4]}"] = value
        else:
            position = {
                "conv_first": 0,
                "conv_up1": 3,
                "conv_up2": 6,
                "conv_hr": 8,
                "conv_last": 10,
            }.get(parts[0])
            name = (
                f"model.1.sub.2.{parts[1]}" if position is None else f"model.{position}.{parts[1]}"
            )
            old[name] = value
    torch.save(old, tmp_path / "RRDB_ESRGAN_x4.pth")
    assert _same_weights(load_official_esrgan(tmp_path / "RRDB_ESRGAN_x4.pth"), model)


def test_pickled_code_is_refused(tmp_path):
    torch.save({"params_ema": {"w": torch.zeros(1)}, "hook": print}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_state_dict_file(tmp_path / "evil.pth")


def test_non_esrgan_weights_are_refused(tmp_path):
    save_file({"conv.weight": torch.zeros(1, 1, 3, 3)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="not an ESRGAN"):
        load_official_esrgan(tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="no such file"):
        load_official_esrgan(tmp_path / "absent.pth")


def test_medsr_checkpoint_of_a_table_rrdbnet(tmp_path):
    model = build_generator("rrdbnet", {"num_features": 8, "num_blocks": 1, "growth": 4})
    assert torch.equal(load(save(model, tmp_path / "r")).conv_first.weight, model.conv_first.weight)


def test_a_save_removes_what_a_killed_save_left_and_honours_the_umask(tiny_generator, tmp_path):
    folder = tmp_path / "best"
    folder.mkdir()
    stale = [folder / ".model.safetensors.k2j4h6_x.tmp", folder / ".config.json.abcdef12.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    kept = folder / "notes.tmp"  # not a temporary file of medsr's
    kept.write_text("mine")
    old = os.umask(0o002)
    try:
        save(tiny_generator("srcnn"), folder)
    finally:
        os.umask(old)
    assert not any(path.exists() for path in stale) and kept.exists()
    for name in ("model.safetensors", "config.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o664
