"""Batch inference benchmark (issue 12): ``medsr upscale`` over a tree of real files with 1 and
N processes (torchrun, gloo on the CPU), throughput and scaling.

    python benchmarks/bench_batch.py                          # 1 and 2 CPU processes
    python benchmarks/bench_batch.py --configs 1 2 4 --model bicubic --scale 4
    python benchmarks/bench_batch.py --tree small             # the bundled samples only
    python benchmarks/bench_batch.py --append benchmarks/RESULTS.md

The tree (built in a temporary folder, files copied):

* ``full``: the bundled samples (a 3-slice chest CT series, a brain MRI slice, a chest X-ray)
  plus, from ``../shared/data`` when present: the 64-slice chest CT series split into 8
  series folders of 8 slices, the two 1024x1024 chest X-rays, and the four BraTS FLAIR
  volumes cropped to 24 axial slices (as NIfTI). 17 inputs, 243 slices.
* ``small``: the bundled samples only (3 inputs).

Each configuration runs the real command in a fresh subprocess (``medsr upscale TREE -o OUT``
for 1 process; ``torchrun --nproc-per-node N -m medsr upscale ...`` for N), into its own
output folder, so the wall time includes start-up (importing PyTorch, joining the process
group). The throughput the command reports itself (inputs/s, slices/s over the processing
loop) is given beside it. One process uses all cores (PyTorch's default); N processes share
them (``cores // N`` threads each, what ``medsr upscale`` picks under torchrun); ``1x1`` is one
process with one thread, the per-process work of the 2-process run on a 2-core machine.
Configurations run interleaved, ``--repeats`` times, to spread the load of other jobs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADING = "## Batch inference (issue 12)"
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDSR_SHARED_DATA", REPO.parent / "shared" / "data"))


def build_tree(root: Path, kind: str) -> tuple[int, list[str]]:
    """Copy the inputs under ``root``; return (inputs, notes on what is in it)."""
    from medsr import samples

    notes = []
    shutil.copytree(samples.path("chest-ct"), root / "samples" / "chest-ct")
    shutil.copy(samples.path("brain-mri"), root / "samples" / "brain-mri-flair.nii.gz")
    shutil.copy(samples.path("chest-xray"), root / "samples" / "chest-xray.png")
    count = 3
    notes.append("bundled samples: chest CT 3x512x512 (DICOM), brain MRI, chest X-ray")
    if kind == "full" and SHARED.is_dir():
        ct = sorted((SHARED / "chest-ct" / "A0001").iterdir())
        for k in range(0, min(len(ct), 64), 8):
            folder = root / "chest-ct" / f"A0001-part{k // 8 + 1}"
            folder.mkdir(parents=True)
            for f in ct[k : k + 8]:
                shutil.copy(f, folder / f.name)
            count += 1
        notes.append("shared chest-ct/A0001: 64 slices 512x512 as 8 series folders of 8")
        (root / "chest-xray").mkdir()
        for f in sorted((SHARED / "chest-xray").glob("*.png")):
            shutil.copy(f, root / "chest-xray" / f.name)
            count += 1
        notes.append("shared chest-xray: 2 PNG 1024x1024")
        import nibabel as nib

        for patient in sorted((SHARED / "brain-mri-brats2013").glob("pat*")):
            img = nib.load(patient / "Flair_subtrMeanDivStd.nii.gz")
            mid = img.shape[2] // 2
            crop = img.slicer[:, :, mid - 12 : mid + 12]
            (root / "brats" / patient.name).mkdir(parents=True)
            nib.save(crop, root / "brats" / patient.name / "flair.nii.gz")
            count += 1
        notes.append("shared BraTS 2013 FLAIR: 4 volumes 240x240, 24 axial slices each")
    return count, notes


def run_once(
    tree: Path, out: Path, procs: int, model: str, scale: int, threads: int | None = None
) -> dict[str, float]:
    env = dict(os.environ)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = ["upscale", str(tree), "-o", str(out), "--model", model, "--scale", str(scale)]
    command += ["--device", "cpu"]
    if threads is not None:
        command += ["--threads", str(threads)]
    if procs == 1:
        argv = [sys.executable, "-m", "medsr", *command]
    else:
        argv = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            str(procs),
            "--standalone",
            "-m",
            "medsr",
            *command,
        ]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
    match = re.search(
        r"throughput: ([\d.]+) inputs/s, ([\d.]+) slices/s over ([\d.]+) s", done.stdout
    )
    assert match, done.stdout
    inputs = re.search(r"(\d+) of (\d+) inputs upscaled", done.stdout)
    assert inputs
    return {
        "wall": wall,
        "inputs_per_s": float(match.group(1)),
        "slices_per_s": float(match.group(2)),
        "loop": float(match.group(3)),
        "inputs": float(inputs.group(1)),
    }


def label(config: str) -> str:
    procs, _, threads = config.partition("x")
    what = "1 process" if procs == "1" else f"{procs} processes (torchrun, gloo)"
    if threads:
        return f"{what}, {threads} thread(s) each" if procs != "1" else f"{what}, {threads} thread"
    return f"{what}, all cores" if procs == "1" else f"{what}, cores/{procs} threads each"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["1", "1x1", "2"],
        help="PROCS or PROCSxTHREADS each (default: 1 process with all cores, 1 process with "
        "1 thread, 2 processes)",
    )
    parser.add_argument("--tree", choices=("full", "small"), default="full")
    parser.add_argument("--model", default="lanczos")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--append", type=Path, help="append the results section to this file")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tree = Path(tmp) / "tree"
        count, notes = build_tree(tree, args.tree)
        print(f"{count} inputs in {tree}", flush=True)
        results: dict[str, list[dict[str, float]]] = {c: [] for c in args.configs}
        for r in range(args.repeats):
            for config in args.configs:
                procs, _, threads = config.partition("x")
                out = Path(tmp) / f"out-{config}-{r}"
                res = run_once(
                    tree, out, int(procs), args.model, args.scale, int(threads) if threads else None
                )
                assert res["inputs"] == count, res
                results[config].append(res)
                print(
                    f"{label(config)}, run {r + 1}: wall {res['wall']:.1f} s, loop "
                    f"{res['loop']:.1f} s, {res['inputs_per_s']:.3f} inputs/s, "
                    f"{res['slices_per_s']:.2f} slices/s",
                    flush=True,
                )
                shutil.rmtree(out)
    load_after = os.getloadavg()

    base = statistics.median(r["inputs_per_s"] for r in results[args.configs[0]])
    rows = [
        "| configuration | wall s (median) | loop s | inputs/s | slices/s | speed-up (inputs/s) |",
        "|---|---|---|---|---|---|",
    ]
    for config in args.configs:
        runs = results[config]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append(
            f"| {label(config)} | {med['wall']:.1f} | {med['loop']:.1f} | "
            f"{med['inputs_per_s']:.3f} | {med['slices_per_s']:.2f} | "
            f"{med['inputs_per_s'] / base:.2f}x |"
        )
    table = "\n".join(rows)
    print(table)
    if args.append:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        section = [
            "",
            HEADING,
            "",
            f"Machine: {platform.machine()} CPU, {cores} cores, no GPU; "
            f"{dt.date.today().isoformat()}.",
            f"Command: `python benchmarks/bench_batch.py {' '.join(argv or sys.argv[1:])}`",
            f"Load average (1/5/15 min) before: {load_before[0]:.2f} / {load_before[1]:.2f} / "
            f"{load_before[2]:.2f}; after: {load_after[0]:.2f} / {load_after[1]:.2f} / "
            f"{load_after[2]:.2f} (other jobs share the cores).",
            f"Tree: {count} inputs; " + "; ".join(notes) + ".",
            f"Model {args.model} x{args.scale}, in-plane, CPU; medians of {args.repeats} "
            "interleaved runs.",
            "",
            table,
            "",
        ]
        text = args.append.read_text() if args.append.exists() else ""
        with args.append.open("a") as f:
            f.write(("\n" if text and not text.endswith("\n") else "") + "\n".join(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
