"""Self-supervised through-plane SR: medsr versus ECLARE at equal CPU time (issue 17).

ECLARE (Remedios et al., PyPI ``eclare``, CLI ``run-eclare``, GPL-3.0) is the closest
published peer of ``medsr upscale --self-supervised``. It is not a dependency of medsr: it runs
from its own virtual environment (it pins scipy 1.11.4 and radifox-utils), as a child process::

    python3 -m venv /work/eclare-venv
    /work/eclare-venv/bin/pip install torch==2.13.0 eclare

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_eclare.py              # ~5 CPU min
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/bench_eclare.py --factors 2  # ~10 CPU min
    python benchmarks/bench_eclare.py --report-only --append benchmarks/RESULTS.md

Invocations are merged into ``results.json`` (a case and method run again replaces its row);
the NIfTI files and outputs stay in ``--work`` (default /tmp/medsr-bench-eclare), which the
figure is drawn from.

ECLARE 1.0.1 runs on the CPU unchanged with ``--gpu-id -1``: its ``torch.amp.autocast("cuda")``
and ``GradScaler("cuda")`` disable themselves with a warning (so it trains in float32) and the
DataLoader's ``pin_memory`` is ignored; the warnings are kept in ``results.json``.

Cases: the 4 mm MNI and BraTS cases of ``bench_selfsup.py``'s quality part (its
``load_cases``, ``thick_image``, ``cubic`` and ``scores`` are imported, not copied): 1 mm
volumes turned into 4 mm slices every 4 mm (Gaussian profile, FWHM 4 mm), reconstructed on
the 1 mm grid and scored against the truth (PSNR whole volume and foreground, SSIM over the
sagittal planes). Both methods are told the true slice profile (medsr: ``slice_thickness=4``,
``slice_profile="gaussian"``; ECLARE: ``--relative-slice-thickness 4
--relative-slice-profile-type gaussian``, which skips its ESPRESO profile estimation).

ECLARE applies a 16-block, 256-channel WDSR to every low-resolution pixel twice (two in-plane
orientations): on one CPU core that alone costs about half an hour per whole volume, far more
than medsr's whole run. So that a run fits on a shared 2-core machine, both methods work on
the same central in-plane crop of each volume (``--crop Y X``; all slices kept), and the cost
of ECLARE on the whole volume is measured per plane and reported beside it.

Equal CPU time: medsr runs a fixed number of steps (``--medsr-steps``; its ``budget`` option
counts wall seconds, which on a shared CPU buy a varying amount of computation); its CPU time
(user + system of the child process, with ``getrusage(RUSAGE_CHILDREN)``) is measured, and
ECLARE's ``--n-patches`` is chosen so that its *training* alone takes that CPU time (its CPU
seconds per training step are calibrated first, in its own venv). ECLARE's inference comes on
top, so ECLARE always gets more CPU time than medsr. ``--factors 1 2`` adds a second budget
point (both methods at twice the CPU time). Both children run under ``nice -n 19`` with
``OMP_NUM_THREADS`` = ``--threads``.

Geometry: the thick volume is written as NIfTI with medsr's writer (slice j centred on truth
voxel 4j + 1.5); ECLARE's output is read with medsr's reader and its voxel centres along the
slice axis are checked against the truth grid (it keeps the in-plane grid and writes 4 x the
slice count, so nothing is cropped or padded); a mismatch is recorded as an error in its row,
not silently fixed. As a data check, ECLARE's and cubic's PSNR are also computed with the
output shifted by -2..2 voxels along the slice axis (the best shift must be 0).

Outputs go to benchmarks/eclare/ (``results.json``, ``table.md``, ``reformat.png``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_selfsup as selfsup  # the shared case construction and scoring

HEADING = "## Self-supervised through-plane SR versus ECLARE (issue 17)"
OUT = Path(__file__).resolve().parent / "eclare"
ROOT = Path(__file__).resolve().parents[1]
SPACING, THICKNESS = 4, 4.0  # 4 mm slices every 4 mm, Gaussian profile
CALIBRATE = """
import resource, sys, torch
from eclare.models.wdsr import WDSR
torch.manual_seed(0)
batch, scale = int(sys.argv[1]), float(sys.argv[2])
m = WDSR(n_resblocks=16, num_channels=256, scale=scale)  # as eclare.run_eclare builds it
opt = torch.optim.Adam(m.parameters(), lr=1e-4)
x, y = torch.rand(batch, 1, 32, 8), torch.rand(batch, 1, 128, 8)  # its patch sizes at x4
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def step():
    opt.zero_grad()
    torch.nn.functional.mse_loss(m(x), y).backward()
    opt.step()
step()
c = cpu()
for _ in range(3):
    step()
train = (cpu() - c) / 3
plane = torch.rand(1, 1, 45, 233)
with torch.inference_mode():
    m(plane)
    c = cpu()
    m(plane)
print(train, (cpu() - c) / plane.numel())
"""


# -- child processes ----------------------------------------------------------------------------
def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_child(cmd: list[str], threads: int, log: Path) -> dict:
    """Run ``cmd`` under ``nice -n 19`` with ``threads`` OpenMP threads; CPU seconds (user +
    system of it and its waited-for children), wall seconds, load averages."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load = os.getloadavg()
    cpu, wall = _children_cpu(), time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(
            ["nice", "-n", "19", *cmd], stdout=f, stderr=subprocess.STDOUT, env=env
        )
    out = {
        "cpu_seconds": _children_cpu() - cpu,
        "wall_seconds": time.perf_counter() - wall,
        "load": [list(load), list(os.getloadavg())],
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        out["error"] = "\n".join(tail)
    return out


def medsr_worker(args) -> int:
    """Child: medsr's self-supervised method on a NIfTI file; output array + run facts."""
    import torch

    from medsr.infer.selfsup import SelfSupConfig, self_supervised_upscale
    from medsr.io import read

    image = read(args.medsr_worker[0])
    result = self_supervised_upscale(
        image,
        axis="through-plane",
        target_spacing=1.0,
        slice_thickness=THICKNESS,
        slice_profile="gaussian",
        config=SelfSupConfig(steps=args.medsr_steps_now, seed=args.seed),
        device="cpu",
        threads=args.threads,
    )
    np.save(args.medsr_worker[1], result.image.array)
    info = {
        "steps": result.steps,
        "stop_reason": result.stop_reason,
        "timings": result.timings,
        "origin": list(result.image.origin),
        "spacing": list(result.image.spacing),
        "torch": torch.__version__,
        "torch_threads": args.threads,
    }
    Path(args.medsr_worker[2]).write_text(json.dumps(info, indent=1))
    return 0


def calibrate_eclare(python: Path, batch: int, threads: int, log: Path) -> dict:
    """ECLARE's CPU seconds per training step (batch ``batch``, x4 patches) and per
    low-resolution pixel applied, measured in its venv with its own WDSR."""
    script = log.with_suffix(".py")
    script.write_text(CALIBRATE)
    run = run_child([str(python), str(script), str(batch), str(float(SPACING))], threads, log)
    if run["returncode"] != 0:
        raise SystemExit(f"ECLARE calibration failed:\n{run['error']}")
    step, pixel = (float(v) for v in log.read_text().split()[-2:])
    return {"batch": batch, "train_step_cpu_s": step, "apply_cpu_s_per_lr_pixel": pixel, **run}


# -- geometry -----------------------------------------------------------------------------------
def slice_positions(image) -> np.ndarray:
    """Voxel centres of ``image`` along its axis 0 in mm, along the truth's slice direction."""
    d = image.direction_3d()[:, 0]  # the LPS unit vector along array axis 0
    return float(np.dot(image.origin, d)) + image.spacing[0] * np.arange(image.array.shape[0])


def shift_check(out: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    """PSNR (whole volume) with ``out`` shifted by -2..2 voxels along axis 0 (overlap only)."""
    found = {}
    for s in range(-2, 3):
        a = out[max(s, 0) : out.shape[0] + min(s, 0)]
        b = truth[max(-s, 0) : truth.shape[0] + min(-s, 0)]
        found[s] = round(selfsup.scores(a, b)["psnr"], 3)
    return found


# -- one case -----------------------------------------------------------------------------------
def crop_inplane(vol: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    out = vol
    for axis, n in ((1, size[0]), (2, size[1])):
        if n and n < vol.shape[axis]:
            start = (vol.shape[axis] - n) // 2
            out = np.take(out, np.arange(start, start + n), axis=axis)
    return np.ascontiguousarray(out)


def run_case(name: str, truth: np.ndarray, args, calib: dict, work: Path) -> list[dict]:
    from medsr.io import read, write

    image = selfsup.thick_image(truth, SPACING, THICKNESS)
    thick = work / f"{name}_thick.nii.gz"
    write(image, thick, overwrite=True)
    back = read(thick)
    if not np.array_equal(back.array, image.array):
        raise SystemExit("the thick NIfTI does not read back as written")
    truth_z = np.arange(truth.shape[0], dtype=float)  # truth voxel k at k mm
    if not np.allclose(
        slice_positions(back)[[0, -1]], [1.5, 1.5 + SPACING * (back.array.shape[0] - 1)]
    ):
        raise SystemExit(f"thick slices at {slice_positions(back)[[0, -1]]} mm, not 4j + 1.5")
    print(f"{name}: truth {truth.shape}, thick {image.array.shape}", flush=True)
    rows = []
    cub = selfsup.cubic(image, SPACING)
    rows.append({"case": name, "method": "cubic", **selfsup.scores(cub, truth)})
    rows[-1]["shift_psnr"] = shift_check(cub, truth)
    for factor in args.factors:
        steps = round(args.medsr_steps * factor)
        out_npy, info_json = work / f"{name}_medsr_{factor:g}.npy", work / f"{name}_medsr.json"
        cmd = [sys.executable, __file__, "--medsr-worker", str(thick), str(out_npy), str(info_json)]
        cmd += ["--threads", str(args.threads), "--seed", str(args.seed)]
        cmd += ["--medsr-steps-now", str(steps)]
        run = run_child(cmd, args.threads, work / f"{name}_medsr_{factor:g}.log")
        if run["returncode"] != 0:
            raise SystemExit(f"medsr failed:\n{run['error']}")
        info = json.loads(info_json.read_text())
        sr = np.load(out_npy)
        if sr.shape != truth.shape or abs(info["origin"][2]) > 1e-6:
            raise SystemExit(f"medsr output {sr.shape} at {info['origin']} is off the truth grid")
        label = f"medsr self-supervised ({steps} steps)"
        row = {"case": name, "method": label, "factor": factor, **selfsup.scores(sr, truth)}
        row.update(run)
        row["medsr"] = info
        rows.append(row)
        print(f"  {label}: {fmt(row)}", flush=True)

        # ECLARE: training CPU time = medsr's whole run (inference on top)
        n_steps = max(1, round(run["cpu_seconds"] / calib["train_step_cpu_s"]))
        n_patches = n_steps * args.batch_size
        out_dir = work / f"{name}_eclare_{factor:g}"
        shutil.rmtree(out_dir, ignore_errors=True)
        cmd = [str(args.eclare_bin), "--in-fpath", str(thick), "--out-dir", str(out_dir)]
        cmd += ["--n-patches", str(n_patches), "--batch-size", str(args.batch_size)]
        cmd += ["--relative-slice-thickness", str(THICKNESS)]
        cmd += ["--relative-slice-profile-type", "gaussian", "--gpu-id", "-1"]
        log = work / f"{name}_eclare_{factor:g}.log"
        erun = run_child(cmd, args.threads, log)
        label = f"ECLARE ({n_patches} patches, batch {args.batch_size})"
        row = {"case": name, "method": label, "factor": factor, "n_patches": n_patches}
        row["command"] = "run-eclare " + " ".join(cmd[1:]).replace(str(work) + "/", "")
        row.update(erun)
        row["estimated_train_cpu_s"] = n_steps * calib["train_step_cpu_s"]
        row["warnings"] = sorted(
            {ln.strip() for ln in log.read_text(errors="replace").splitlines() if "Warning" in ln}
        )
        if erun["returncode"] != 0:
            print(f"  ECLARE failed:\n{erun['error']}", flush=True)
            rows.append(row)
            continue
        found = sorted(out_dir.glob("*_eclare.nii*"))
        ecl = read(found[0])
        z = slice_positions(ecl)
        row["geometry"] = {
            "shape": list(ecl.array.shape),
            "spacing": list(ecl.spacing),
            "slice_centres_mm": [float(z[0]), float(z[-1])],
        }
        if ecl.array.shape != truth.shape or not np.allclose(z, truth_z, atol=1e-3):
            row["error"] = (
                f"ECLARE output {ecl.array.shape}, slices at {z[0]}..{z[-1]} mm: not the truth "
                f"grid {truth.shape} at 0..{truth.shape[0] - 1} mm"
            )
            print(f"  {row['error']}", flush=True)
            rows.append(row)
            continue
        row.update(selfsup.scores(ecl.array, truth))
        row["shift_psnr"] = shift_check(ecl.array, truth)
        rows.append(row)
        print(f"  {label}: {fmt(row)}; shifts {row['shift_psnr']}", flush=True)
    return rows


def _order(r: dict) -> tuple:
    """Table order: case, then cubic, then by budget point, medsr before ECLARE."""
    case = {"mni": 0, "brats": 1}.get(r["case"], 2)
    return (case, r["case"], r.get("factor", 0.0), 1 if r["method"].startswith("ECLARE") else 0)


def fmt(r: dict) -> str:
    return (
        f"PSNR {r['psnr']:.2f} fg {r['psnr_fg']:.2f} SSIM {r['ssim']:.4f}, "
        f"CPU {r['cpu_seconds']:.0f} s, wall {r['wall_seconds']:.0f} s"
    )


# -- report -------------------------------------------------------------------------------------
def figure_views(report: dict, work: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Per case: (title, volume) panels from the outputs kept in ``work``: truth, cubic,
    medsr and ECLARE at the 1x budget, and ECLARE at the largest budget run."""
    from medsr.io import read

    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    names = list(dict.fromkeys(r["case"] for r in report["rows"]))
    cases = selfsup.load_cases(names)
    for name in names:
        truth = crop_inplane(cases[name][0], tuple(report["crop"]))
        cub = selfsup.cubic(selfsup.thick_image(truth, SPACING, THICKNESS), SPACING)
        panels = [("truth (1 mm)", truth), ("cubic", cub)]
        factors = sorted(
            r["factor"] for r in report["rows"] if r["case"] == name and "n_patches" in r
        )
        medsr_1x = work / f"{name}_medsr_1.npy"
        if medsr_1x.exists():
            panels.append(("medsr 1x", np.load(medsr_1x)))
        for f in dict.fromkeys([1.0, factors[-1]] if factors else []):
            found = sorted((work / f"{name}_eclare_{f:g}").glob("*_eclare.nii*"))
            if found:
                panels.append((f"ECLARE {f:g}x", read(found[0]).array))
        out[name] = panels
    return out


def fig(views: dict[str, list[tuple[str, np.ndarray]]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(views)
    ncols = max(len(p) for p in views.values())
    shape = views[names[0]][0][1].shape
    fig, axes = plt.subplots(
        len(names),
        ncols,
        figsize=(2.3 * ncols * shape[1] / 100 + 1, 0.6 + 2.5 * len(names) * shape[0] / 100),
        squeeze=False,
    )
    for r, name in enumerate(names):
        truth = views[name][0][1]
        x = truth.shape[2] // 2
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(views[name]):
                title, vol = views[name][c]
                plane = vol[:, :, x]  # (Z, Y): sagittal reformat, slice axis vertical
                ax.imshow(selfsup._norm(plane, truth[:, :, x])[::-1], cmap="gray")
                ax.set_title(title, fontsize=9)
            else:
                ax.axis("off")
            if c == 0:
                ax.set_ylabel(name)
    fig.suptitle(
        "Sagittal reformats of 4 mm thick slices (slice axis vertical); 1x = medsr's CPU time",
        fontsize=9,
    )
    fig.tight_layout()
    path = OUT / "reformat.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def table(rows: list[dict]) -> str:
    lines = [
        "| case | method | CPU budget | PSNR (dB) | PSNR fg (dB) | SSIM sagittal | CPU (s) "
        "| wall (s) | load at start |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = f"{r['cpu_seconds']:.0f}" if "cpu_seconds" in r else "–"
        wall = f"{r['wall_seconds']:.0f}" if "wall_seconds" in r else "–"
        load = f"{r['load'][0][0]:.1f}" if "load" in r else "–"
        budget = f"{r['factor']:g}x" if "factor" in r else "–"
        if "psnr" in r:
            q = f"{r['psnr']:.2f} | {r['psnr_fg']:.2f} | {r['ssim']:.4f}"
        else:
            q = "failed | – | –"
        lines.append(f"| {r['case']} | {r['method']} | {budget} | {q} | {cpu} | {wall} | {load} |")
    return "\n".join(lines)


def section(report: dict) -> str:
    cal = report["calibration"]
    lines = [
        HEADING,
        "",
        f"{report['date']}, {report['machine']} (no GPU), medsr torch {report['torch']}, ECLARE "
        f"{report['eclare_version']} with torch {report['eclare_torch']} in its own venv "
        f"(GPL-3.0: not a medsr dependency). Both as child processes under `nice -n 19` with "
        f"`OMP_NUM_THREADS={report['threads']}`, beside a long training job with the higher "
        "priority: CPU time (user + system) is the budget measure, wall time is shown for "
        "reference. Invocations (after making the venv, see the script's docstring), with the "
        "load averages (1, 5, 15 min) at their start and end:",
        "",
        *(
            f"- `{run['command'].strip()}`: load "
            + " -> ".join(", ".join(f"{v:.1f}" for v in run[k]) for k in ("load_start", "load_end"))
            for run in report["runs"]
            if "load_end" in run
        ),
        "",
        f"Cases: bench_selfsup's 4 mm MNI and BraTS cases (4 mm Gaussian slices every 4 mm from "
        f"the 1 mm volume), central in-plane crop {report['crop'][0]} x {report['crop'][1]} "
        "(Y x X), all slices; both methods told the true profile. medsr: a fixed step count; "
        "ECLARE: `--n-patches` so that its training alone takes medsr's measured CPU time "
        f"(calibrated: {cal['train_step_cpu_s']:.2f} CPU s per training step of "
        f"{cal['batch']} patches), `--batch-size {cal['batch']}`; its inference comes on top. "
        "Output grids checked voxel by voxel (slice centres from the NIfTI affine equal the "
        "truth's; best PSNR at shift 0 for cubic and ECLARE).",
        "",
        table(report["rows"]),
        "",
        f"Figure: [eclare/reformat.png](eclare/reformat.png). Applying ECLARE to a whole "
        f"volume costs {cal['apply_cpu_s_per_lr_pixel'] * 1e6:.0f} CPU us per low-resolution "
        "pixel and orientation, whatever the training length: "
        + ", ".join(
            f"{name} {shape[0]} x {shape[1]} x {shape[2]}: "
            f"{2 * math.prod(shape) * cal['apply_cpu_s_per_lr_pixel'] / 60:.0f} CPU min"
            for name, shape in report["full_thick_shapes"].items()
        )
        + f". Its default `--n-patches 1000000` would train for about "
        f"{1e6 / cal['batch'] * cal['train_step_cpu_s'] / 3600:.0f} CPU hours here (at "
        f"{cal['train_step_cpu_s'] / cal['batch']:.2f} CPU s per patch).",
        "",
        "ECLARE's CPU time split, training (steps x the calibrated step cost) + the rest "
        "(inference and set-up); an estimate only, as CPU seconds per step vary by a few tens "
        "of percent with what shares the cores: "
        + "; ".join(
            f"{r['case']} {r['factor']:g}x: {r['estimated_train_cpu_s']:.0f} + "
            f"{r['cpu_seconds'] - r['estimated_train_cpu_s']:.0f} s"
            for r in report["rows"]
            if "estimated_train_cpu_s" in r and "cpu_seconds" in r
        )
        + ".",
        "",
    ]
    if report.get("summary"):
        lines += [report["summary"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["mni", "brats"])
    p.add_argument("--crop", type=int, nargs=2, default=[64, 48], metavar=("Y", "X"))
    p.add_argument("--medsr-steps", type=int, default=600, help="medsr's steps at budget 1x")
    p.add_argument("--factors", type=float, nargs="+", default=[1.0], help="budget points")
    p.add_argument("--batch-size", type=int, default=16, help="ECLARE --batch-size")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS for both children")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eclare-bin", type=Path, default=Path("/work/eclare-venv/bin/run-eclare"))
    p.add_argument("--work", type=Path, default=Path("/tmp/medsr-bench-eclare"))
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite table.md and the figure (from --work) from results.json",
    )
    p.add_argument("--append", type=Path, default=None, help="append the section to this file")
    p.add_argument("--no-figure", action="store_true", help="keep reformat.png as it is")
    p.add_argument("--recalibrate", action="store_true", help="measure ECLARE's step cost again")
    p.add_argument("--medsr-worker", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--medsr-steps-now", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.medsr_worker:
        return medsr_worker(args)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report = json.loads((OUT / "results.json").read_text())
    else:
        import torch

        args.work.mkdir(parents=True, exist_ok=True)
        python = args.eclare_bin.parent / "python"
        versions = subprocess.run(
            [
                str(python),
                "-c",
                "import importlib.metadata as m; import torch; "
                "print(m.version('eclare'), torch.__version__)",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        # invocations (e.g. a second budget point) are merged into one report
        previous = OUT / "results.json"
        report = json.loads(previous.read_text()) if previous.exists() else {"rows": []}
        if report.get("crop", args.crop) != args.crop:
            raise SystemExit(f"results.json is for crop {report['crop']}: move it away first")
        if "command" in report:  # written before invocations were merged
            keys = ("command", "load_start", "load_end")
            report["runs"] = [{k: report.pop(k) for k in keys if k in report}]
        command = "python benchmarks/bench_eclare.py " + " ".join(argv or sys.argv[1:])
        run = {"command": command.strip(), "load_start": list(os.getloadavg())}
        report.setdefault("runs", []).append(run)
        report.update(
            {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                "torch": torch.__version__,
                "eclare_version": versions[0],
                "eclare_torch": versions[1],
                "threads": args.threads,
                "crop": args.crop,
            }
        )
        cal = report.get("calibration", {})
        if (
            args.recalibrate
            or cal.get("batch") != args.batch_size
            or report["threads"] != args.threads
        ):
            report["calibration"] = calibrate_eclare(
                python, args.batch_size, args.threads, args.work / "calibrate.log"
            )
        print("calibration:", report["calibration"], flush=True)
        cases = selfsup.load_cases(args.cases)
        report.setdefault("full_thick_shapes", {}).update(
            {n: [math.ceil(v.shape[0] / SPACING), *v.shape[1:]] for n, (v, _) in cases.items()}
        )
        for name, (vol, _) in cases.items():
            truth = crop_inplane(vol, tuple(args.crop))
            rows = run_case(name, truth, args, report["calibration"], args.work)
            new = {(r["case"], r["method"]) for r in rows}
            kept = [r for r in report["rows"] if (r["case"], r["method"]) not in new]
            report["rows"] = sorted(kept + rows, key=_order)
            run["load_end"] = list(os.getloadavg())
            (OUT / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (OUT / "table.md").write_text(table(report["rows"]) + "\n")
    if not args.no_figure:
        fig(figure_views(report, args.work))
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + section(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
