"""Training-engine overhead: ``medsr.train`` versus a plain hand-written PyTorch loop.

    python benchmarks/bench_train.py                     # defaults below, prints a table
    python benchmarks/bench_train.py --steps 40 --repeats 3 --append benchmarks/RESULTS.md
    python benchmarks/bench_train.py --gan               # adds the adversarial step

Both loops do the same work on the same data: the same model (built with the same seed),
the same in-memory dataset of HR patches with LR made by the same degradation inside
``__getitem__``, the same batch size, a DataLoader with the same number of workers, L1 loss,
Adam. The plain loop is what one writes by hand: fetch, forward, loss, ``zero_grad``,
``backward``, ``step``. The engine additionally computes the gradient norm, checks losses
and gradients for NaN/Inf (one host sync per step), accumulates loss terms for logging,
writes the CSV every ``log_every`` steps and keeps its resumable data position; validation
and checkpoints are switched off during the timed steps (they are periodic costs, not
per-step overhead). Time per step = from fetching the batch to the end of the optimiser
step, the median over the steps after ``--warmup``, both as wall time and as CPU time of
this process (``time.process_time``). On a machine shared with other jobs the wall time
swings with their load; with one torch thread (``--threads 1``, the default) and no loader
workers the CPU time counts only this process's own work, so the overhead is computed from
it. The runs are interleaved (plain, engine, plain, engine...) so that drifting load hits
both alike.

``--gan`` times the adversarial step instead (SRGAN-style: L1 + vanilla GAN loss with a VGG
discriminator), the plain loop doing the same G and D updates by hand.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from medsr.losses import AdversarialLoss
from medsr.models import build_discriminator, build_generator
from medsr.train import parse_config, train
from medsr.transforms.degrade import build_degradation

HEADING = "## Training (issue 5)"


class PatchDataset(Dataset):
    """Smooth random HR patches (seeded per index), LR by bicubic x``scale`` on the fly."""

    def __init__(self, length: int, size: int, scale: int) -> None:
        self.length, self.size = length, size
        self.degradation = build_degradation([{"name": "bicubic", "scale": scale}])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(index)
        coarse = torch.rand(1, 1, self.size // 8, self.size // 8, generator=g)
        hr = F.interpolate(coarse, size=(self.size, self.size), mode="bicubic").clamp(0, 1)[0]
        return {"lr": self.degradation(hr), "hr": hr}


def engine_config(args: argparse.Namespace) -> dict[str, Any]:
    stage: dict[str, Any] = {
        "name": "bench",
        "steps": args.steps,
        "losses": {"pixel": {"kind": "l1"}},
        "optimizer": {"name": "adam", "lr": 1e-4},
    }
    model: dict[str, Any] = {"generator": {"arch": args.arch, "params": generator_params(args)}}
    if args.gan:
        stage["losses"]["adversarial"] = {"kind": "vanilla", "weight": 1e-3}
        model["discriminator"] = {"arch": "srgan", "params": {"num_features": args.d_features}}
    return {
        "name": "bench",
        "seed": 0,
        "model": model,
        "data": {
            "manifest": "in-memory",
            "degradation": [{"name": "bicubic", "scale": args.scale}],
            "patch_size": args.patch,
            "batch_size": args.batch,
            "num_workers": args.workers,
        },
        "stages": [stage],
        "train": {
            "device": "cpu",
            "val_every": 0,
            "checkpoint_every": 0,
            "log_every": 10,
            "progress": False,
            "tensorboard": False,
        },
    }


def generator_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scale": args.scale,
        "in_channels": 1,
        "num_features": args.features,
        "num_blocks": args.blocks,
    }


def run_engine(args: argparse.Namespace, data: Dataset) -> tuple[list[float], list[float]]:
    config = parse_config(engine_config(args))
    with tempfile.TemporaryDirectory() as out:
        result = train(config, out_dir=out, train_dataset=data, val_dataset=None)
    return result.step_times, result.step_cpu_times


def run_plain(args: argparse.Namespace, data: Dataset) -> tuple[list[float], list[float]]:
    torch.manual_seed(0)
    g = build_generator(args.arch, generator_params(args))
    d = build_discriminator("srgan", {"num_features": args.d_features}) if args.gan else None
    g_opt = torch.optim.Adam(g.parameters(), lr=1e-4)
    d_opt = torch.optim.Adam(d.parameters(), lr=1e-4) if d is not None else None
    adversarial = AdversarialLoss(kind="vanilla", weight=1e-3)
    loader = DataLoader(
        data,
        batch_size=args.batch,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        generator=torch.Generator().manual_seed(0),
    )
    times: list[float] = []
    cpu_times: list[float] = []
    g.train()
    while len(times) < args.steps:
        iterator = iter(loader)
        while len(times) < args.steps:
            start = time.perf_counter()
            cpu_start = time.process_time()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            lr, hr = batch["lr"], batch["hr"]
            sr = g(lr)
            loss = F.l1_loss(sr, hr)
            if d is not None:
                for p in d.parameters():
                    p.requires_grad_(False)
                loss = loss + adversarial.generator_loss(d(sr))[0]
            g_opt.zero_grad(set_to_none=True)
            loss.backward()
            g_opt.step()
            if d is not None and d_opt is not None:
                for p in d.parameters():
                    p.requires_grad_(True)
                d_loss = adversarial.discriminator_loss(d(hr), d(sr.detach()))[0]
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    return times, cpu_times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="edsr")
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch", type=int, default=96, help="HR patch size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--gan", action="store_true", help="time the adversarial step")
    parser.add_argument("--d-features", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--append", type=Path, help="append the results to this Markdown file")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = PatchDataset(args.batch * args.steps, args.patch, args.scale)
    load_before = os.getloadavg()
    wall: dict[str, list[float]] = {"plain": [], "engine": []}
    cpu: dict[str, list[float]] = {"plain": [], "engine": []}
    for _ in range(args.repeats):
        for name, runner in (("plain", run_plain), ("engine", run_engine)):
            times, cpu_times = runner(args, data)
            wall[name] += times[args.warmup :]
            cpu[name] += cpu_times[args.warmup :]
    load_after = os.getloadavg()
    overhead = (statistics.median(cpu["engine"]) / statistics.median(cpu["plain"]) - 1) * 100
    wall_overhead = (statistics.median(wall["engine"]) / statistics.median(wall["plain"]) - 1) * 100
    what = "adversarial (L1 + GAN, srgan D)" if args.gan else "content (L1)"
    rows = [
        "| loop | CPU s/step (median) | wall s/step (median) | wall s/step (mean) | steps |",
        "|---|---|---|---|---|",
    ]
    for name in ("plain", "engine"):
        rows.append(
            f"| {name} | {statistics.median(cpu[name]):.4f} | "
            f"{statistics.median(wall[name]):.4f} | {statistics.fmean(wall[name]):.4f} | "
            f"{len(wall[name])} |"
        )
    given = argv if argv is not None else sys.argv[1:]
    command = "python benchmarks/bench_train.py " + " ".join(given)
    lines = [
        f"### {what} step, {args.arch} ({args.features} features, {args.blocks} blocks) "
        f"x{args.scale}",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU (none lent to this task), torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread{'' if torch.get_num_threads() == 1 else 's'}",
        f"- date: {dt.date.today().isoformat()}",
        f"- command: `{command.strip()}`",
        f"- load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.2f}' for v in load_after)}",
        f"- batch {args.batch} of {args.patch}x{args.patch} HR patches, {args.workers} loader "
        f"workers, {args.steps} steps x {args.repeats} interleaved runs, first {args.warmup} "
        "steps of each run dropped",
        "",
        *rows,
        "",
        f"Engine overhead, CPU time (median): **{overhead:+.1f} %** (target < 5 %); "
        f"wall time: {wall_overhead:+.1f} %.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append is not None:
        existing = args.append.read_text(encoding="utf-8") if args.append.exists() else ""
        block = text if HEADING in existing else f"{HEADING}\n\n{text}"
        with args.append.open("a", encoding="utf-8") as handle:
            handle.write("\n" + block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
