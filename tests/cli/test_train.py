"""``medsr train``: arguments, config errors, and full runs on prepared real data."""

from __future__ import annotations

from pathlib import Path

import yaml

from medsr.cli import main

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "configs" / "4-brain-tumour-espcn.yaml"


def test_print_config_resolves_set_and_smoke(capsys):
    args = ["train", str(RECIPE), "--print-config", "--set", "stages.0.optimizer.lr=1e-5"]
    assert main(args) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["stages"][0]["optimizer"]["lr"] == 1e-5
    assert config["stages"][0]["steps"] == 3300
    assert main(["train", str(RECIPE), "--print-config", "--smoke"]) == 0
    smoke = yaml.safe_load(capsys.readouterr().out)
    assert smoke["stages"][0]["steps"] == 2 and smoke["data"]["patch_size"] == 32
    assert smoke["model"]["generator"]["params"] == {"num_features": 8, "mid_features": 4}


def test_config_errors_exit_2_without_traceback(capsys, tmp_path):
    assert main(["train", str(RECIPE), "--set", "stages.0.optimiser.lr=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) stages.0.optimiser" in err and "valid keys of stages.0" in err
    assert "Traceback" not in err
    assert main(["train", str(RECIPE), "--set", "nokey"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "cannot read the config" in capsys.readouterr().err
    missing_data = ["--set", f"data.manifest={tmp_path / 'none'}", "--out", str(tmp_path / "o")]
    assert main(["train", str(RECIPE), *missing_data]) == 2
    assert str(tmp_path / "none") in capsys.readouterr().err


def test_smoke_run_stop_and_resume_through_the_cli(shared_data, tmp_path, capsys):
    from medsr.models import load
    from medsr.train.logging import read_metrics
    from tests.train import realdata

    manifest = realdata.brats(shared_data, tmp_path)
    recipe = REPO / "configs" / "4-brain-tumour-espcn.yaml"
    out = tmp_path / "run"
    common = [str(recipe), "--smoke", "--out", str(out), "--set", f"data.manifest={manifest}"]
    assert main(["train", *common, "--set", "train.stop_after=1"]) == 0
    err = capsys.readouterr().err
    assert "stopped early at step 1 of 2" in err
    assert main(["train", *common]) == 2  # the folder holds a run: --resume is needed
    assert "--resume" in capsys.readouterr().err
    assert main(["train", *common, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "finished at step 2 of 2" in err and "validation (step 2): PSNR" in err
    assert load(out / "checkpoints" / "last").scale == 4
    steps = [r["step"] for r in read_metrics(out / "metrics.csv") if r["name"] == "mse"]
    assert steps == [1, 2]
