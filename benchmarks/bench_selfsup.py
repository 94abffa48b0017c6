"""Self-supervised through-plane SR (issue 10): quality on simulated thick slices, speed, dipy.

    python benchmarks/bench_selfsup.py                      # everything (~40 min on 2 cores)
    python benchmarks/bench_selfsup.py --parts quality --cases mni
    python benchmarks/bench_selfsup.py --model runs/x4/     # add a trained 2D model (x4 cases)
    python benchmarks/bench_selfsup.py --parts --append benchmarks/RESULTS.md   # section only

Parts:

* ``quality``: 1 mm isotropic volumes (nilearn's MNI152 2009 T1 template, a BraTS 2013 T1c
  volume and a lumbar spine MRI from ../shared/data) are turned into thick-slice acquisitions
  along one axis with :func:`medsr.transforms.degrade.thick_slices` (Gaussian slice
  profile; 4 mm slices every 4 mm, and 4 mm slices every 5 mm = 1 mm gap), reconstructed on
  the 1 mm grid and compared with the original: cubic (Keys) interpolation along the slice
  axis, a 2D model applied to the orthogonal planes through ``medsr.infer.upscale_image``
  (``--axis through-plane``; Lanczos unless ``--model`` names a trained checkpoint), and
  the self-supervised method with default settings, told the true slice profile (as the
  header and options would). Metrics on intensities scaled by the truth's 0.5/99.5
  foreground percentiles (data range 1): PSNR over the whole volume and over the
  foreground (truth > 0.1), SSIM averaged over the sagittal planes.
* ``speed``: a 256 x 256 x 40 thick-slice volume (5 mm MNI slices, in-plane resampled to
  256 x 256) with the default settings, timed end to end on this CPU.
* ``dipy``: dipy's real anisotropic ``aniso_vox.nii.gz`` (4 x 4 x 5 mm), super-resolved to
  4 mm and 2 mm along its slice axis; figure of a sagittal reformat.

Outputs go to benchmarks/selfsup/ (``results.json``, ``table.md``, figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HEADING = "## Self-supervised through-plane SR (issue 10)"
OUT = Path(__file__).resolve().parent / "selfsup"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCALES_2D = (2, 3, 4, 8)
ACQUISITIONS = {  # name: (slice spacing, thickness) in mm, Gaussian profile
    "4 mm": (4, 4.0),
    "5 mm (4 mm + 1 mm gap)": (5, 4.0),
}


# -- data ---------------------------------------------------------------------------------------
def _crop(vol: np.ndarray, multiple: int = 20) -> np.ndarray:
    n = vol.shape[0] - vol.shape[0] % multiple
    start = (vol.shape[0] - n) // 2
    return vol[start : start + n]


def load_cases(names: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (isotropic 1 mm volume with the slice axis first, description)."""
    cases: dict[str, tuple[np.ndarray, str]] = {}
    if "mni" in names:
        try:
            from nilearn.datasets import load_mni152_template
        except ImportError:
            print("nilearn missing (pip install -e '.[bench]'): MNI case skipped")
        else:
            img = load_mni152_template(resolution=1)
            data = np.asarray(img.get_fdata(), dtype=np.float32)  # (x, y, z) RAS
            vol = np.ascontiguousarray(np.transpose(data, (2, 1, 0))[:, ::-1])  # (z, y, x)
            cases["mni"] = (_crop(vol), "MNI152 2009 T1 template, axial slices")
    if "brats" in names:
        path = DATA / "brain-mri-brats2013" / "pat0003" / "T1c_subtrMeanDivStd.nii.gz"
        if path.exists():
            from medsr.io import read

            vol = read(path).array
            cases["brats"] = (_crop(vol), "BraTS 2013 pat0003 T1c, axial slices")
        else:
            print(f"{path} missing: BraTS case skipped")
    if "spine" in names:
        path = DATA / "spine-mri" / "IVD_11.npz"
        if path.exists():
            image = np.load(path)["image"].astype(np.float32)  # (H, W, S), S sagittal
            vol = np.ascontiguousarray(np.moveaxis(image, 2, 0))
            cases["spine"] = (_crop(vol), "lumbar spine MRI IVD_11, sagittal slices")
        else:
            print(f"{path} missing: spine case skipped")
    return cases


def thick_image(truth: np.ndarray, spacing: int, thickness: float):
    """The thick-slice Image and its geometry: slice j centred on truth voxel (j+0.5)s - 0.5."""
    from medsr.io.image import Image
    from medsr.transforms.degrade import thick_slices

    thick = thick_slices(
        torch.from_numpy(truth),
        thickness=thickness,
        gap=spacing - thickness,
        input_spacing=1.0,
        profile="gaussian",
        axis=0,
    ).numpy()
    return Image(
        array=thick,
        spacing=(float(spacing), 1.0, 1.0),
        origin=(0.0, 0.0, (spacing - 1) / 2.0),  # so the 1 mm output grid starts at 0
        modality="MR",
    )


# -- metrics ------------------------------------------------------------------------------------
def scores(out: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from medsr.metrics import psnr, ssim
    from medsr.transforms.intensity import fit_normaliser

    norm = fit_normaliser(truth, modality="MR", clip=False)
    t = torch.from_numpy(np.asarray(norm.forward(truth), np.float32))
    o = torch.from_numpy(np.asarray(norm.forward(out), np.float32))
    fg = t > 0.1
    mse_fg = float(((o - t)[fg] ** 2).mean())
    # sagittal planes (Z, Y), one per X
    s = ssim(o.permute(2, 0, 1)[:, None], t.permute(2, 0, 1)[:, None], data_range=1.0)
    return {
        "psnr": float(psnr(o[None], t[None], data_range=1.0)[0]),  # Z as channels
        "psnr_fg": 10 * np.log10(1.0 / mse_fg),
        "ssim": float(s.mean()),
    }


# -- methods ------------------------------------------------------------------------------------
def cubic(image, factor: int) -> np.ndarray:
    from medsr.infer.selfsup import _along, _grid_positions, cubic_matrix

    n = image.array.shape[0]
    s = image.spacing[0]
    m = round(n * s / (s / factor))
    up = cubic_matrix(n, _grid_positions(n, s, m, s / factor))
    return _along(up, torch.from_numpy(image.array)).numpy()


def model_2d(image, factor: int, model: str, threads: int | None) -> np.ndarray:
    from medsr.infer import load_model, upscale_image

    srm = load_model(model, scale=factor if model == "lanczos" else None)
    if srm.scale != factor:
        raise SystemExit(f"--model {model} is x{srm.scale}, not x{factor}")
    return upscale_image(image, srm, axis="through-plane", tile=0, threads=threads).image.array


def _ticker(label: str):
    marks = set()

    def tick(done: int, total: int) -> None:
        tenth = 10 * done // total
        if tenth not in marks:
            marks.add(tenth)
            print(f"    {label}: {done}/{total} ({time.strftime('%H:%M:%S')})", flush=True)

    return tick


def self_sup(image, acq_thickness: float, args):
    from medsr.infer.selfsup import SelfSupConfig, self_supervised_upscale

    config = SelfSupConfig(seed=args.seed)
    if args.steps is not None:
        config = SelfSupConfig(steps=args.steps, seed=args.seed)
    return self_supervised_upscale(
        image,
        axis=0,
        target_spacing=1.0,
        slice_thickness=acq_thickness,
        config=config,
        threads=args.threads,
        progress=_ticker("self-supervised"),
    )


def part_quality(args) -> tuple[list[dict], dict]:
    cases = load_cases(args.cases)
    rows, views = [], {}
    for name, (truth, what) in cases.items():
        for label, (spacing, thickness) in ACQUISITIONS.items():
            image = thick_image(truth, spacing, thickness)
            print(f"{name} {label}: truth {truth.shape}, thick {image.array.shape}", flush=True)
            outs: dict[str, np.ndarray] = {}
            t = time.perf_counter()
            outs["cubic"] = cubic(image, spacing)
            times = {"cubic": time.perf_counter() - t}
            t = time.perf_counter()
            lanczos_name = "lanczos (2D, through-plane)"
            if spacing in SCALES_2D:  # medsr's 2D models and interpolations: x2, x3, x4, x8
                outs[lanczos_name] = model_2d(image, spacing, "lanczos", args.threads)
                times[lanczos_name] = time.perf_counter() - t
            if args.model and spacing == args.model_scale:
                t = time.perf_counter()
                outs[f"{args.model} (2D)"] = model_2d(image, spacing, args.model, args.threads)
                times[f"{args.model} (2D)"] = time.perf_counter() - t
            result = self_sup(image, thickness, args)
            outs["self-supervised"] = result.image.array
            times["self-supervised"] = result.timings["total"]
            for method, out in outs.items():
                if out.shape != truth.shape:
                    raise SystemExit(f"{method}: shape {out.shape} != truth {truth.shape}")
                row = {"case": name, "what": what, "acquisition": label, "method": method}
                row.update(scores(out, truth))
                row["seconds"] = times[method]
                rows.append(row)
                print(
                    f"  {method:32s} PSNR {row['psnr']:6.2f}  fg {row['psnr_fg']:6.2f}  "
                    f"SSIM {row['ssim']:.4f}  {row['seconds']:.1f} s",
                    flush=True,
                )
            views[(name, label)] = {
                "before": np.repeat(image.array, spacing, axis=0),
                "cubic": outs["cubic"],
                "self-supervised": outs["self-supervised"],
                "truth": truth,
            }
    return rows, views


def part_speed(args) -> dict:
    import torch.nn.functional as F

    from medsr.infer.selfsup import SelfSupConfig, self_supervised_upscale
    from medsr.io.image import Image

    cases = load_cases(["mni"])
    if "mni" not in cases:
        return {}
    truth = cases["mni"][0][:200]  # 200 x 233 x 197
    vol = F.interpolate(torch.from_numpy(truth)[None, None], size=(200, 256, 256), mode="area")
    base = thick_image(vol[0, 0].numpy(), 5, 5.0)
    image = Image(array=base.array, spacing=(5.0, 0.9, 0.9), modality="MR")
    assert image.array.shape == (40, 256, 256), image.array.shape
    load = os.getloadavg()
    start = time.perf_counter()
    result = self_supervised_upscale(
        image,
        axis="through-plane",
        config=SelfSupConfig(),
        threads=args.threads,
        progress=_ticker("speed"),
    )
    return {
        "wall_seconds": time.perf_counter() - start,
        "shape": list(image.array.shape),
        "spacing": list(image.spacing),
        "output_shape": list(result.image.array.shape),
        "timings": result.timings,
        "load_before": load,
        "load_after": os.getloadavg(),
    }


def part_dipy(args) -> dict:
    try:
        from dipy.data import get_fnames
    except ImportError:
        print("dipy missing (pip install -e '.[bench]'): dipy part skipped")
        return {}
    from medsr.infer.selfsup import SelfSupConfig, self_supervised_upscale
    from medsr.io import read, write

    path = Path(get_fnames(name="aniso_vox"))  # ships with dipy: no download
    image = read(path)
    info = {"file": path.name, "shape": list(image.array.shape), "spacing": list(image.spacing)}
    outs = {}
    for target in (4.0, 2.0):
        result = self_supervised_upscale(
            image,
            axis="through-plane",
            target_spacing=target,
            config=SelfSupConfig(),
            threads=args.threads,
        )
        outs[target] = result
        info[f"target {target:g} mm"] = {
            "shape": list(result.image.array.shape),
            "spacing": [round(s, 4) for s in result.image.spacing],
            "fidelity_psnr": result.fidelity_psnr,
            "seconds": result.timings["total"],
        }
    # written and read back: the NIfTI affine carries the new slice spacing
    with tempfile.TemporaryDirectory() as tmp:
        path_2mm = Path(tmp) / "aniso_vox_selfsup_2mm.nii.gz"
        write(outs[2.0].image, path_2mm)
        info["written_2mm_spacing"] = [round(s, 4) for s in read(path_2mm).spacing]
    fig_dipy(image, outs)
    return info


# -- figures ------------------------------------------------------------------------------------
def _norm(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(ref, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo), 0, 1)


def fig_quality(views: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["before", "cubic", "self-supervised", "truth"]
    keys = list(views)
    # row heights follow each reformat's aspect (the spine volume has few sagittal slices)
    ratios = [views[k]["truth"].shape[0] / views[k]["truth"].shape[1] for k in keys]
    fig, axes = plt.subplots(
        len(keys),
        len(cols),
        figsize=(3.2 * len(cols), 0.6 + 3.3 * sum(ratios)),
        gridspec_kw={"height_ratios": ratios},
        squeeze=False,
    )
    for r, key in enumerate(keys):
        v = views[key]
        x = v["truth"].shape[2] // 2 + (8 if key[0] != "spine" else 0)
        for c, col in enumerate(cols):
            plane = v[col][:, :, x]  # (Z, Y): a sagittal (or, for the spine, axial) reformat
            ax = axes[r, c]
            ax.imshow(_norm(plane, v["truth"][:, :, x])[::-1], cmap="gray", aspect="equal")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(
                    {"before": "before (thick slices)", "truth": "truth (1 mm)"}.get(col, col)
                )
            if c == 0:
                ax.set_ylabel(f"{key[0]} {key[1].split(' (')[0]}", fontsize=9)
    fig.suptitle(
        "Through-plane reformats, slice axis vertical (5 mm = 4 mm slices + 1 mm gap)",
        fontsize=11,
    )
    fig.tight_layout()
    path = OUT / "reformat.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def fig_dipy(image, outs) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsr.infer.selfsup import _along, _grid_positions, cubic_matrix

    vol = image.array
    n, s = vol.shape[0], image.spacing[0]
    x = vol.shape[2] // 2
    m = outs[2.0].image.array.shape[0]
    cub = _along(
        cubic_matrix(n, _grid_positions(n, s, m, n * s / m)), torch.from_numpy(vol)
    ).numpy()
    panels = [
        ("input 4x4x5 mm (nearest)", np.repeat(vol, 5, axis=0)[:, :, x], 1.0),
        ("cubic to 2 mm", cub[:, :, x], 2.0),
        ("self-supervised to 4 mm", outs[4.0].image.array[:, :, x], 4.0),
        ("self-supervised to 2 mm", outs[2.0].image.array[:, :, x], 2.0),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.6))
    for ax, (title, plane, dz) in zip(axes, panels, strict=True):
        ax.imshow(
            _norm(plane, vol)[::-1],
            cmap="gray",
            extent=(0, plane.shape[1] * 4.0, 0, plane.shape[0] * dz),
        )
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("dipy aniso_vox.nii.gz: sagittal reformat (slice axis vertical, true scale)")
    fig.tight_layout()
    path = OUT / "aniso_vox.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- report -------------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    lines = [
        "| volume | acquisition | method | PSNR (dB) | PSNR fg (dB) | SSIM sagittal | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['acquisition']} | {r['method']} | {r['psnr']:.2f} | "
            f"{r['psnr_fg']:.2f} | {r['ssim']:.4f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines)


def section(report: dict) -> str:
    """The RESULTS.md section for ``report``."""
    lines = [
        HEADING,
        "",
        f"{report['date']}, {report['machine']} (no GPU), torch {report['torch']}. Other jobs "
        "shared the CPU; load averages (1, 5, 15 min) at the start and end of each run:",
        "",
    ]
    for run in report["runs"]:
        start, end = (", ".join(f"{v:.1f}" for v in load) for load in run["load"])
        lines.append(f"- `{run['command']}`: load {start} -> {end}")
    lines.append("")
    if report.get("quality"):
        lines += [
            "### Simulated thick slices from 1 mm volumes",
            "",
            "Gaussian slice profile; reconstruction on the original 1 mm grid; intensities "
            "scaled by the truth's 0.5/99.5 % foreground percentiles (data range 1). PSNR over "
            "the whole volume and over the foreground (truth > 0.1); SSIM averaged over the "
            "sagittal planes. The 2D model is Lanczos-3 through `upscale_image(..., "
            "axis='through-plane')` (no trained medsr 2D model exists yet; medsr's 2D models "
            "have no x5). Self-supervised: default settings, told the true slice profile.",
            "",
            table(report["quality"]),
            "",
            f"Figure: [{report.get('figure')}](selfsup/reformat.png).",
            "",
        ]
    if report.get("speed"):
        lines += ["### Speed: 256 x 256 x 40 with the default settings", ""]
        for threads, speed in report["speed"].items():
            t = speed["timings"]
            lines.append(
                f"- {threads}: input {speed['shape']} at {speed['spacing']} mm -> "
                f"{speed['output_shape']}: training {t['train']:.0f} s, applying "
                f"{t['apply']:.0f} s, total {t['total']:.0f} s ({t['total'] / 60:.1f} min; "
                "limit 15 min); load average before "
                + ", ".join(f"{v:.1f}" for v in speed["load_before"])
                + ", after "
                + ", ".join(f"{v:.1f}" for v in speed["load_after"])
            )
        lines.append("")
    dipy = report.get("dipy")
    if dipy:
        lines += [
            "### dipy `aniso_vox.nii.gz` (real, 4 x 4 x 5 mm)",
            "",
            f"Input {dipy['shape']} at {[round(v, 3) for v in dipy['spacing']]} mm (Z, Y, X).",
            "",
        ]
        for key, value in dipy.items():
            if key.startswith("target"):
                lines.append(
                    f"- {key}: output {value['shape']} at {value['spacing']} mm, fidelity "
                    f"{value['fidelity_psnr']:.1f} dB, {value['seconds']:.0f} s"
                )
        lines += ["", "Figure: [selfsup/aniso_vox.png](selfsup/aniso_vox.png).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--parts",
        nargs="*",
        default=["quality", "speed", "dipy"],
        help="quality, speed, dipy; none with --append: the section from results.json",
    )
    p.add_argument("--cases", nargs="+", default=["mni", "brats", "spine"])
    p.add_argument("--steps", type=int, default=None, help="training steps (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=None, help="PyTorch CPU threads (default: all cores)"
    )
    p.add_argument("--model", default=None, help="a trained 2D checkpoint to compare with")
    p.add_argument("--model-scale", type=int, default=4, help="the cases --model runs on")
    p.add_argument("--append", type=Path, default=None, help="append a section to this file")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_selfsup.py " + " ".join(argv or sys.argv[1:])
    # parts run separately are merged into one report
    previous = OUT / "results.json"
    report: dict = json.loads(previous.read_text()) if previous.exists() else {}
    report.update(
        {
            "date": dt.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__,
        }
    )
    if "command" in report:  # a report written before runs were merged
        report["runs"] = [
            {
                "command": report.pop("command"),
                "parts": ["quality"],
                "load": [report.pop("load_start"), report.pop("load_end")],
            }
        ]
    if args.parts:
        report.setdefault("runs", []).append({"command": command.strip(), "parts": args.parts})
    load_start = os.getloadavg()
    if "quality" in args.parts:
        rows, views = part_quality(args)
        report["quality"] = rows
        if views:
            report["figure"] = str(fig_quality(views).relative_to(OUT.parent.parent))
        (OUT / "table.md").write_text(table(rows) + "\n")
    if "speed" in args.parts:
        threads = "default threads" if args.threads is None else f"--threads {args.threads}"
        report.setdefault("speed", {})[threads] = part_speed(args)
        print("speed:", json.dumps(report["speed"][threads]))
    if "dipy" in args.parts:
        report["dipy"] = part_dipy(args)
        print("dipy:", json.dumps(report["dipy"]))
    if args.parts:
        report["runs"][-1]["load"] = [load_start, os.getloadavg()]
        (OUT / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + section(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
