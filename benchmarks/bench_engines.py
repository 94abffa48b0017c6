"""Speed of the shipped fast models through every engine, against direct calls (issue 16).

    python benchmarks/bench_engines.py [--model fast] [--scale 2] [--threads 2] [--repeats 9]
        [--volume ../shared/data/brain-mri-brats2013/pat0003/T1c_subtrMeanDivStd.nii.gz]
        [--append benchmarks/RESULTS.md]

For one set of weights (default: the shipped ``fast`` model at ``--scale``):

* **slices**: median seconds per call (each variant in its own block: two warm-up calls,
  then ``--repeats`` calls; interleaving the variants, as this script did before, let one
  runtime's spinning worker threads slow the next one's call) on a 256 x 256 and a 512 x 512
  input, for
  the plain eager PyTorch call of the training form (unfused, ``torch.no_grad``, the baseline),
  the same in the deploy form (fused), medsr's default path (``super_resolve_stack`` with the
  default runner and automatic tiles: what ``medsr upscale`` runs per slice; for a shipped
  model on the CPU that is ONNX Runtime on its shipped ``model.onnx``), medsr's
  ONNX Runtime and OpenVINO engines, and ONNX Runtime and OpenVINO called directly on the
  same exported ONNX graph. Each output's largest difference from the baseline is reported
  (in [0, 1] units).
* **volume**: wall time of ``medsr upscale VOLUME -o OUT --model NAME --scale S`` in a
  subprocess (reading, normalising, every slice, the fidelity check, writing NIfTI), the
  target being 30 s for a 240 x 240 x 155 volume at x2.

Results go to ``benchmarks/engines/results.md`` (and a section of ``--append``), with the
machine, the load average and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Engines for the shipped fast models (issue 16)"
DEFAULT_VOLUME = REPO.parent / "shared" / "data" / "brain-mri-brats2013" / "pat0003"


def variants(name: str, scale: int, threads: int) -> tuple[str, dict[str, Callable]]:
    """Callables ``(1, 1, H, W) -> (1, 1, sH, sW)`` on float32 tensors, by label."""
    import onnxruntime as ort

    from medsr.infer import get_runner, load_model
    from medsr.infer.export import export_onnx_bytes
    from medsr.infer.runtime import openvino_core
    from medsr.infer.upscale import super_resolve_stack
    from medsr.models import load

    model = load_model(name, scale=scale)
    folder = Path(model.source)
    training_form = load(folder).eval()  # not fused
    deployed = model.module
    out: dict[str, Callable] = {}

    def eager(net: torch.nn.Module) -> Callable:
        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return net(x)

        return run

    out["plain eager, training form (baseline)"] = eager(training_form)
    out["plain eager, deployed (fused)"] = eager(deployed)
    runner = get_runner(model, device="cpu", threads=threads)
    out[f"medsr default path ({runner.engine}, automatic tiles)"] = lambda x: super_resolve_stack(
        x, runner, model
    )
    ort_runner = get_runner(model, engine="onnxruntime", device="cpu", threads=threads)
    out["medsr onnxruntime engine"] = lambda x: super_resolve_stack(x, ort_runner, model)
    data = export_onnx_bytes(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    out["onnxruntime called directly"] = lambda x: torch.from_numpy(
        session.run(None, {input_name: x.numpy()})[0]
    )
    if importlib.util.find_spec("openvino") is None:
        return model.name, out
    ov_runner = get_runner(model, engine="openvino", device="cpu", threads=threads)
    out["medsr openvino engine"] = lambda x: super_resolve_stack(x, ov_runner, model)
    core = openvino_core()  # the process's one Core (see its docstring), as medsr uses it
    compiled = core.compile_model(
        core.read_model(data),
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads,
        },
    )
    request = compiled.create_infer_request()
    out["openvino called directly"] = lambda x: torch.from_numpy(
        next(iter(request.infer({0: x.numpy()}).values())).copy()
    )
    return model.name, out


def time_slices(
    calls: dict[str, Callable], size: int, repeats: int
) -> dict[str, tuple[float, float]]:
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(size))
    reference = calls[next(iter(calls))](x)
    results: dict[str, tuple[float, float]] = {}
    for label, fn in calls.items():
        for _ in range(2):
            y = fn(x)  # warm-up: first-shape planning, allocations, threads awake
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
        results[label] = (statistics.median(times), float((y - reference).abs().max()))
    return results


def time_volume(path: Path, name: str, scale: int, threads: int) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        command = [
            sys.executable,
            "-m",
            "medsr",
            "upscale",
            str(path),
            "-o",
            str(out),
            "--model",
            name,
            "--scale",
            str(scale),
            "--threads",
            str(threads),
        ]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
    from medsr.io import read

    shape = "x".join(map(str, read(path).array.shape[::-1]))
    return seconds, shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="fast")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument(
        "--volume", type=Path, default=DEFAULT_VOLUME / "T1c_subtrMeanDivStd.nii.gz"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "engines" / "results.md")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # as bench_infer.py: subnormals slow x86 for no reason here
    load_before = os.getloadavg()[0]
    name, calls = variants(args.model, args.scale, args.threads)
    tables = []
    for size in args.sizes:
        results = time_slices(calls, size, args.repeats)
        base = results[next(iter(results))][0]
        fastest = min(t for t, _ in results.values())
        lines = [
            f"{size} x {size} input at x{args.scale} (median of {args.repeats}):",
            "",
            "| variant | seconds | slices/s vs baseline | vs fastest | max diff |",
            "|---|---|---|---|---|",
        ]
        for label, (seconds, diff) in results.items():
            lines.append(
                f"| {label} | {seconds:.4f} | {base / seconds:.2f}x | "
                f"{seconds / fastest:.2f}x the time | {diff:.1e} |"
            )
        tables += [*lines, ""]
    volume_line = "volume: not found"
    if args.volume.is_file():
        seconds, shape = time_volume(args.volume, name, args.scale, args.threads)
        volume_line = (
            f"`medsr upscale` of a {shape} NIfTI ({args.volume.name}) at x{args.scale} in-plane "
            f"with `{name}`: {seconds:.1f} s wall (subprocess: start-up, reading, every slice, "
            "fidelity check, writing)."
        )
    load_after = os.getloadavg()[0]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join(
        [
            HEADING,
            "",
            f"{when}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"load average {load_before:.1f} before / {load_after:.1f} after; torch "
            f"{torch.__version__}, {args.threads} thread(s); model `{name}`. Command: "
            f"`python benchmarks/bench_engines.py --model {args.model} --scale {args.scale} "
            f"--threads {args.threads}`.",
            "",
            *tables,
            volume_line,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.append:
        with open(args.append, "a") as handle:
            handle.write("\n" + text)
    print(text)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
