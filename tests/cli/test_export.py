from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr import models, samples
from medsr.cli import main
from medsr.io import read

pytest.importorskip("onnxruntime")


def test_export_a_checkpoint_and_upscale_with_onnxruntime(tmp_path, capsys):
    torch.manual_seed(0)
    net = models.build_generator("espcn", {"scale": 2, "num_features": 8, "mid_features": 4})
    folder = models.save(net, tmp_path / "espcn", metadata={"normalisation": {"method": "auto"}})
    onnx_path = tmp_path / "espcn.onnx"
    assert main(["export", str(folder), "--onnx", str(onnx_path), "--opset", "17"]) == 0
    out = capsys.readouterr().out
    assert "max |ONNX - PyTorch|" in out and onnx_path.is_file()
    mri = str(samples.path("brain-mri"))
    assert main(["upscale", mri, "-o", str(tmp_path / "torch"), "--model", str(folder)]) == 0
    assert main(["upscale", mri, "-o", str(tmp_path / "ort"), "--model", str(onnx_path)]) == 0
    assert "onnxruntime" in capsys.readouterr().out
    a = read(tmp_path / "torch" / "brain-mri-flair.nii.gz").array
    b = read(tmp_path / "ort" / "brain-mri-flair.nii.gz").array
    assert a.shape == (480, 480)
    np.testing.assert_allclose(b, a, atol=1e-4)
    # a PyTorch checkpoint on the onnxruntime engine (exported in memory)
    assert (
        main(
            [
                "upscale",
                mri,
                "-o",
                str(tmp_path / "ort2"),
                "--model",
                str(folder),
                "--engine",
                "onnxruntime",
            ]
        )
        == 0
    )
    np.testing.assert_allclose(
        read(tmp_path / "ort2" / "brain-mri-flair.nii.gz").array, a, atol=1e-4
    )


def test_export_refuses_to_overwrite_and_untrained_networks(tmp_path, capsys):
    target = tmp_path / "m.onnx"
    assert main(["export", "bicubic", "--scale", "3", "--onnx", str(target)]) == 0
    assert main(["export", "bicubic", "--onnx", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "edsr", "--onnx", str(tmp_path / "e.onnx")]) == 2
    assert "without trained weights" in capsys.readouterr().err
