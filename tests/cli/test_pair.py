from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from medsr.cli import main
from medsr.io import Image, read, write
from medsr.transforms.degrade import thick_slices


def _series(tmp_path: Path, *, same_frame: bool = True) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 100, (15, 12, 12)).astype(np.float32)
    write(Image(array=volume, spacing=(1.0, 1.0, 1.0)), tmp_path / "thin")
    thin = read(tmp_path / "thin")
    thick = thin.regrid(thick_slices(torch.from_numpy(thin.array), thickness=3, axis=0).numpy())
    write(thick if same_frame else thick.replace(source=None), tmp_path / "thick")
    return tmp_path / "thick", tmp_path / "thin"


def test_pair_prints_and_writes_csv(tmp_path: Path, capsys) -> None:
    lr, hr = _series(tmp_path)
    out = tmp_path / "pairs.csv"
    assert main(["pair", str(lr), str(hr), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "5 of 5 LR slices paired with 15 HR slices within 0.500 mm" in text
    rows = list(csv.DictReader(out.open()))
    assert [int(r["hr_index"]) for r in rows] == [1, 4, 7, 10, 13]
    assert all(float(r["distance_mm"]) == 0.0 and r["within_tolerance"] == "true" for r in rows)


def test_pair_lists_unmatched_and_refuses_other_frames(tmp_path: Path, capsys) -> None:
    lr, hr = _series(tmp_path)
    for k in range(9, 16):  # keeps IM00001..IM00008: HR slices 0..7
        (hr / f"IM{k:05d}.dcm").unlink()
    assert main(["pair", str(lr), str(hr), "--tolerance", "0.5"]) == 0
    text = capsys.readouterr().out
    assert "3 of 5 LR slices" in text and "LR slices without a partner: 3, 4" in text
    other_lr, other_hr = _series(tmp_path / "b", same_frame=False)
    assert main(["pair", str(other_lr), str(other_hr)]) == 2
    err = capsys.readouterr().err
    assert "FrameOfReferenceUID" in err and "Traceback" not in err
