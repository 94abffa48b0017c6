"""Inference benchmark (issue 7): the default model's quality, CPU speed, and peak memory.

    python benchmarks/bench_infer.py                           # quality, speed, tile memory
    python benchmarks/bench_infer.py --parts quality           # which interpolation is best
    python benchmarks/bench_infer.py --parts speed --sizes 128 # one size only
    python benchmarks/bench_infer.py --parts memory-full       # 2048x2048 x4 RRDBNet (~30 min)
    python benchmarks/bench_infer.py --append benchmarks/RESULTS.md

Parts:

* ``quality``: every interpolation baseline on the three bundled samples, made low-resolution
  with antialiased bicubic (x2, x4) and restored through ``upscale_image``; PSNR/SSIM against
  the original in physical units (data range = its min..max). Picks the default model.
* ``speed``: a grey 128x128 and 512x512 input at x4, RRDBNet (random weights) and the default
  model. Baseline = plain eager PyTorch as Real-ESRGAN's inference script runs it
  (``model.eval()``, ``torch.no_grad()``, fp32, default threads, whole image). Candidates =
  medsr's runners (``inference_mode``, + channels-last, ONNX Runtime, ``torch.compile`` with
  inductor freezing; its compilation time is reported on its own line). Variants run
  interleaved (to spread the load of other jobs on the machine); outputs are checked
  against the baseline (max |difference| in [0, 1] units). Subnormal floats are flushed to
  zero in every variant: random weights produce them and they slow x86 CPUs for reasons
  that have nothing to do with the engines compared.
* ``memory``: peak resident memory (``VmHWM`` of a fresh subprocess) of one default-size
  tile (256 x 256 input pixels at x4) for the largest networks.
* ``memory-full``: peak memory and time of ``upscale_image`` on a 2048 x 2048 radiograph at x4
  with RRDBNet (random weights, default tiling), in a subprocess.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HEADING = "## Inference (issue 7)"
COMPILED = "medsr torch: compiled (inductor, freezing)"


# -- quality ---------------------------------------------------------------------------------
def part_quality(names: list[str]) -> tuple[list[str], str]:
    from medsr import samples
    from medsr.infer import load_model, upscale_image
    from medsr.infer.model_source import interpolation_names
    from medsr.io import read
    from medsr.metrics import psnr, ssim
    from medsr.transforms.degrade import build_degradation

    methods = interpolation_names()
    rows, totals = [], {m: [] for m in methods}
    for name in names:
        hr_full = read(samples.path(name))
        for s in (2, 4):
            h, w = hr_full.spatial_shape[-2:]
            hr = hr_full.replace(array=hr_full.array[..., : h - h % s, : w - w % s])
            planes = torch.from_numpy(hr.array.reshape(-1, 1, *hr.array.shape[-2:]))
            degrade = build_degradation({"name": "bicubic", "scale": s, "clip": False})
            lr = degrade(planes).numpy().reshape(*hr.array.shape[:-2], h // s, w // s)
            lr_image = hr.regrid(lr)
            target = hr.array.reshape(-1, 1, *hr.array.shape[-2:])
            data_range = float(hr.array.max() - hr.array.min())
            cells = []
            for m in methods:
                result = upscale_image(lr_image, load_model(m, scale=s), device="cpu")
                sr = result.image.array.reshape(target.shape)
                p = float(psnr(sr, target, data_range=data_range).mean())
                q = float(ssim(sr, target, data_range=data_range).mean())
                totals[m].append(p)
                cells.append(f"{p:.2f} / {q:.4f} / {result.fidelity_psnr:.1f}")
            rows.append(f"| {name} | x{s} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    best = max(methods, key=lambda m: statistics.mean(totals[m]))
    header = [
        "PSNR (dB) / SSIM against the original, and fidelity (consistency PSNR, dB), of each "
        "interpolation restoring antialiased-bicubic LR; all through `upscale_image`:",
        "",
        "| sample | scale | " + " | ".join(methods) + " |",
        "|---|---|" + "---|" * len(methods),
    ]
    wins = sum(
        1
        for row in zip(*(totals[m] for m in methods), strict=True)
        if max(range(len(methods)), key=lambda k: row[k]) == methods.index(best)
    )
    footer = [
        "",
        f"Best mean PSNR: **{best}** (best on {wins} of {len(totals[best])} sample/scale "
        "pairs); it is the default at scales without a shipped medsr model "
        "(`medsr.infer.defaults.FALLBACK_MODEL`).",
    ]
    return header + rows + footer, best


# -- speed -----------------------------------------------------------------------------------
def _flush() -> None:
    torch.set_flush_denormal(True)


def part_speed(
    sizes: list[int],
    default_model: str,
    runs: int,
    compile_too: bool,
    rrdbnet: dict | None = None,
) -> list[str]:
    """The speed table; ``rrdbnet`` overrides RRDBNet's hyper-parameters (for tests)."""
    from medsr.infer import get_runner, load_model, wrap_module
    from medsr.models import build_generator

    _flush()
    lines = [
        f"CPU seconds per image at x4 (batch 1, {torch.get_num_threads()} torch threads; "
        f"median of {runs} runs at 128x128, one run at 512x512, variants interleaved). "
        "Speed-up = baseline / variant. max |diff| = largest difference from the baseline "
        "output in [0, 1] units.",
        "",
        "| model | input | variant | seconds | speed-up | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    torch.manual_seed(0)
    hparams = {"scale": 4, "in_channels": 1, **(rrdbnet or {})}
    rrdb = build_generator("rrdbnet", hparams).eval()
    cases = [("rrdbnet (random weights)", rrdb), (f"{default_model} (default)", None)]
    for label, net in cases:
        # every variant gets its own copy: channels-last converts a module's weights in place
        if net is None:
            baseline_net = build_generator(default_model, {"scale": 4}).eval()

            def fresh():
                return load_model(default_model, scale=4)
        else:
            baseline_net = net

            def fresh(net=net):
                clone = build_generator("rrdbnet", hparams).eval()
                clone.load_state_dict(net.state_dict())
                return wrap_module(clone, name="rrdbnet")

        variants = {
            "eager (baseline: no_grad, fp32)": None,
            "medsr torch: inference_mode, channels-last": get_runner(
                fresh(), device="cpu", channels_last=True
            ),
            "medsr torch: inference_mode": get_runner(fresh(), device="cpu"),
        }
        if compile_too:
            variants[COMPILED] = get_runner(fresh(), device="cpu", compile=True)
        warmups: dict[str, float] = {}
        t = time.perf_counter()
        try:
            variants["medsr onnxruntime"] = get_runner(fresh(), engine="onnxruntime", device="cpu")
            export_s = time.perf_counter() - t
        except Exception as error:  # onnxruntime missing: say so in the table
            print(f"onnxruntime unavailable: {error}", file=sys.stderr)
            export_s = float("nan")
        for size in sizes:
            x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(size))
            n = runs if size <= 128 else 1

            def eager(x=x, baseline_net=baseline_net):
                with torch.no_grad():
                    return baseline_net(x)

            calls = {k: (v if v is not None else eager) for k, v in variants.items()}
            for k, fn in calls.items():
                # warm-up: a small call; a compiled model compiles for each new input shape
                # (inductor freezing specialises on it), so it gets one call at full size
                start = time.perf_counter()
                fn(x if k == COMPILED else x[..., :32, :32])
                warmups[f"{k} {size}"] = time.perf_counter() - start
            times: dict[str, list[float]] = {k: [] for k in calls}
            outputs: dict[str, torch.Tensor] = {}
            for _ in range(n):
                for k, fn in calls.items():
                    start = time.perf_counter()
                    y = fn(x)
                    times[k].append(time.perf_counter() - start)
                    outputs[k] = y
                    print(f"  {label} {size} {k}: {times[k][-1]:.3f} s", file=sys.stderr)
            base = statistics.median(times["eager (baseline: no_grad, fp32)"])
            ref = outputs["eager (baseline: no_grad, fp32)"]
            for k in calls:
                sec = statistics.median(times[k])
                diff = float((outputs[k] - ref).abs().max())
                lines.append(
                    f"| {label} | {size}x{size} | {k} | {sec:.3f} | {base / sec:.2f}x | "
                    f"{diff:.1e} |"
                )
                print(lines[-1], flush=True)
        lines.append(f"| {label} | | (ONNX export + session set-up, once) | {export_s:.1f} | | |")
        if compile_too:
            for size in sizes:
                lines.append(
                    f"| {label} | {size}x{size} | (compiled: first call = compilation + one "
                    f"run) | {warmups[f'{COMPILED} {size}']:.1f} | | |"
                )
    return lines


# -- memory ----------------------------------------------------------------------------------
def _peak_mib(resource) -> float:
    """Peak resident memory of this process in MiB: ``VmHWM`` on Linux (per address space,
    so fresh after exec), else ``ru_maxrss`` (which Linux carries over from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(spec: dict) -> None:
    """Run one memory case in this (fresh) process and print its peak RSS as JSON."""
    import resource

    from medsr.infer import upscale_image, wrap_module
    from medsr.io import Image
    from medsr.models import build_generator

    _flush()
    torch.manual_seed(0)
    net = build_generator(spec["arch"], {"scale": spec["scale"], "in_channels": 1}).eval()
    baseline = _peak_mib(resource)
    size = spec["size"]
    rng = np.random.default_rng(0)
    image = Image(
        rng.integers(0, 4096, (size, size)).astype(np.float32), spacing=(0.2, 0.2), modality="DX"
    )
    start = time.perf_counter()
    if spec.get("tile_only"):
        with torch.inference_mode():
            net(torch.rand(1, 1, size, size))
    else:
        result = upscale_image(image, wrap_module(net), device="cpu")
        assert result.image.array.shape == (size * spec["scale"],) * 2
    seconds = time.perf_counter() - start
    peak = _peak_mib(resource)
    print(json.dumps({"peak_mib": peak, "after_model_mib": baseline, "seconds": seconds}))


def _run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_memory(archs: list[str]) -> list[str]:
    from medsr.infer.defaults import DEFAULT_TILE

    lines = [
        f"Peak resident memory of one forward pass on a {DEFAULT_TILE}x{DEFAULT_TILE} tile "
        "(the default tile size) at x4, one grey channel, in a fresh process "
        "(`VmHWM`; includes Python, PyTorch and the weights):",
        "",
        "| arch | peak RSS | RSS after building the model | seconds |",
        "|---|---|---|---|",
    ]
    for arch in archs:
        r = _run_child({"arch": arch, "scale": 4, "size": DEFAULT_TILE, "tile_only": True})
        lines.append(
            f"| {arch} | {r['peak_mib']:.0f} MiB | {r['after_model_mib']:.0f} MiB | "
            f"{r['seconds']:.1f} |"
        )
        print(lines[-1], flush=True)
    return lines


def part_memory_full(arch: str, size: int) -> list[str]:
    from medsr.infer.defaults import DEFAULT_OVERLAP, DEFAULT_TILE

    r = _run_child({"arch": arch, "scale": 4, "size": size})
    line = (
        f"`upscale_image` on a {size}x{size} grey radiograph at x4 with {arch} (random weights, "
        f"default tile {DEFAULT_TILE} / overlap {DEFAULT_OVERLAP}, automatic batch, fp32, "
        f"CPU): peak RSS **{r['peak_mib']:.0f} "
        f"MiB** ({r['peak_mib'] / 1024:.2f} GiB; {r['after_model_mib']:.0f} MiB after building "
        f"the model), {r['seconds'] / 60:.1f} min."
    )
    print(line, flush=True)
    return [line]


# -- main ------------------------------------------------------------------------------------
def _load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts",
        default="quality,speed,memory",
        help="comma-separated: quality, speed, memory, memory-full",
    )
    parser.add_argument(
        "--samples", default="chest-ct,chest-xray,brain-mri", help="quality: bundled samples"
    )
    parser.add_argument("--sizes", default="128,512", help="speed: input sizes")
    parser.add_argument("--runs", type=int, default=3, help="speed: runs at 128x128")
    parser.add_argument(
        "--no-compile", action="store_true", help="speed: skip the torch.compile variant"
    )
    parser.add_argument(
        "--memory-archs", default="rrdbnet,rcan,edsr_full", help="memory: architectures"
    )
    parser.add_argument("--full-size", type=int, default=2048, help="memory-full: image size")
    parser.add_argument("--append", type=Path, help="append the results to this Markdown file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    load_before = _load()
    sections: list[str] = []
    from medsr.infer.defaults import FALLBACK_MODEL

    default = FALLBACK_MODEL  # issue 7 times the interpolation default at x4
    if "quality" in parts:
        lines, best = part_quality([n.strip() for n in args.samples.split(",")])
        sections += ["### Default model (best interpolation)", "", *lines, ""]
        if best != FALLBACK_MODEL:
            print(f"note: the best interpolation is {best}, not {FALLBACK_MODEL}", file=sys.stderr)
    if "speed" in parts:
        sizes = [int(s) for s in args.sizes.split(",")]
        sections += [
            "### CPU speed",
            "",
            *part_speed(sizes, default, args.runs, not args.no_compile),
            "",
        ]
    if "memory" in parts:
        archs = [a.strip() for a in args.memory_archs.split(",")]
        sections += ["### Memory per tile", "", *part_memory(archs), ""]
    if "memory-full" in parts:
        sections += [
            "### 2048 x 2048 radiograph at x4",
            "",
            *part_memory_full("rrdbnet", args.full_size),
            "",
        ]
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/bench_infer.py " + " ".join(given)
    meta = [
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"no GPU; torch {torch.__version__}",
        f"- date: {dt.date.today().isoformat()}",
        f"- command: `{command.strip()}`",
        f"- load average (1, 5, 15 min) before: {load_before}; after: {_load()} (other jobs "
        "share the CPU: times are indicative)",
        "",
    ]
    text = "\n".join([*meta, *sections])
    print(text)
    if args.append:
        existing = args.append.read_text(encoding="utf-8") if args.append.exists() else ""
        # one section for this benchmark; later runs add their own dated blocks under it
        head = "" if HEADING in existing else f"\n{HEADING}\n"
        with open(args.append, "a", encoding="utf-8") as f:
            f.write(head + "\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
