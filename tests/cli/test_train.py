"""``medsr train``: arguments, config errors, and full runs on prepared real data."""

from __future__ import annotations

from pathlib import Path

import pytest
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


@pytest.mark.slow
def test_the_same_command_under_torchrun(shared_data, tmp_path):
    """Two CPU processes (gloo) launched by torchrun; rank 0 alone writes the outputs."""
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.train import realdata

    manifest = realdata.brats(shared_data, tmp_path)
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "medsr", "train",
        str(REPO / "configs" / "4-brain-tumour-espcn.yaml"), "--smoke",
        "--out", str(out), "--set", f"data.manifest={manifest}", "--set", "data.batch_size=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,  # its own process group: a hang is killed with its workers
    )  # fmt: skip
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    assert stderr.count("finished at step 2 of 2") == 1  # printed by rank 0 only
    meta = json.loads((out / "checkpoints" / "last" / "config.json").read_text())["metadata"]
    assert meta["training"]["processes"] == 2 and meta["training"]["global_batch"] == 2
