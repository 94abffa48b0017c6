from __future__ import annotations

from pathlib import Path

import torch
import yaml

from medsr import models
from medsr.cli import main
from medsr.eval.results import read_results
from tests.eval.conftest import prepared  # noqa: F401  (the shared prepared-data fixture)


def _write_config(path: Path, manifest: Path, checkpoint: Path, **extra) -> Path:
    config = {
        "title": "CLI benchmark",
        "manifest": str(manifest),
        "degradation": "bicubic_x4",
        "splits": ["val"],
        "methods": [
            {"name": "bicubic", "model": "bicubic"},
            {"name": "lanczos", "model": "lanczos"},
            {"name": "tiny", "model": str(checkpoint)},
        ],
        "metrics": ["psnr", "ssim", "mae"],
        "regions": [{"name": "brain", "mask": "file"}],
        "tables": [{"style": "lumbar_spine", "datasets": ["spine-mri"]}],
        "figures": {"per_dataset": 1, "methods": ["bicubic", "tiny"]},
    }
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return path


def test_benchmark_cli_end_to_end(prepared: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    torch.manual_seed(0)
    net = models.build_generator(
        "espcn", {"scale": 4, "in_channels": 1, "num_features": 8, "mid_features": 4}
    )
    models.save(net, tmp_path / "tiny")
    config = _write_config(tmp_path / "bench.yaml", prepared, tmp_path / "tiny")
    out = tmp_path / "out"
    assert main(["benchmark", str(config), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "21 rows (7 images)" in printed and "report.md" in printed
    rows = read_results(out / "results.csv")
    assert {r["method"] for r in rows} == {"bicubic", "lanczos", "tiny"}
    md = (out / "report.md").read_text()
    assert "PSNR and SSIM by method" in md and "p-values against bicubic" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # spine and brain, embedded
    assert sorted(p.name.split("_")[0] for p in (out / "figures").iterdir()) == [
        "brain-mri",
        "spine-mri",
    ]
    # report only: no evaluation, same rows
    assert main(["benchmark", str(config), "--out", str(out), "--report-only"]) == 0
    assert len(read_results(out / "results.csv")) == 21


def test_benchmark_cli_rejects_bad_configs(prepared: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    config = _write_config(tmp_path / "b.yaml", prepared, tmp_path / "none", colour="red")
    assert main(["benchmark", str(config), "--no-progress"]) == 2
    assert "unknown key(s) 'colour'" in capsys.readouterr().err
    config = _write_config(tmp_path / "c.yaml", prepared, tmp_path / "missing-checkpoint")
    assert main(["benchmark", str(config), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "method 'tiny'" in capsys.readouterr().err
