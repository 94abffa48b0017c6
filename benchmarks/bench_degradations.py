"""Time every degradation: one 256x256 slice, a batch of 128x128 patches, a 256x256x64 volume.

    .venv/bin/python benchmarks/bench_degradations.py [--repeats 20] [--threads 1]

Prints a Markdown table (median wall time over the repeats after one warm-up call). One
thread by default: data-loader workers run single-threaded, and on a shared CPU extra
threads wait on each other. The slice is a real BraTS FLAIR slice padded to 256 when
../shared/data is present, else a smooth synthetic image (JPEG timings depend on content).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from medsr.transforms import degrade as D

REPO = Path(__file__).resolve().parents[1]

CASES: list[tuple[str, dict | list]] = [
    ("bicubic x4", {"name": "bicubic", "scale": 4}),
    ("bilinear x4", {"name": "bilinear", "scale": 4}),
    ("gaussian_blur x4", {"name": "gaussian_blur", "scale": 4}),
    ("kspace x4", {"name": "kspace", "scale": 4}),
    ("kspace x4 hamming", {"name": "kspace", "scale": 4, "window": "hamming"}),
    ("rician_noise snr 20", {"name": "rician_noise", "snr": 20}),
    ("gaussian_noise", {"name": "gaussian_noise", "sigma": 0.05}),
    ("poisson_noise", {"name": "poisson_noise", "peak": 100}),
    ("jpeg q 30..95", {"name": "jpeg", "quality": [30, 95]}),
    ("realesrgan x4", {"name": "realesrgan", "scale": 4}),
    (
        "mri_kspace_x2.yaml",
        [{"name": "kspace", "scale": 2, "window": "tukey"}, {"name": "rician_noise", "snr": 30}],
    ),
]


def _slice(data: Path) -> torch.Tensor:
    path = data / "brain-mri-brats2013" / "pat0003" / "Flair_subtrMeanDivStd.nii.gz"
    if path.is_file():
        import nibabel

        from medsr.transforms.intensity import fit_normaliser

        volume = np.asarray(nibabel.load(path).get_fdata(dtype=np.float32))
        unit = fit_normaliser(volume, modality="MR").forward(volume)
        return torch.nn.functional.pad(torch.from_numpy(unit[:, :, 80].T.copy()), (8, 8, 8, 8))
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 1, 256, 256, generator=g)
    return D.gaussian_blur(noise, 3.0)[0, 0]


def _time(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    hr = _slice(args.data)[None, None].contiguous()
    patches = torch.cat([hr[..., :128, :128], hr[..., 64:192, 64:192]] * 32)  # (64, 1, 128, 128)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print("| degradation | 256x256 slice (ms) | 64 patches 128x128 (ms) | patches/s |")
    print("|---|---:|---:|---:|")
    for label, cfg in CASES:
        deg = D.build_degradation(cfg)
        one = _time(lambda deg=deg: deg(hr, generator=0), args.repeats)
        batch = _time(lambda deg=deg: deg(patches, generator=0), max(3, args.repeats // 4))
        print(f"| {label} | {one * 1e3:.2f} | {batch * 1e3:.1f} | {64 / batch:,.0f} |")
    volume = hr[0, 0].expand(64, 256, 256).contiguous()  # (Z, Y, X)
    thick = D.build_degradation({"name": "thick_slice", "thickness": 4.0})
    rect = D.build_degradation({"name": "thick_slice", "thickness": 4.0, "profile": "rect"})
    bicubic = D.build_degradation({"name": "bicubic", "scale": 4})
    print()
    print("| volume 64x256x256 (Z, Y, X) | ms |")
    print("|---|---:|")
    for label, fn in [
        ("thick_slice 4 mm gaussian, along Z", lambda: D.along_axis(thick, volume, axis=0)),
        ("thick_slice 4 mm rect, along Z", lambda: D.along_axis(rect, volume, axis=0)),
        ("thick_slices() direct, axis=0", lambda: D.thick_slices(volume, thickness=4.0, axis=0)),
        ("bicubic x4 in-plane, slicewise", lambda: D.slicewise(bicubic, volume, axis=0)),
    ]:
        print(f"| {label} | {_time(fn, max(3, args.repeats // 4)) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
