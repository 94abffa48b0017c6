"""Checkpoint metadata: the fixed part from the prepare report, read once; the progress part."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from medsr.train import metadata as M
from medsr.train import parse_config

from .synthetic import tiny_config


@dataclass
class Row:
    dataset: str
    subject_id: str
    modality: str = "MR"

    def normaliser_dict(self) -> dict[str, Any]:
        return {"kind": "percentile"}


def _describe(config, rows=None, **kwargs):
    return M.describe_run(
        config,
        scale=2,
        degradation=[{"name": "bicubic", "scale": 2}],
        rows=rows,
        config_path="recipe.yaml",
        processes=2,
        precision="fp32",
        device="cpu",
        ema=False,
        **kwargs,
    )


def test_policy_and_prepare_options_come_from_one_read_of_the_report(tmp_path, monkeypatch):
    report = {
        "options": {"normaliser": "ct", "ct_window": "soft", "percentiles": [1, 99], "clip": False}
    }
    report["options"]["slice_axis"] = 2
    (tmp_path / "report.json").write_text(json.dumps(report))
    config = parse_config(
        tiny_config(**{"data.manifest": str(tmp_path / "manifest.csv"), "data.licenses": {}})
    )
    reads = []
    real_read = M.read_prepare_report
    monkeypatch.setattr(M, "read_prepare_report", lambda m: reads.append(m) or real_read(m))
    run = _describe(config, rows=[Row("a", "s1"), Row("a", "s2"), Row("b", "s1")])
    assert len(reads) == 1
    assert run.normalisation == {
        "method": "ct",
        "window": "soft",
        "percentiles": [1, 99],
        "clip": False,
    }
    assert run.normalisation_details["training_clip"] is False
    assert run.normalisation_details["source"] == "report.json of the prepared training data"
    assert run.normalisation_details["kinds"] == {"MR": ["percentile"]}
    data = run.training_data
    assert data["prepare"] == {"slice_axis": 2}
    assert [(d["name"], d["train_slices"], d["train_subjects"]) for d in data["datasets"]] == [
        ("a", 2, 2),
        ("b", 1, 1),
    ]


def test_defaults_without_a_report_and_one_licence_warning(tmp_path, caplog):
    config = parse_config(tiny_config(**{"data.manifest": str(tmp_path / "m.csv")}))
    with caplog.at_level(logging.WARNING, logger="medsr.train.metadata"):
        run = _describe(config, rows=[Row("x", "s1")])
        _describe(config, rows=[Row("x", "s1")], warn=False)
    assert run.normalisation["method"] == "auto" and run.normalisation["clip"] is False
    assert run.normalisation_details["source"].startswith("medsr prepare defaults")
    assert run.training_data["prepare"] is None
    assert run.training_data["datasets"][0]["license"].startswith("unknown")
    assert sum("no licence given for dataset x" in r.message for r in caplog.records) == 1


def test_checkpoint_metadata_adds_the_progress_and_writes_nan_as_text(tmp_path):
    config = parse_config(tiny_config(**{"data.manifest": str(tmp_path / "m.csv")}))
    run = _describe(config)
    meta = M.checkpoint_metadata(
        run,
        checkpoint="best",
        global_step=3,
        stage_index=0,
        stage_step=3,
        nonfinite_total=1,
        last_validation={"psnr": float("nan"), "ssim": 0.5, "step": 3, "stage": "pretrain"},
        best=None,
    )
    assert meta["checkpoint"] == "best" and meta["scale"] == 2
    assert meta["training"]["global_batch"] == 2 * config.data.batch_size
    assert meta["training"]["stage"] == "pretrain" and meta["training"]["steps"] == 3
    assert meta["recipe"]["path"] == "recipe.yaml"
    assert meta["validation"]["metrics"]["psnr"] == "nan"
    assert meta["validation"]["metrics"]["ssim"] == 0.5
    json.dumps(meta)  # everything JSON-serialisable
    no_validation = M.checkpoint_metadata(
        run,
        checkpoint="last",
        global_step=0,
        stage_index=0,
        stage_step=0,
        nonfinite_total=0,
        last_validation=None,
        best=None,
    )
    assert no_validation["validation"] is None
