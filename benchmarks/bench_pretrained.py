"""Benchmark of the shipped medsr models (issue 9) against bicubic and Real-ESRGAN x4plus.

    python benchmarks/bench_pretrained.py                       # the table and the figure
    python benchmarks/bench_pretrained.py --append benchmarks/RESULTS.md
    python benchmarks/bench_pretrained.py --model tiny-x4=runs/medsr-edsr-tiny-x4/checkpoints/last
    python benchmarks/bench_pretrained.py --scales 4 --model medsr-edsr-quality-x4 \
        --self-ensemble medsr-edsr-quality-x4 --out /tmp/ensemble   # what --self-ensemble buys

Evaluation sets (deterministic; nothing here was used to choose a hyper-parameter):

* **validation** (one set per dataset): ``--slices`` evenly spaced slices of the validation
  split of the ``medsr prepare`` manifest the models were trained from (``--manifest``,
  default ``runs/data/all``, see docs/pretrained.md; subject-level split: spine, BraTS, the
  NIH radiograph and one pydicom-data radiograph not trained on).
* **external** (never trained on, other sources and sites; ``../shared/data`` and
  pydicom-data): stroke T1 / T2 / FLAIR (one set each), a real thick-slice T1 post-contrast
  brain (in-plane), abdominal CT (``body-ct``), the CT DICOM files of pydicom / pydicom-data
  (``693_UNCR.dcm``, the two frames of ``eCT_Supplemental.dcm``, ``CT_small.dcm``), and the
  four full-size COVID-Net radiographs (research use only: scores, but no figure). Volumes
  give ``--slices`` evenly spaced slices with at least 20 % foreground.

Every image is normalised to [0, 1] the way training normalises it (CT wide window, MR
foreground percentiles 0.5/99.5 of the volume, X-ray bit depth; clipped), radiographs are
centre-cropped to 512 x 512 (Real-ESRGAN's CPU cost), and the HR is cropped to a multiple
of 4. LR = antialiased bicubic downsampling (``medsr.transforms.degrade.bicubic``) at x2 and
x4 (the issue's protocol), or with ``--degradation`` one of the other kernels the models are
trained on (Gaussian blur with FWHM one LR pixel, Tukey-windowed k-space truncation, plain
bilinear without antialiasing): how the gains hold when the low resolution did not come from
bicubic. Outputs are clamped to [0, 1]. PSNR and SSIM (``medsr.metrics``, data range 1, which for
these affine normalisers equals PSNR in physical units over the normaliser's window) are
computed after shaving ``scale`` border pixels. GMSD (``medsr.metrics.gmsd``, lower is
better) is the perceptual index: LPIPS weights cannot be had offline. Consistency (issue 16:
every model at least bicubic's) is the PSNR of the output degraded again by the same
operator that made the LR against the LR input (whole image, outputs clamped).

Real-ESRGAN x4plus (``../shared/data/weights/RealESRGAN_x4plus.safetensors``; grey repeated
over RGB, output averaged back to grey; at x2 its x4 output is resized down by 2 with
antialiased bicubic, as its ``--outscale`` does) costs seconds per 64 x 64 input on this CPU,
so it runs on the centre 192 x 192 crop of ``--esrgan-slices`` images of each set (evenly
spaced); the second table compares every method on exactly those crops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from medsr.infer.model_source import SRModel

HEADING = "## Pretrained models (issue 9)"
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent.parent / "shared" / "data"))
if not SHARED.is_dir():
    SHARED = REPO.parent / "shared" / "data"
ESRGAN = SHARED / "weights" / "RealESRGAN_x4plus.safetensors"
CROP = 512
ESRGAN_CROP = 192


# -- data --------------------------------------------------------------------------------------
def _evenly(items: list, n: int | None) -> list:
    if n is None or len(items) <= n:
        return list(items)
    # centred spacing: the first and last slices of a volume are often nearly empty
    idx = ((np.arange(n) + 0.5) * len(items) / n).astype(int)
    return [items[i] for i in idx]


def _centre_crop(x: np.ndarray, size: int) -> np.ndarray:
    h, w = x.shape
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return x[top : top + size, left : left + size]


def _multiple(x: np.ndarray, m: int = 4) -> np.ndarray:
    h, w = x.shape
    return x[: h - h % m, : w - w % m]


_MODALITY_LABEL = {"MR": "MRI", "CT": "CT", "DX": "X-ray", "CR": "X-ray"}


def manifest_sets(manifest: Path, slices: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    """One set per dataset of the manifest's validation split (subjects never trained on)."""
    from medsr.data.manifest import read_manifest

    rows = [r for r in read_manifest(manifest) if r.split == "val"]
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    root = manifest if manifest.is_dir() else manifest.parent
    for dataset in sorted({r.dataset for r in rows}):
        chosen_rows = [r for r in rows if r.dataset == dataset]
        modality = _MODALITY_LABEL.get(chosen_rows[0].modality, chosen_rows[0].modality)
        label = f"{modality} ({dataset}, val)"
        images = []
        for r in _evenly(chosen_rows, slices):
            stack = np.load(root / r.store_path, mmap_mode="r")
            plane = np.asarray(stack[r.slice_index], dtype=np.float32)
            unit = np.clip(r.load_normaliser().forward(plane), 0.0, 1.0)
            if modality == "X-ray":
                unit = _centre_crop(unit, CROP)
            images.append((f"{r.volume_id}#{r.slice_index}", _multiple(unit)))
        if images:
            out[label] = images
    return out


# Kept out of training entirely (other sources and sites): the external test set.
EXTERNAL_VOLUMES = {
    "MRI T1 (stroke, external)": "brain-mri-stroke/stroke01_T1w.nii.gz",
    "MRI T2 (stroke, external)": "brain-mri-stroke/stroke01_T2w.nii.gz",
    "MRI FLAIR (stroke, external)": "brain-mri-stroke/stroke01_FLAIR.nii.gz",
    "MRI T1 post (thick brain, external)": "brain-mri-thick/pyrad-brain1_T1w-post.nii.gz",
    "CT abdomen (body-ct, external)": "body-ct/usb01_CT-abdomen.nii.gz",
}
EXTERNAL_MODALITY = {"MRI": "MR", "CT": "CT"}
EXTERNAL_XRAY = "chest-xray-covid"  # research use only: scores here, no figure from it


def _foreground_slices(volume: np.ndarray, norm, n: int) -> list[int]:
    """``n`` evenly spaced slices among those with at least 20 % foreground."""
    keep = [
        k
        for k, plane in enumerate(volume)
        if float((np.clip(norm.forward(plane), 0, 1) > 0.05).mean()) >= 0.2
    ]
    return _evenly(keep, n)


def _dicom_dirs() -> list[Path]:
    import pydicom

    dirs = [Path(pydicom.__file__).parent / "data" / "test_files"]
    try:
        import data_store  # pydicom-data's import name

        dirs.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    return dirs


def _find(name: str) -> Path | None:
    for folder in _dicom_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


def external_sets(slices: int) -> dict[str, list[tuple[str, np.ndarray]]]:
    from medsr.io import read
    from medsr.transforms.intensity import fit_normaliser

    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for label, rel in EXTERNAL_VOLUMES.items():
        path = SHARED / rel
        if not path.is_file():
            continue
        modality = EXTERNAL_MODALITY[label.split()[0]]
        image = read(path, modality=modality)
        norm = fit_normaliser(image.array, modality=modality)
        images = []
        for k in _foreground_slices(image.array, norm, slices):
            unit = np.clip(norm.forward(image.array[k]), 0.0, 1.0).astype(np.float32)
            images.append((f"{path.name}#{k}", _multiple(unit)))
        if images:
            out[label] = images
    # real CT DICOM files of pydicom / pydicom-data (other scanners)
    images = []
    for name in ["693_UNCR.dcm", "eCT_Supplemental.dcm", "CT_small.dcm"]:
        path = _find(name)
        if path is None:
            continue
        image = read(path)
        array = image.array if image.array.ndim == 3 else image.array[None]
        norm = fit_normaliser(array, modality="CT")
        for k, plane in enumerate(array):
            unit = np.clip(norm.forward(plane), 0.0, 1.0).astype(np.float32)
            images.append((f"{name}#{k}", _multiple(unit)))
    if images:
        out["CT (pydicom-data, external)"] = images
    # full-size radiographs from other sites (COVID-Net; research use only)
    images = []
    for path in sorted((SHARED / EXTERNAL_XRAY).glob("*.png")):
        image = read(path, modality="DX")
        src = image.source
        norm = fit_normaliser(
            image.array,
            modality="DX",
            bits_stored=src.bits_stored if src is not None else None,
            signed=False,
        )
        unit = np.clip(norm.forward(image.array), 0.0, 1.0).astype(np.float32)
        images.append((path.stem, _multiple(_centre_crop(unit, CROP))))
    if images:
        out["X-ray (COVID-Net, external)"] = images
    return out


# -- degradations ------------------------------------------------------------------------------
Degrade = Callable[[torch.Tensor, int], torch.Tensor]


def degrader(kind: str) -> Degrade:
    """The LR operator of ``--degradation kind`` (:func:`medsr.transforms.degrade.mixed_kind`:
    the kernels the models' training degradation ``mixed_downsample`` draws from)."""
    from medsr.transforms.degrade import mixed_kind

    return lambda x, scale: mixed_kind(x, scale, kind)


# -- methods -----------------------------------------------------------------------------------
Method = Callable[[torch.Tensor], torch.Tensor]


def bicubic_up(scale: int) -> Method:
    return lambda lr: F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


def network(module: torch.nn.Module) -> Method:
    module.eval()

    def run(lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(lr)

    return run


def realesrgan(scale: int) -> Method | None:
    if not ESRGAN.is_file() or 4 % scale:  # x3: no integer resize from its x4 output
        return None
    from medsr.models import load_official_esrgan
    from medsr.transforms.degrade import bicubic

    net = load_official_esrgan(ESRGAN, scale=4)

    def run(lr: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            sr = net(lr.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
        return sr if scale == 4 else bicubic(sr.clamp(0, 1), 4 // scale, antialias=True)

    return run


def self_ensembles(specs: list[str], threads: int) -> dict[str, tuple[int, Method]]:
    """``label=spec`` or a shipped name -> (scale, the model through medsr's 8-fold
    self-ensemble on its default engine, as ``medsr upscale --self-ensemble`` runs it), under
    the label ``"LABEL + self-ensemble"``."""
    from medsr.infer.runtime import get_runner

    out: dict[str, tuple[int, Method]] = {}
    for label, model in _loaded(specs):
        runner = get_runner(model, threads=threads, self_ensemble=True)
        out[f"{label} + self-ensemble"] = (model.scale, runner)
    return out


def _loaded(specs: list[str]) -> list[tuple[str, SRModel]]:
    """``label=spec`` or a shipped name -> (label, the loaded model)."""
    from medsr.infer import load_model

    pairs = (spec.partition("=") for spec in specs)
    return [(label, load_model(target or label)) for label, _, target in pairs]


def load_models(specs: list[str]) -> dict[str, tuple[int, torch.nn.Module]]:
    """``label=spec`` or a shipped name -> (scale, module)."""
    from medsr.models import PRETRAINED

    loaded = _loaded(specs or list(PRETRAINED))
    return {label: (model.scale, model.module) for label, model in loaded}


# -- evaluation --------------------------------------------------------------------------------
def score(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict[str, float]:
    from medsr.metrics import gmsd, psnr, ssim

    sr = sr.clamp(0, 1)[..., scale:-scale, scale:-scale].double()
    hr = hr[..., scale:-scale, scale:-scale].double()
    return {
        "psnr": float(psnr(sr, hr, data_range=1.0)[0]),
        "ssim": float(ssim(sr, hr, data_range=1.0)[0]),
        "gmsd": float(gmsd(sr, hr, data_range=1.0)[0]),
    }


def consistency(sr: torch.Tensor, lr: torch.Tensor, scale: int, degrade: Degrade) -> float:
    """PSNR (dB) of the clamped output degraded again (by ``degrade``, the operator that made
    the LR) against the LR."""
    from medsr.metrics import consistency_psnr

    sr = sr.clamp(0, 1).double()
    return float(
        consistency_psnr(sr, lr.double(), degrade=lambda x: degrade(x, scale), data_range=1.0)[0]
    )


def _run(methods: dict[str, Method], hr: torch.Tensor, scale: int, degrade: Degrade) -> dict:
    h, w = hr.shape[-2:]
    hr = hr[..., : h - h % scale, : w - w % scale]  # x3: the images are multiples of 4
    lr = degrade(hr, scale)
    outs, scores = {}, {}
    for method, fn in methods.items():
        t0 = time.perf_counter()
        sr = fn(lr)
        seconds = time.perf_counter() - t0
        outs[method] = sr.clamp(0, 1)
        scores[method] = {
            "seconds": seconds,
            **score(sr, hr, scale),
            "consistency": consistency(sr, lr, scale, degrade),
        }
    return {"outs": outs, "scores": scores}


def evaluate(
    sets,
    models,
    scales,
    esrgan_slices: int,
    figure_items: dict,
    cache: dict | None = None,
    degradation: str = "bicubic",
    extra: dict[str, tuple[int, Method]] | None = None,
    intensity: float = 1.0,
) -> list[dict]:
    """Every method on every image (``esrgan_subset`` False), then every method and
    Real-ESRGAN on the centre ``ESRGAN_CROP`` crop of the subset (``esrgan_subset`` True).
    LR by ``degradation`` (one of ``MIXED_KINDS``). ``cache``: Real-ESRGAN outputs by
    ``"scale/image"``, or ``"degradation/scale/image"`` for a degradation other than bicubic
    (read and filled). ``extra``: further methods by label, (scale, method). ``intensity``:
    every HR image is multiplied by it first (another scanner's or normaliser's brightness)."""
    records = []
    cache = {} if cache is None else cache
    degrade = degrader(degradation)
    prefix = "" if degradation == "bicubic" else f"{degradation}/"
    if intensity != 1:  # once for all scales
        prefix += f"intensity {intensity:g}/"
        factor = np.float32(intensity)
        sets = {name: [(n, unit * factor) for n, unit in items] for name, items in sets.items()}
    for scale in scales:
        methods: dict[str, Method] = {"bicubic": bicubic_up(scale)}
        for label, (s, module) in models.items():
            if s == scale:
                methods[label] = network(module)
        for label, (s, fn) in (extra or {}).items():
            if s == scale:
                methods[label] = fn
        esr = realesrgan(scale)
        for set_name, images in sets.items():
            subset = {name for name, _ in _evenly(images, esrgan_slices)}
            for name, unit in images:
                hr = torch.from_numpy(np.ascontiguousarray(unit))[None, None]
                runs = [(False, hr, methods)]
                if esr is not None and name in subset:
                    crop = _multiple(_centre_crop(unit, ESRGAN_CROP))
                    crop_t = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
                    key = f"{prefix}{scale}/{name}"

                    def cached(lr: torch.Tensor, key: str = key, fn: Method = esr) -> torch.Tensor:
                        if key not in cache:
                            cache[key] = fn(lr)
                        return cache[key]

                    runs.append((True, crop_t, {**methods, "Real-ESRGAN x4plus": cached}))
                for flag, image, chosen in runs:
                    result = _run(chosen, image, scale, degrade)
                    for method, sc in result["scores"].items():
                        records.append(
                            {
                                "scale": scale,
                                "set": set_name,
                                "image": name,
                                "method": method,
                                "degradation": degradation,
                                "intensity": intensity,
                                "esrgan_subset": flag,
                                "size": list(image.shape[-2:]),
                                **sc,
                            }
                        )
                    key = (scale, set_name)
                    if flag and key not in figure_items and "COVID" not in set_name:
                        figure_items[key] = (name, image, result["outs"])
    return records


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else float("nan")


def table(records: list[dict], *, subset: bool) -> list[str]:
    rows = [r for r in records if r["esrgan_subset"] == subset]
    methods: list[str] = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    lines = [
        "| scale | set | n | " + " | ".join(f"{m} PSNR / SSIM / GMSD" for m in methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for scale in sorted({r["scale"] for r in rows}):
        for set_name in dict.fromkeys(r["set"] for r in rows if r["scale"] == scale):
            cells = []
            n = 0
            for m in methods:
                sel = [r for r in rows if r["scale"] == scale and r["set"] == set_name]
                sel = [r for r in sel if r["method"] == m]
                if not sel:
                    cells.append("-")
                    continue
                n = max(n, len(sel))
                cells.append(
                    f"{_mean([r['psnr'] for r in sel]):.2f} / {_mean([r['ssim'] for r in sel]):.4f}"
                    f" / {_mean([r['gmsd'] for r in sel]):.4f}"
                )
            lines.append(f"| x{scale} | {set_name} | {n} | " + " | ".join(cells) + " |")
    return lines


def gains(records: list[dict]) -> list[str]:
    """Per scale, a table of sets x models: mean PSNR / SSIM gain over bicubic on the same
    images ("-" where a model was not run at that scale)."""
    records = [r for r in records if not r["esrgan_subset"]]
    base = {(r["scale"], r["set"], r["image"]): r for r in records if r["method"] == "bicubic"}
    lines: list[str] = []
    for scale in sorted({r["scale"] for r in records}):
        rows = [r for r in records if r["scale"] == scale]
        methods = [
            m
            for m in dict.fromkeys(r["method"] for r in rows)
            if m not in ("bicubic", "Real-ESRGAN x4plus")
        ]
        if not methods:
            continue
        if lines:
            lines.append("")
        lines += [
            f"| x{scale}: set | " + " | ".join(f"{m} dPSNR (dB) / dSSIM" for m in methods) + " |",
            "|---|" + "---|" * len(methods),
        ]
        per_set: dict[tuple[str, str], tuple[float, float]] = {}
        for set_name in dict.fromkeys(r["set"] for r in rows):
            cells = []
            for method in methods:
                sel = [r for r in rows if (r["set"], r["method"]) == (set_name, method)]
                if not sel:
                    cells.append("-")
                    continue
                dp = _mean([r["psnr"] - base[(scale, set_name, r["image"])]["psnr"] for r in sel])
                ds = _mean([r["ssim"] - base[(scale, set_name, r["image"])]["ssim"] for r in sel])
                per_set[(set_name, method)] = (dp, ds)
                cells.append(f"{dp:+.2f} / {ds:+.4f}")
            lines.append(f"| {set_name} | " + " | ".join(cells) + " |")
        # the modality means the issue's targets name: the mean of the sets' means
        of = {name: name.split()[0] for name, _ in per_set}  # "MRI T1 (...)" -> "MRI"
        for modality in dict.fromkeys(of.values()):
            count = sum(1 for kind in of.values() if kind == modality)
            cells = []
            for method in methods:
                got = [v for (n, m), v in per_set.items() if m == method and of[n] == modality]
                dp, ds = _mean([g[0] for g in got]), _mean([g[1] for g in got])
                cells.append(f"{dp:+.2f} / {ds:+.4f}" if got else "-")
            label = f"{modality}, mean of {count} set{'s' if count != 1 else ''}"
            lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    return lines


def consistency_table(records: list[dict]) -> list[str]:
    """Per scale and set: mean consistency (dB) of every method over all images, or over the
    Real-ESRGAN subset crops for a method that ran only there (Real-ESRGAN)."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    groups: dict[tuple, list[float]] = {}
    for r in records:
        key = (r["scale"], r["set"], r["method"], r["esrgan_subset"])
        groups.setdefault(key, []).append(r["consistency"])
    lines = [
        "| scale | set | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    for scale, set_name in dict.fromkeys((r["scale"], r["set"]) for r in records):
        cells = []
        for m in methods:
            if (scale, set_name, m, False) in groups:
                cells.append(f"{_mean(groups[(scale, set_name, m, False)]):.1f}")
            elif (scale, set_name, m, True) in groups:
                cells.append(f"{_mean(groups[(scale, set_name, m, True)]):.1f} (crops)")
            else:
                cells.append("-")
        lines.append(f"| x{scale} | {set_name} | " + " | ".join(cells) + " |")
    return lines


def speed(models: dict, repeats: int = 5) -> list[str]:
    lines = []
    for label, (scale, module) in models.items():
        lr = torch.rand(1, 1, 512 // scale, 512 // scale)
        run = network(module)
        run(lr)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run(lr)
            times.append(time.perf_counter() - t0)
        n = sum(p.numel() for p in module.parameters())
        lines.append(
            f"- `{label}` (x{scale}, {n:,} parameters in the deploy form): 512 x 512 output in "
            f"{statistics.median(times):.3f} s (eager PyTorch, median of {repeats}, "
            f"{torch.get_num_threads()} threads)"
        )
    return lines


def figure(items: dict, out: Path) -> Path | None:
    if not items:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(items, key=lambda k: (k[0], k[1]))
    ncols = max(len(items[k][2]) for k in keys) + 1
    fig, axes = plt.subplots(len(keys), ncols, figsize=(2.2 * ncols, 2.4 * len(keys)))
    axes = np.atleast_2d(axes)
    for row, key in enumerate(keys):
        _name, hr, outs = items[key]
        h, w = hr.shape[-2:]
        size = min(h, w, 128)
        top, left = (h - size) // 2, (w - size) // 2
        panels = [("HR", hr), *outs.items()]
        # display window: the HR crop's 1st..99th percentiles (CT soft tissue and radiographs
        # are low-contrast in the training normalisation)
        ref = hr[0, 0, top : top + size, left : left + size].numpy()
        lo, hi = np.percentile(ref, [1, 99])
        hi = hi if hi > lo else lo + 1e-3
        for col in range(ncols):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(panels):
                continue
            title, img = panels[col]
            crop = img[0, 0, top : top + size, left : left + size].numpy()
            ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            label = title if col else f"HR x{key[0]}\n{key[1]}"
            ax.set_title(label, fontsize=7)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pretrained_examples.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from medsr.transforms.degrade import MIXED_KIND_TEXT, MIXED_KINDS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=REPO / "runs" / "data" / "all")
    parser.add_argument("--model", action="append", default=[], help="LABEL=SPEC (repeatable)")
    parser.add_argument(
        "--self-ensemble",
        action="append",
        default=[],
        metavar="SPEC",
        help="also run this model (LABEL=SPEC or a shipped name, repeatable) through the 8-fold "
        "self-ensemble of `medsr upscale --self-ensemble`, as the method 'LABEL + self-ensemble' "
        "(8 times its time)",
    )
    parser.add_argument("--slices", type=int, default=24, help="slices per MRI set")
    parser.add_argument("--esrgan-slices", type=int, default=2)
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--degradation",
        choices=MIXED_KINDS,
        default="bicubic",
        help="how the LR is made from the HR (default: antialiased bicubic, the issue's "
        "protocol); the others are the further kernels the models train on",
    )
    parser.add_argument(
        "--intensity",
        type=float,
        default=1.0,
        help="multiply every HR image by this factor in (0, 1] before it is degraded: how the "
        "models hold up when an image is darker than the training normalisation makes it "
        "(default 1: as normalised)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default benchmarks/pretrained, whose records the model cards use; "
        "benchmarks/pretrained/KIND for another --degradation, .../intensity-F for another "
        "--intensity)",
    )
    parser.add_argument("--append", type=Path, help="append the section to this Markdown file")
    parser.add_argument(
        "--docs",
        type=Path,
        help="also write the gains tables into this Markdown file (docs/pretrained.md), "
        f"between its lines '{DOCS_START}' and '{DOCS_END}'",
    )
    parser.add_argument(
        "--esrgan-cache",
        type=Path,
        help="a .pt file of Real-ESRGAN outputs, reused when present and written after the run "
        "(Real-ESRGAN does not change between runs)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.intensity <= 1:
        parser.error(f"--intensity must be in (0, 1], got {args.intensity}")
    if args.docs is not None:
        docs_block(args.docs.read_text(encoding="utf-8"), args.docs)  # fail before the run
    if args.out is None:
        args.out = REPO / "benchmarks" / "pretrained"
        if args.degradation != "bicubic":  # the cards read the bicubic records
            args.out = args.out / args.degradation
        if args.intensity != 1:
            args.out = args.out / f"intensity-{args.intensity:g}"
    torch.set_num_threads(args.threads)

    sets = {}
    if (args.manifest / "manifest.csv").is_file() or args.manifest.is_file():
        sets.update(manifest_sets(args.manifest, args.slices))
    sets.update(external_sets(args.slices))
    models = load_models(args.model)
    items: dict = {}
    t0 = time.perf_counter()
    cache = {}
    if args.esrgan_cache is not None and args.esrgan_cache.is_file():
        cache = torch.load(args.esrgan_cache, weights_only=True)
    extra = self_ensembles(args.self_ensemble, args.threads)
    records = evaluate(
        sets,
        models,
        args.scales,
        args.esrgan_slices,
        items,
        cache,
        degradation=args.degradation,
        extra=extra,
        intensity=args.intensity,
    )
    if args.esrgan_cache is not None:
        torch.save(cache, args.esrgan_cache)
    elapsed = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "records.json").write_text(json.dumps(records, indent=1))
    fig = figure(items, args.out)
    load = os.getloadavg()
    section = [
        HEADING,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU; {torch.__version__}; date {dt.date.today().isoformat()}; load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared with other jobs).",
        "",
        "Command: `python benchmarks/bench_pretrained.py "
        + " ".join(argv if argv is not None else __import__("sys").argv[1:])
        + f"` ({elapsed / 60:.1f} min).",
        "",
        f"Degradation: {MIXED_KIND_TEXT[args.degradation]}"
        + ("" if args.intensity == 1 else f", after the HR is multiplied by {args.intensity:g}")
        + ". Entries: PSNR (dB) / SSIM / GMSD "
        "(lower is better), means over the set's images, data range 1 of the training "
        f"normalisation ({scale_note()}).",
        "",
        "All images:",
        "",
        *table(records, subset=False),
        "",
        f"On the Real-ESRGAN subset (centre {ESRGAN_CROP} x {ESRGAN_CROP} crops of "
        f"{args.esrgan_slices} images per set; the same pixels for every method):",
        "",
        *table(records, subset=True),
        "",
        "Gains over bicubic (all images; the bold rows are the means of the sets of a modality):",
        "",
        *gains(records),
        "",
        "Consistency: PSNR (dB) of the output degraded again by the operator that made the LR "
        "against the LR input (higher = closer to the input; all images, Real-ESRGAN on its "
        "crops):",
        "",
        *consistency_table(records),
        "",
        "Speed (whole 512 x 512 output, one call, CPU):",
        "",
        *speed(models),
        "",
    ]
    if fig is not None:
        where = fig.relative_to(REPO) if fig.is_relative_to(REPO) else fig
        section += [f"![examples]({where.as_posix()})", ""]
    text = "\n".join(section)
    (args.out / "results.md").write_text(text)
    print(text)
    if args.append:
        with args.append.open("a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    if args.docs is not None:
        update_docs(args.docs, gains(records))
    return 0


DOCS_START = "<!-- gains tables: benchmarks/bench_pretrained.py --docs writes them -->"
DOCS_END = "<!-- end of the gains tables -->"


def docs_block(text: str, path: Path) -> tuple[int, int]:
    """The span between the markers of ``text`` (one pair, start before end)."""
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start or text.count(DOCS_START) != 1 or text.count(DOCS_END) != 1:
        raise SystemExit(
            f"{path}: --docs needs one line '{DOCS_START}' and, after it, one line "
            f"'{DOCS_END}'; the tables are written between them"
        )
    return start + len(DOCS_START), end


def update_docs(path: Path, lines: list[str]) -> None:
    """Replace what lies between the markers of ``path`` with ``lines`` (the rest stays)."""
    text = path.read_text(encoding="utf-8")
    start, end = docs_block(text, path)
    path.write_text(
        text[:start] + "\n\n" + "\n".join(lines) + "\n\n" + text[end:], encoding="utf-8"
    )


def scale_note() -> str:
    return "borders of `scale` pixels shaved; outputs clamped to [0, 1]"


if __name__ == "__main__":
    raise SystemExit(main())
