"""Agreement of medsr.metrics with scikit-image, torchmetrics and the GMSD reference code on
real images, the size of the documented differences, and the time each metric takes.

Run: ``.venv/bin/python benchmarks/metrics_crosscheck.py [--threads N]`` (prints Markdown). Uses the
chest X-rays and a BraTS slice from ../shared/data (or $MEDSR_SHARED_DATA) when present,
and pydicom's MR_small/CT_small always; each with three degradations (Gaussian blur
sigma 1, noise of 2% of the range, both).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure as tm_ms_ssim,
)
from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
from torchmetrics.functional.image import visual_information_fidelity as tm_vif

from medsr.metrics import (
    METRICS,
    gmsd,
    ms_ssim,
    nrmse_euclidean,
    nrmse_mean,
    nrmse_range,
    psnr,
    ssim,
    vif,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))


def cases() -> list[tuple[str, np.ndarray, float]]:
    out = []
    if SHARED.is_dir():
        import nibabel as nib
        from PIL import Image

        for name in ("cxr-01", "cxr-02"):
            full = np.asarray(Image.open(SHARED / "chest-xray" / f"{name}.png"), np.float64)
            out.append((name, np.ascontiguousarray(full[384:640, 300:556]), 255.0))
            out.append((f"{name}-full", full, 255.0))
        vol = np.asarray(
            nib.load(
                SHARED / "brain-mri-brats2013" / "pat0003" / "Flair_subtrMeanDivStd.nii.gz"
            ).dataobj,
            np.float64,
        )
        out.append(("brats-flair", np.ascontiguousarray(vol[:, :, 80]), float(np.ptp(vol))))
    files = Path(pydicom.__file__).parent / "data" / "test_files"
    for name, fname in (("ct-small", "CT_small.dcm"), ("mr-small", "MR_small.dcm")):
        ds = pydicom.dcmread(files / fname)
        hr = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1))
        out.append((name, hr + float(ds.get("RescaleIntercept", 0)), 4096.0))
    return out


def degraded(hr: np.ndarray, kind: str, data_range: float) -> np.ndarray:
    out = hr
    if "blur" in kind:
        out = ndimage.gaussian_filter(out, 1.0)
    if "noise" in kind:
        out = out + np.random.default_rng(0).normal(0, 0.02 * data_range, hr.shape)
    return out


def gmsd_reference(sr: np.ndarray, hr: np.ndarray) -> float:
    def down(a):
        p = np.pad(a, ((0, 1), (0, 1)))
        return ((p[:-1, :-1] + p[1:, :-1] + p[:-1, 1:] + p[1:, 1:]) / 4)[::2, ::2]

    dx = np.array([[1, 0, -1]] * 3, float) / 3
    g = []
    for a in (down(sr), down(hr)):
        g.append(
            np.hypot(
                ndimage.convolve(a, dx, mode="constant"), ndimage.convolve(a, dx.T, mode="constant")
            )
        )
    q = (2 * g[0] * g[1] + 170) / (g[0] ** 2 + g[1] ** 2 + 170)
    return float(np.std(q, ddof=1))


def t4(a: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)[None, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    torch.set_num_threads(parser.parse_args().threads)
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(abs(value))

    for name, hr, L in cases():
        if name.endswith("-full"):
            continue
        for kind in ("blur", "noise", "blur+noise"):
            sr = degraded(hr, kind, L)
            x, y = t4(sr), t4(hr)
            p = float(psnr(sr, hr, data_range=L))
            add("psnr vs skimage", p - peak_signal_noise_ratio(hr, sr, data_range=L))
            add(
                "psnr vs torchmetrics (float64)",
                p - float(tm_psnr(x, y, data_range=L, reduction="none", dim=(1, 2, 3))),
            )
            add(
                "psnr vs torchmetrics on float32 input",
                p
                - float(
                    tm_psnr(x.float(), y.float(), data_range=L, reduction="none", dim=(1, 2, 3))
                ),
            )
            for fn, norm in (
                (nrmse_mean, "mean"),
                (nrmse_range, "min-max"),
                (nrmse_euclidean, "euclidean"),
            ):
                add(
                    f"{fn.__name__} vs skimage",
                    float(fn(sr, hr)) - normalized_root_mse(hr, sr, normalization=norm),
                )
            s = float(ssim(sr, hr, data_range=L))
            sk = structural_similarity(
                hr, sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L
            )
            add("ssim vs skimage", s - sk)
            s_reflect = float(ssim(sr, hr, data_range=L, padding="reflect"))
            add(
                "ssim reflect vs torchmetrics (float64)",
                s_reflect - float(tm_ssim(x, y, data_range=L)),
            )
            add(
                "ssim reflect vs torchmetrics on float32 input",
                s_reflect - float(tm_ssim(x.float(), y.float(), data_range=L)),
            )
            add("ssim valid vs ssim reflect (border effect)", s - s_reflect)
            add("ssim (ours) vs torchmetrics default", s - float(tm_ssim(x, y, data_range=L)))
            k = 255.0 / L
            v = float(vif(sr, hr, data_range=L))
            add(
                "vif vs torchmetrics on 255/L-scaled input",
                v - float(tm_vif(x * k, y * k, reduction="none")),
            )
            add(
                "vif vs torchmetrics on 255/L-scaled float32 input",
                v - float(tm_vif((x * k).float(), (y * k).float(), reduction="none")),
            )
            g_zero = float(gmsd(sr, hr, data_range=L, padding="zero"))
            add("gmsd zero-padded vs reference code", g_zero - gmsd_reference(sr * k, hr * k))
            add(
                "gmsd valid vs zero-padded (border effect)",
                float(gmsd(sr, hr, data_range=L)) - g_zero,
            )
            if min(hr.shape) >= 176:
                m = float(ms_ssim(sr, hr, data_range=L))
                ref = float(tm_ms_ssim(x, y, data_range=L, reduction="none"))
                add("ms_ssim vs torchmetrics (float64)", m - ref)
                x5, y5 = x, y
                for _ in range(4):
                    x5, y5 = F.avg_pool2d(x5, 2), F.avg_pool2d(y5, 2)
                ratio = float(ssim(x5, y5, data_range=L, padding="reflect")) / float(
                    ssim(x5, y5, data_range=L)
                )
                add("ms_ssim: torchmetrics minus documented relation", ref - m * ratio**0.1333)
    print("| comparison | max abs difference | pairs |")
    print("|---|---|---|")
    for key, values in rows.items():
        print(f"| {key} | {max(values):.2e} | {len(values)} |")

    print()
    print(f"torch threads: {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print()
    print("| metric | 256x256 (ms) | 1024x1024 (ms) |")
    print("|---|---|---|")
    full = next((hr for name, hr, _ in cases() if name == "cxr-01-full"), None)
    small = cases()[0][1] if full is not None else np.random.default_rng(0).random((256, 256))
    big = full if full is not None else np.random.default_rng(0).random((1024, 1024)) * 255
    for name, spec in METRICS.items():
        if spec.unavailable_reason() is not None:
            print(f"| {name} | skipped: {spec.unavailable_reason()} | |")
            continue
        times = []
        for img in (small, big):
            sr = degraded(img, "blur+noise", 255.0)
            spec(sr, img, data_range=255.0)  # warm-up
            t0 = time.perf_counter()
            for _ in range(3):
                spec(sr, img, data_range=255.0)
            times.append((time.perf_counter() - t0) / 3 * 1000)
        print(f"| {name} | {times[0]:.1f} | {times[1]:.1f} |")


if __name__ == "__main__":
    main()
