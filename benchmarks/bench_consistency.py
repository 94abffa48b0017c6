"""What data-consistent output (``medsr upscale --consistency``, issue 20) does to quality.

    nice -n 15 python benchmarks/bench_consistency.py                 # prints the table
    nice -n 15 python benchmarks/bench_consistency.py --append benchmarks/RESULTS.md

For each shipped default model (x2 and x4) and each validation set of its training manifest
(subject-level split, never trained on), ``upscale_image`` runs with and without iterative
back-projection (:func:`medsr.infer.safety.back_project`, default
:class:`~medsr.infer.safety.ConsistencyOptions`), and the two outputs are scored against the
HR in physical units (data range: the width of the normaliser window fitted to the LR
stack, the same for both outputs):

* ``brats-flair``: BraTS 2013 FLAIR pat0003 (validation subject), the ``--slices`` axial
  slices with the largest lesion proxy (seed 4's measure, ``medsr.eval.regions``
  ``zscore:2``: brain-mask voxels more than 2 standard deviations above the masked mean of
  the volume); ``lesion SSIM`` is the SSIM inside that region.
* ``spine-mri``: ``VB2_05.npz`` (validation subject), ``--slices`` evenly spaced sagittal
  slices cropped to 380 x 380.
* ``chest-xray``: ``cxr-01.png`` (validation), the centre 512 x 512.

Two acquisition models for the LR: ``bicubic`` (antialiased bicubic, the operator the
back-projection and the consistency score use: matched) and ``kspace`` (central k-space
crop with a Tukey window, which the models also train on: the back-projection's operator is
then the wrong one). ``consistency`` is the fidelity PSNR (dB) of the output against its
input under the bicubic operator. One CPU thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from medsr.eval.regions import Region, VolumeStats
from medsr.infer.safety import ConsistencyOptions
from medsr.infer.upscale import upscale_image
from medsr.io import read
from medsr.io.image import Image, Source
from medsr.metrics import psnr, ssim
from medsr.transforms.degrade import bicubic, kspace_truncate

HEADING = "## Data-consistent output (issue 20)"
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))
MODELS = {2: "medsr-edsr-tiny-x2", 4: "medsr-edsr-tiny-x4"}


def brats(slices: int) -> tuple[np.ndarray, np.ndarray, str]:
    """HR stack ``(N, 240, 240)`` and its lesion masks."""
    folder = SHARED / "brain-mri-brats2013" / "pat0003"
    vol = read(folder / "Flair_subtrMeanDivStd.nii.gz").array.astype(np.float32)
    brain = read(folder / "brainmask.nii.gz").array > 0
    stats = VolumeStats(float(vol[brain].mean()), float(vol[brain].std()))
    region = Region("lesion", "zscore", z=2.0)
    masks = np.stack([region.mask(vol[k], brain[k], stats) for k in range(len(vol))])
    counts = masks.reshape(len(vol), -1).sum(axis=1)
    pick = np.sort(np.argsort(counts)[::-1][:slices])
    return vol[pick], masks[pick], "MR"


def spine(slices: int) -> tuple[np.ndarray, None, str]:
    arr = np.load(SHARED / "spine-mri" / "VB2_05.npz")["image"].astype(np.float32)
    vol = np.moveaxis(arr, -1, 0)[:, :380, :380]
    pick = np.linspace(vol.shape[0] * 0.2, vol.shape[0] * 0.8, slices).astype(int)
    return vol[pick], None, "MR"


def cxr(_slices: int) -> tuple[np.ndarray, None, str]:
    arr = read(SHARED / "chest-xray" / "cxr-01.png").array.astype(np.float32)
    h, w = arr.shape
    top, left = (h - 512) // 2, (w - 512) // 2
    return arr[None, top : top + 512, left : left + 512], None, "DX"


SETS = {"brats-flair": brats, "spine-mri": spine, "chest-xray": cxr}


def degrade(hr: np.ndarray, scale: int, kind: str) -> np.ndarray:
    x = torch.from_numpy(hr)[:, None]
    if kind == "bicubic":
        y = bicubic(x, scale, antialias=True, clip=False)
    else:
        y = kspace_truncate(x, scale, window="tukey", clip=False)
    return y[:, 0].numpy()


def score(sr: np.ndarray, hr: np.ndarray, width: float, masks: np.ndarray | None, s: int):
    b = s  # shave the border, as the pretrained benchmark does
    x = torch.from_numpy(sr[:, None, b:-b, b:-b].copy())
    y = torch.from_numpy(hr[:, None, b:-b, b:-b].copy())
    out = {
        "psnr": float(psnr(x, y, data_range=width).mean()),
        "ssim": float(ssim(x, y, data_range=width).mean()),
    }
    if masks is not None:
        m = torch.from_numpy(masks[:, None, b:-b, b:-b].copy())
        values = ssim(x, y, data_range=width, mask=m)
        out["lesion_ssim"] = float(values[torch.isfinite(values)].mean())
    return out


def run(slices: int) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    options = ConsistencyOptions()
    for set_name, loader in SETS.items():
        hr, masks, modality = loader(slices)
        for scale, model in MODELS.items():
            for kind in ("bicubic", "kspace"):
                lr = degrade(hr, scale, kind)
                # a radiograph is normalised by its bit depth (8-bit PNG), as in training
                source = Source(format="png", bits_stored=8) if modality == "DX" else None
                image = Image(
                    array=lr,
                    spacing=(1.0, float(scale), float(scale)),
                    modality=modality,
                    source=source,
                )
                for label, consistency in (("network", None), ("+consistency", options)):
                    start = time.perf_counter()
                    result = upscale_image(image, model, device="cpu", consistency=consistency)
                    seconds = time.perf_counter() - start
                    low, high = result.normaliser.bounds
                    row = {
                        "set": set_name,
                        "model": model,
                        "lr": kind,
                        "output": label,
                        "consistency": result.fidelity_psnr,
                        "iterations": result.projection.iterations if result.projection else 0,
                        "seconds": seconds,
                        **score(result.image.array, hr, float(high - low), masks, scale),
                    }
                    rows.append(row)
                    print(row, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| set | model | LR | output | PSNR (dB) | SSIM | lesion SSIM | consistency (dB) "
        "| iterations | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lesion = f"{r['lesion_ssim']:.4f}" if "lesion_ssim" in r else "-"
        lines.append(
            f"| {r['set']} | {r['model']} | {r['lr']} | {r['output']} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {lesion} | {r['consistency']:.1f} | {r['iterations']} | "
            f"{r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slices", type=int, default=8, help="slices per volume (default 8)")
    parser.add_argument("--append", metavar="MD", help="append the section to this file")
    args = parser.parse_args()
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = run(args.slices)
    text = (
        f"\n{HEADING}\n\n`nice -n 15 python benchmarks/bench_consistency.py --slices {args.slices}`"
        f"; {started}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"1 thread, torch {torch.__version__}; `uptime` at start: {load}\n\n"
        f"Consistency options: {ConsistencyOptions()}.\n\n{table(rows)}\n"
    )
    print(text)
    if args.append:
        with open(args.append, "a", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
