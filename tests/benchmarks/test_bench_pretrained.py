"""The pretrained-model benchmark runs end to end on the external DICOM files (tiny settings)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_pretrained.py"


def test_bench_pretrained_writes_table_records_and_figure(tmp_path, dicom_file):
    dicom_file("CT_small.dcm")  # skips without the DICOM test files
    spec = importlib.util.spec_from_file_location("bench_pretrained", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.ESRGAN = tmp_path / "absent.safetensors"  # Real-ESRGAN is too slow for a unit test
    bench.CROP = 64
    # a stand-in for ../shared/data: one external MRI volume and one research-only radiograph
    import nibabel as nib
    import numpy as np
    from PIL import Image as PILImage
    from scipy.ndimage import gaussian_filter

    bench.SHARED = tmp_path / "shared"
    rng = np.random.default_rng(0)
    volume = np.zeros((40, 48, 6), np.float32)
    volume[4:36, 6:42] = gaussian_filter(rng.random((32, 36, 6)), (3, 3, 0)) * 400 + 50
    (bench.SHARED / "brain-mri-stroke").mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(volume, np.eye(4)),
        bench.SHARED / "brain-mri-stroke" / "stroke01_T1w.nii.gz",
    )
    (bench.SHARED / "chest-xray-covid").mkdir()
    xray = (gaussian_filter(rng.random((80, 72)), 3) * 600).clip(0, 255).astype(np.uint8)
    PILImage.fromarray(xray).save(bench.SHARED / "chest-xray-covid" / "a.png")
    out = tmp_path / "out"
    argv = ["--manifest", str(tmp_path / "no-manifest"), "--model", "medsr-edsr-tiny-x2"]
    argv += ["--scales", "2", "--threads", "1", "--out", str(out), "--slices", "2"]
    argv += ["--append", str(tmp_path / "RESULTS.md")]
    docs = tmp_path / "pretrained.md"
    docs.write_text("# intro\n")  # no markers: refused before the run, file untouched
    with pytest.raises(SystemExit, match="--docs needs one line"):
        bench.main([*argv, "--docs", str(docs)])
    assert docs.read_text() == "# intro\n" and not out.exists()
    docs.write_text(f"# intro\n{bench.DOCS_START}\n| old table |\n{bench.DOCS_END}\nafter\n")
    assert bench.main([*argv, "--docs", str(docs)]) == 0
    records = json.loads((out / "records.json").read_text())
    sets = {r["set"] for r in records}
    assert sets == {
        "CT (pydicom-data, external)",
        "MRI T1 (stroke, external)",
        "X-ray (COVID-Net, external)",
    }
    assert len({r["image"] for r in records if r["set"].startswith("MRI")}) == 2
    assert {r["method"] for r in records} == {"bicubic", "medsr-edsr-tiny-x2"}
    assert all(r["psnr"] > 20 and 0 < r["ssim"] <= 1 for r in records)
    assert all(r["consistency"] > 20 for r in records)
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count(bench.HEADING) == 1 and "medsr-edsr-tiny-x2 PSNR" in text
    assert "| x2 | MRI T1 (stroke, external) | " in text.split("Consistency:")[1]
    gains = text.split("Gains over bicubic")[1].split("Consistency:")[0]
    assert "| x2: set | medsr-edsr-tiny-x2 dPSNR (dB) / dSSIM |" in gains
    row = next(line for line in gains.splitlines() if line.startswith("| MRI T1 (stroke"))
    mean = next(line for line in gains.splitlines() if line.startswith("| **MRI, mean of 1 set**"))
    assert row.split("|")[2] == mean.split("|")[2]  # one MRI set: its mean is its own gain
    assert {r["degradation"] for r in records} == {"bicubic"}
    assert "Degradation: antialiased bicubic." in text
    written = docs.read_text()  # the docs' block holds the same gains tables, the rest stays
    assert written.startswith(f"# intro\n{bench.DOCS_START}\n\n| x2: set |")
    assert written.endswith(f"\n\n{bench.DOCS_END}\nafter\n") and "| old table |" not in written
    assert written.split(bench.DOCS_START)[1].split(bench.DOCS_END)[0].strip() in gains

    # another of the training kernels makes the LR, and the consistency check uses it too
    kspace = tmp_path / "kspace"
    argv = ["--manifest", str(tmp_path / "no-manifest"), "--model", "medsr-edsr-tiny-x2"]
    argv += ["--scales", "2", "--threads", "1", "--out", str(kspace), "--slices", "1"]
    assert bench.main([*argv, "--degradation", "kspace"]) == 0
    other = json.loads((kspace / "records.json").read_text())
    assert {r["degradation"] for r in other} == {"kspace"}
    assert "k-space" in (kspace / "results.md").read_text()
    first = {(r["image"], r["method"]): r for r in records}
    changed = [
        (r["psnr"], first[(r["image"], r["method"])]["psnr"])
        for r in other
        if (r["image"], r["method"]) in first
    ]
    assert changed and any(a != b for a, b in changed)  # another LR, other scores

    # the self-ensemble runs the model 8 times (flips and rotations) and averages
    ensemble = tmp_path / "ensemble"
    argv[argv.index(str(kspace))] = str(ensemble)
    assert bench.main([*argv, "--self-ensemble", "tiny=medsr-edsr-tiny-x2"]) == 0
    both = json.loads((ensemble / "records.json").read_text())
    # (the synthetic radiograph is flat enough for bicubic to be exact: left out)
    plain = {r["image"]: r for r in both if r["method"] == "medsr-edsr-tiny-x2" and r["psnr"] < 60}
    mean8 = {r["image"]: r for r in both if r["method"] == "tiny + self-ensemble"}
    assert len(plain) == 5 and plain.keys() <= mean8.keys()
    diffs = [mean8[k]["psnr"] - plain[k]["psnr"] for k in plain]
    assert all(0 < d < 1 for d in diffs), diffs  # a little better: the model is not equivariant
    assert "tiny + self-ensemble dPSNR" in (ensemble / "results.md").read_text()

    # a darker HR (another normaliser's range): bicubic is linear, its error halves with it
    dark = tmp_path / "dark"
    argv[argv.index(str(ensemble))] = str(dark)
    with pytest.raises(SystemExit):
        bench.main([*argv, "--intensity", "1.5"])
    assert not dark.exists()
    assert bench.main([*argv, "--intensity", "0.5"]) == 0
    darker = json.loads((dark / "records.json").read_text())
    assert {r["intensity"] for r in darker} == {0.5}
    base = {r["image"]: r["psnr"] for r in both if r["method"] == "bicubic" and r["psnr"] < 60}
    half = {r["image"]: r["psnr"] for r in darker if r["method"] == "bicubic"}
    assert base and all(abs(half[k] - base[k] - 6.02) < 0.05 for k in base), (base, half)
    assert "after the HR is multiplied by 0.5" in (dark / "results.md").read_text()
