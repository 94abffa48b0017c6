from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from medsr import models
from medsr.cli import main
from medsr.eval.results import read_results
from tests.eval.conftest import prepared  # noqa: F401  (the shared prepared-data fixture)


@pytest.fixture
def espcn_checkpoint(tmp_path: Path) -> Path:
    """A tiny random ESPCN x4 saved as a medsr checkpoint."""
    torch.manual_seed(0)
    net = models.build_generator(
        "espcn", {"scale": 4, "in_channels": 1, "num_features": 8, "mid_features": 4}
    )
    folder = tmp_path / "espcn-x4"
    models.save(net, folder)
    return folder


def test_evaluate_writes_one_row_per_image_and_resumes(
    prepared: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
) -> None:
    out = tmp_path / "bicubic.csv"
    args = [
        "evaluate",
        "--model",
        "bicubic",
        "--data",
        str(prepared),
        "--split",
        "val",
        "--degradation",
        "bicubic_x4",
        "--metrics",
        "psnr,ssim,mae",
        "--mask",
        "brain",
        "--mask",
        "bright=threshold:30,",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "bicubic: 7 images" in text and "brain-mri (4 images)" in text
    assert "PSNR (dB) ↑" in text and "Consistency PSNR" in text
    rows = read_results(out)
    assert len(rows) == 7 and {r["method"] for r in rows} == {"bicubic"}
    header = next(csv.reader(out.open()))
    assert "brain_ssim_inside" in header and "bright_mae_difference" in header
    before = out.read_bytes()
    assert main(args) == 0  # resume: nothing left to compute, nothing rewritten
    assert out.read_bytes() == before
    assert main([*args[:-1], "--border", "2", "--no-progress"]) == 2  # other settings
    assert "other settings" in capsys.readouterr().err


def test_evaluate_a_checkpoint(prepared: Path, tmp_path: Path, espcn_checkpoint: Path) -> None:  # noqa: F811
    out = tmp_path / "espcn.csv"
    code = main(
        [
            "evaluate",
            "--model",
            str(espcn_checkpoint),
            "--name",
            "tiny espcn",
            "--data",
            str(prepared),
            "--split",
            "test",
            "--datasets",
            "spine-mri",
            "--degradation",
            "configs/degradations/bicubic_x4.yaml",
            "--metrics",
            "psnr",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    rows = read_results(out)
    assert len(rows) == 3 and {r["method"] for r in rows} == {"tiny espcn"}
    assert all(r["dataset"] == "spine-mri" and r["split"] == "test" for r in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--degradation", "bicubic"], "neither a YAML file nor NAME_xS"),
        (["--degradation", "bicubic_x4", "--mask", "tumour"], "unknown region kind"),
        (["--degradation", "bicubic_x4", "--metrics", "psnr,sharpness"], "unknown metric"),
        (["--degradation", "bicubic_x2", "--model", "edsr"], "network without trained weights"),
    ],
)
def test_evaluate_bad_options_exit_2(
    prepared: Path,  # noqa: F811
    tmp_path: Path,
    capsys,
    extra: list[str],
    message: str,
) -> None:
    args = ["evaluate", "--model", "bicubic", "--data", str(prepared), "--out"]
    args += [str(tmp_path / "x.csv"), "--no-progress", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
