"""Model zoo benchmark: parameters, MACs and inference time of every generator.

    python benchmarks/bench_models.py                      # all generators, full sizes, CPU
    python benchmarks/bench_models.py --archs edsr,rcan --sizes 64 --runs 2
    python benchmarks/bench_models.py --append benchmarks/RESULTS.md

For every generator at its published size (default hyper-parameters), x4, one grey channel:
parameters at 1 and 3 channels, MACs for a 256x256 LR input (the NTIRE convention; counted
with ``torch.utils.flop_counter.FlopCounterMode`` on the meta device, MACs = FLOPs / 2;
interpolation kernels other than convolutions are not counted), and the inference time for
each LR size: ``torch.inference_mode``, a warm-up on a 32x32 crop, one full-size run, and
when that took less than ``--slow`` seconds the median of ``--runs`` further runs (else that
one run is reported).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from medsr.models import GENERATORS, build_generator, count_parameters_of

HEADING = "## Model zoo (issue 4)"


def count_macs(arch: str, *, scale: int, size: int) -> int:
    """MACs of one forward pass on a (1, 1, size, size) input, computed on the meta device."""
    with torch.device("meta"):
        model = build_generator(arch, {"scale": scale, "in_channels": 1}).eval()
        lr = torch.empty(1, 1, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(lr)
    return counter.get_total_flops() // 2


def time_forward(
    arch: str, *, scale: int, size: int, runs: int, slow: float, device: str
) -> tuple[float, int]:
    """Seconds per forward pass (median) and the number of timed runs."""
    torch.manual_seed(0)
    model = build_generator(arch, {"scale": scale, "in_channels": 1}).eval().to(device)
    lr = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def once(x: torch.Tensor) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # A small warm-up absorbs one-time costs (allocator, kernel selection) even for the
    # models so slow at full size that they are timed only once.
    once(lr[..., :32, :32])
    first = once(lr)
    if first > slow:
        return first, 1
    times = [once(lr) for _ in range(runs)]
    return statistics.median(times), runs


def _human(n: float) -> str:
    for unit, factor in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n:.0f}"


def _seconds(seconds: float, runs: int) -> str:
    text = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
    return text + (" (1 run)" if runs == 1 else "")


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()}-core CPU ({cpu}), no GPU, torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(GENERATORS), help="comma-separated")
    parser.add_argument("--sizes", default="128,256", help="LR sizes to time, comma-separated")
    parser.add_argument("--macs-size", type=int, default=256, help="LR size for the MACs")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--slow", type=float, default=5.0, help="one run only above this (s)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    parser.add_argument("--append", type=Path, help="append a dated section to this file")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    archs = [a for a in args.archs.split(",") if a]
    unknown = [a for a in archs if a not in GENERATORS]
    if unknown:
        parser.error(f"unknown arch(s) {unknown}; known: {', '.join(GENERATORS)}")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    # Deep networks at random initialisation can produce subnormal floats, which slow x86
    # CPUs by orders of magnitude; trained weights rarely do. Flush them to time the network.
    torch.set_flush_denormal(True)
    try:
        return _run(args, archs, sizes)
    finally:
        torch.set_flush_denormal(False)


def _run(args: argparse.Namespace, archs: list[str], sizes: list[int]) -> int:
    load_before = os.getloadavg()

    header = ["arch", "params (1 ch)", "params (3 ch)", f"MACs @ {args.macs_size}² x{args.scale}"]
    header += [f"{args.device} {s}²→{s * args.scale}²" for s in sizes]
    rows = []
    for arch in archs:
        row = [
            arch,
            f"{count_parameters_of(arch, {'in_channels': 1, 'scale': args.scale}):,}",
            f"{count_parameters_of(arch, {'in_channels': 3, 'scale': args.scale}):,}",
            _human(count_macs(arch, scale=args.scale, size=args.macs_size)),
        ]
        for size in sizes:
            seconds, runs = time_forward(
                arch,
                scale=args.scale,
                size=size,
                runs=args.runs,
                slow=args.slow,
                device=args.device,
            )
            row.append(_seconds(seconds, runs))
        rows.append(row)
        print(" | ".join(row), file=sys.stderr, flush=True)

    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )
    print(table)
    if args.out:
        args.out.write_text(table + "\n", encoding="utf-8")
    if args.append:
        load_after = os.getloadavg()
        command = "python " + " ".join(["benchmarks/bench_models.py", *args.argv])
        section = "\n".join(
            [
                "",
                HEADING,
                "",
                f"- machine: {machine_description(args.device)}",
                f"- date: {dt.date.today().isoformat()}",
                f"- command: `{command}`",
                "- load average (1, 5, 15 min) before: "
                + ", ".join(f"{x:.2f}" for x in load_before)
                + "; after: "
                + ", ".join(f"{x:.2f}" for x in load_after)
                + " (other jobs share the CPU: times are indicative)",
                "- random weights (subnormals flushed), "
                f"batch 1, one grey channel, x{args.scale}, default (published) "
                "hyper-parameters; time = median of "
                f"{args.runs} runs after a warm-up (a 32x32 input, then the full size), or the "
                f"single full-size run when it took more than {args.slow:g} s; "
                "MACs = FLOPs / 2 from FlopCounterMode "
                "(interpolation other than convolution counts 0)",
                "",
                table,
                "",
            ]
        )
        with args.append.open("a", encoding="utf-8") as handle:
            handle.write(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
