from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from medsr.cli import main
from medsr.infer import default_model
from medsr.io import read


def test_demo_on_the_ct_sample_writes_a_derived_series_and_a_figure(tmp_path, capsys):
    out = tmp_path / "demo-out"
    assert main(["demo", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    default = default_model(4)  # the demo's scale
    assert default in stdout and "trained model" in stdout
    # the CT subject trained the shipped models: the demo says its scores are optimistic
    assert f"note: this chest-ct subject is in {default}'s training data" in stdout
    assert "held-out samples: brain-mri, chest-xray" in stdout
    assert "side_by_side.png" in stdout
    with PILImage.open(out / "side_by_side.png") as im:
        assert im.format == "PNG" and im.size[0] > 1000
        pixels = np.asarray(im.convert("L"))
    assert pixels.std() > 20  # not blank
    sr = read(out / f"chest-ct-sr-{default}")  # the name ends with -x4 once
    lr = read(out / "chest-ct-lr-x4")
    assert sr.array.shape == (3, 512, 512) and lr.array.shape == (3, 128, 128)
    assert sr.spacing[1] == pytest.approx(lr.spacing[1] / 4)
    assert sr.source.datasets[0].ImageType[0] == "DERIVED"
    # the model's PSNR line and bicubic's, both against the ground truth
    lines = [line for line in stdout.splitlines() if "PSNR" in line]
    assert any("bicubic" in line for line in lines) and any(default in line for line in lines)
    assert main(["demo", "--out", str(out)]) == 0  # runs again over its own output


@pytest.mark.parametrize(
    ("sample", "name"),
    [
        ("brain-mri", "brain-mri-sr-bicubic-x2.nii.gz"),
        ("chest-xray", "chest-xray-sr-bicubic-x2.png"),
    ],
)
def test_demo_on_the_other_samples(sample, name, tmp_path, capsys):
    args = [
        "demo",
        "--out",
        str(tmp_path),
        "--sample",
        sample,
        "--scale",
        "2",
        "--model",
        "bicubic",
    ]
    assert main(args) == 0
    assert (tmp_path / name).is_file() and (tmp_path / "side_by_side.png").is_file()
    assert "bicubic" in capsys.readouterr().out


def test_demo_on_a_held_out_sample_has_no_training_data_note(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--sample", "brain-mri", "--scale", "2"]) == 0
    stdout = capsys.readouterr().out
    assert default_model(2) in stdout and "training data" not in stdout
