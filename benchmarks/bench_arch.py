"""CPU-efficient architectures compared (issue 16): quality per CPU millisecond of inference and
per CPU hour of training.

    python benchmarks/bench_arch.py NAME=RUN_DIR [NAME=RUN_DIR ...] --step 600 \
        [--threads 2] [--repeats 7] [--append benchmarks/RESULTS.md]

Each ``RUN_DIR`` is a ``medsr train`` output folder (``config.yaml``, ``metrics.csv``) of a run
on the same recipe (data, degradation, patch, batch, schedule) with another generator. For
each run:

* **val PSNR / gain**: the validation PSNR (EMA weights, physical units through the
  normaliser, the recipe's ``val_max_slices`` slices) at ``--step`` and its gain over bicubic
  on the same slices, read from ``metrics.csv``: every candidate is compared after the same
  number of steps of the same schedule;
* **train s/step**: the median of the logged ``step_seconds`` up to ``--step`` (data loading
  included), and the CPU hours that step count cost;
* **infer ms**: the median wall time of one in-process call of the deploy form (fused
  re-parameterisable blocks) on a 256 x 256 input (x2: a 512 x 512 output), ``--threads``
  torch threads, after a warm-up, random weights of the run's architecture (the time does not
  depend on the weights);
* the two ratios the issue asks for: dB gained over bicubic per inference millisecond, and
  per CPU hour of training.

Results go to ``benchmarks/arch/results.md`` (and a section of RESULTS.md with ``--append``),
with the machine, the load average and the date.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HEADING = "## CPU-efficient architectures (issue 16)"


def read_run(folder: Path, step: int) -> dict[str, float]:
    """Validation PSNR and bicubic PSNR at ``step`` and the median step time up to it."""
    psnr = bicubic = None
    seconds: list[float] = []
    with open(folder / "metrics.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            at = int(row["step"])
            if row["split"] == "val" and at == step and row["name"] == "psnr":
                psnr = float(row["value"])
            if row["split"] == "val" and at == step and row["name"] == "psnr_bicubic":
                bicubic = float(row["value"])
            if row["split"] == "train" and row["name"] == "step_seconds" and at <= step:
                seconds.append(float(row["value"]))
    if psnr is None or bicubic is None or not seconds:
        raise SystemExit(f"{folder}: no validation at step {step} (or no step times) in metrics")
    return {"psnr": psnr, "bicubic": bicubic, "step_seconds": statistics.median(seconds)}


def build(folder: Path) -> tuple[torch.nn.Module, str, dict]:
    from medsr.models import build_generator
    from medsr.schema import read_yaml

    config = read_yaml(folder / "config.yaml", what="resolved training config")
    spec = config["model"]["generator"]
    model = build_generator(spec["arch"], spec.get("params") or {})
    return model.eval().fuse(), spec["arch"], spec.get("params") or {}


def infer_ms(model: torch.nn.Module, repeats: int, size: int = 256) -> float:
    x = torch.rand(1, 1, size, size)
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--step", type=int, required=True, help="compare at this step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "arch" / "results.md")
    parser.add_argument("--append", type=Path, help="also append the section to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    rows = []
    load_before = os.getloadavg()[0]
    for item in args.runs:
        name, _, folder = item.partition("=")
        run = read_run(Path(folder), args.step)
        model, arch, params = build(Path(folder))
        ms = infer_ms(model, args.repeats)
        gain = run["psnr"] - run["bicubic"]
        cpu_hours = run["step_seconds"] * args.step / 3600.0
        n_params = sum(p.numel() for p in model.parameters())
        rows.append((name, arch, params, n_params, run, gain, ms, cpu_hours))
    load_after = os.getloadavg()[0]

    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        f"{when}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"load average {load_before:.1f} before / {load_after:.1f} after the timing; "
        f"torch {torch.__version__}, {args.threads} thread(s). Same recipe for every run "
        f"(data, degradation, batch, schedule); validation after {args.step} steps. "
        f"Command: `python benchmarks/bench_arch.py {' '.join(args.runs)} --step {args.step} "
        f"--threads {args.threads}`.",
        "",
        "| candidate | arch | parameters (deployed) | val PSNR dB | gain over bicubic dB | "
        "train s/step | CPU h to here | infer ms (256² -> x) | dB per infer second | "
        "dB per train CPU h |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arch, params, n_params, run, gain, ms, hours in rows:
        shape = ", ".join(f"{k} {v}" for k, v in params.items() if k != "global_skip")
        lines.append(
            f"| {name} | {arch} ({shape}) | {n_params:,} | {run['psnr']:.2f} | {gain:+.3f} | "
            f"{run['step_seconds']:.2f} | {hours:.2f} | {ms:.1f} | {1000 * gain / ms:.2f} | "
            f"{gain / hours:.2f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write("\n" + text)
    print(text)


if __name__ == "__main__":
    main()
