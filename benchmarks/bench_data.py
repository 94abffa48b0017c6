"""Samples per second of the training dataset through a DataLoader (0, 1 and 2 workers).

    .venv/bin/python benchmarks/bench_data.py [--manifest DIR] [--batches 150]

128 x 128 HR patches at x4, batch 16, with the bicubic (also with 2.5D input of 3 slices)
and the Real-ESRGAN degradation.
Without ``--manifest`` it first runs ``prepare`` on the spine MRI and BraTS folders of
../shared/data into a temporary folder (and removes it afterwards). Workers run one torch
thread each (``medsr.data.datasets.worker_init``); the main process too. Prints a Markdown
table (with the main process's CPU time per patch: with 0 workers, the cost of a sample
whatever else runs on the machine) and the load average (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from medsr.data.datasets import SRDataset, make_loader
from medsr.data.manifest import prepare
from medsr.transforms.degrade import build_degradation

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))
CASES = {  # name: (degradation, neighbours on each side)
    "bicubic x4": ({"name": "bicubic", "scale": 4}, 0),
    "bicubic x4, 2.5D (3 slices)": ({"name": "bicubic", "scale": 4}, 1),
    "realesrgan x4": ({"name": "realesrgan", "scale": 4}, 0),
}


def rate(dataset: SRDataset, workers: int, batches: int, warmup: int = 3) -> tuple[float, float]:
    """Patches per second (wall clock) over ``batches`` batches after ``warmup`` (worker
    start-up excluded), and the main process's CPU microseconds per patch (with 0 workers
    that is all the work, and it does not depend on what else runs on the machine)."""
    loader = make_loader(dataset, batch_size=16, num_workers=workers, seed=0)
    count, started, cpu = 0, 0.0, 0.0
    for i, batch in enumerate(loader):
        if i == warmup:
            started, cpu, count = time.perf_counter(), time.process_time(), 0
        count += len(batch["hr"])
        if i == warmup + batches:
            break
    return count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, help="a prepared folder (default: prepare one)")
    parser.add_argument("--batches", type=int, default=150, help="timed batches (bicubic)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="medsr-bench-") as tmp:
        manifest = args.manifest
        if manifest is None:
            sources = [DATA / "spine-mri", DATA / "brain-mri-brats2013"]
            manifest = prepare([s for s in sources if s.is_dir()], tmp).manifest
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
        print("| degradation | workers | patches/s | main-process CPU us/patch |")
        print("|---|---:|---:|---:|")
        for name, (config, neighbours) in CASES.items():
            dataset = SRDataset(
                manifest,
                degradation=build_degradation(config),
                patch_size=128,
                neighbours=neighbours,
            )
            batches = args.batches if name.startswith("bicubic") else max(args.batches // 10, 5)
            for workers in args.workers:
                per_second, cpu_us = rate(dataset, workers, batches)
                print(f"| {name} | {workers} | {per_second:,.0f} | {cpu_us:,.0f} |")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
