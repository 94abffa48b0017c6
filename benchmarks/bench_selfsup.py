"""Self-supervised through-plane SR (issues 10, 21): quality, speed, dipy, training time.

    python benchmarks/bench_selfsup.py                      # quality, speed, dipy
    python benchmarks/bench_selfsup.py --parts quality --cases mni
    python benchmarks/bench_selfsup.py --model runs/x4/     # add a trained 2D model (x4 cases)
    python benchmarks/bench_selfsup.py --parts --append benchmarks/RESULTS.md   # section only
    python benchmarks/bench_selfsup.py --parts step tune --threads 1            # ~5 min
    python benchmarks/bench_selfsup.py --parts curve --cases thick --threads 1  # ~6 min
    python benchmarks/bench_selfsup.py --parts curve --cases mni brats --threads 1  # ~35 min
    python benchmarks/bench_selfsup.py --parts --append-budget benchmarks/RESULTS.md

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

* ``step`` (issue 21): milliseconds per training step, sampling and network apart, for
  patch sizes, batch sizes, channels-last and 1 or 2 threads, in interleaved rounds
  (medians), on the MNI 4 mm case; ``tune``: batch sizes 16, 8, 4 at equal training time
  (``--tune-seconds``), compared by the held-out PSNR. Both: ``step_time.md``.
* ``curve`` (issue 21): PSNR/SSIM against the 1 mm truth versus training wall time on the
  4 mm MNI and BraTS cases: one long MNI run (``--long`` seconds, no early stopping) and the
  default run of each, scored at checkpoints (reconstruction time is taken off the training
  clock), and ``--steps 500`` (the old default) on MNI; ``thick``: the real 6.5 mm volume
  ``pyrad-brain1`` from ../shared/data/brain-mri-thick, fidelity (consistency) score only.
  ``curve.md``, ``curve.png``.

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
BUDGET_HEADING = "## Self-supervised SR: time budget, early stopping, step cost (issue 21)"
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


# -- budget, early stopping and step cost (issue 21) ------------------------------------------
THICK = DATA / "brain-mri-thick" / "pyrad-brain1_T1w-post.nii.gz"
STEP_CONFIGS = [  # (patch, batch, channels_last, threads)
    (48, 16, False, 1),
    (48, 16, True, 1),
    (48, 8, True, 1),
    (32, 16, True, 1),
    (64, 8, True, 1),
    (48, 16, True, 2),
    (48, 8, True, 2),
]


def _mni_4mm():
    cases = load_cases(["mni"])
    if "mni" not in cases:
        raise SystemExit("the step, tune and curve parts need nilearn's MNI template")
    truth = cases["mni"][0]
    return truth, thick_image(truth, 4, 4.0)


def _prepared(image):
    """What self_supervised_upscale prepares, for a slice axis 0: (norm, normaliser, acq, scale)."""
    from medsr.infer.selfsup import estimate_acquisition, through_plane_axis
    from medsr.transforms.intensity import fit_normaliser

    if through_plane_axis(image) != 0:
        raise SystemExit("the benchmark volumes have their slice axis first")
    acq = estimate_acquisition(image, 0)
    method = "auto" if image.modality.upper() in ("CT", "MR") else "minmax"
    normaliser = fit_normaliser(image.array, modality=image.modality, method=method, clip=False)
    norm = torch.from_numpy(np.asarray(normaliser.forward(image.array), np.float32))
    working = float(np.mean(image.spacing[1:]))
    scale = max(2, int(np.ceil(acq.spacing / working - 1e-6)))
    return norm, normaliser, acq, scale


def part_step(args) -> dict:
    """Seconds per training step (sampling and network separately) for patch sizes, batch
    sizes, channels-last and thread counts; rounds interleaved so that load changes hit every
    configuration alike; medians."""
    from medsr.infer.selfsup import SelfSupConfig, ThroughPlaneNet, _PairSampler

    _, image = _mni_4mm()
    norm, _, acq, scale = _prepared(image)
    runs = {}
    for patch, batch, cl, threads in STEP_CONFIGS:
        config = SelfSupConfig(steps=10, patch=patch, batch_size=batch)
        sampler = _PairSampler(
            norm, acq, (1.0, 1.0), scale, config, torch.Generator().manual_seed(0)
        )
        torch.manual_seed(0)
        model = ThroughPlaneNet(scale=scale)
        fmt = torch.channels_last if cl else torch.contiguous_format
        model = model.to(memory_format=fmt)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        runs[(patch, batch, cl, threads)] = (sampler, model, opt, fmt, {"sample": [], "model": []})
    old = torch.get_num_threads()
    for _ in range(args.rounds):
        for (*_, threads), (sampler, model, opt, fmt, times) in runs.items():
            torch.set_num_threads(threads)
            for i in range(12):
                t0 = time.perf_counter()
                x, y = sampler.sample()
                t1 = time.perf_counter()
                x = x.contiguous(memory_format=fmt)
                loss = (model(x) - y).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                t2 = time.perf_counter()
                if i >= 2:  # the first steps of a round warm the allocator and caches
                    times["sample"].append(t1 - t0)
                    times["model"].append(t2 - t1)
    # the sampler used to degrade whole slices: the cost of one whole-slice degradation
    sampler = next(iter(runs.values()))[0]
    _, down, target = sampler.ops[0][0]
    hr = norm[norm.shape[0] // 2]
    whole, strip = [], []
    for _ in range(50):
        t0 = time.perf_counter()
        down @ hr, target @ hr
        t1 = time.perf_counter()
        down[:12] @ hr[:, :48], target[: 12 * scale] @ hr[:, :48]
        whole.append(t1 - t0)
        strip.append(time.perf_counter() - t1)
    torch.set_num_threads(old)
    rows = []
    for (patch, batch, cl, threads), (sampler, *_, times) in runs.items():
        x, _ = sampler.sample()
        s, m = float(np.median(times["sample"])), float(np.median(times["model"]))
        rows.append(
            {
                "patch": patch,
                "batch": batch,
                "channels_last": cl,
                "threads": threads,
                "input": list(x.shape),
                "sample_ms": 1e3 * s,
                "model_ms": 1e3 * m,
                "step_ms": 1e3 * (s + m),
                "kpixels_per_s": x.numel() * scale / (s + m) / 1e3,  # output pixels
            }
        )
        print(
            f"  patch {patch} batch {batch} cl {cl} threads {threads}: sample {1e3 * s:.1f} ms, "
            f"model {1e3 * m:.1f} ms",
            flush=True,
        )
    return {
        "rows": rows,
        "degrade_whole_slice_ms": 1e3 * float(np.median(whole)),
        "degrade_patch_strip_ms": 1e3 * float(np.median(strip)),
        "slice": list(hr.shape),
    }


class _PausableClock:
    """perf_counter less the time spent evaluating checkpoints."""

    def __init__(self) -> None:
        self.paused = 0.0

    def __call__(self) -> float:
        return time.perf_counter() - self.paused


def tracked_run(image, config, checkpoints, truth=None, target=None) -> dict:
    """Train like ``self_supervised_upscale`` (slice axis 0) and, at the first held-out check
    past each of ``checkpoints`` (seconds of training), reconstruct the volume and score it:
    whole-volume metrics against ``truth`` when given, and the fidelity PSNR. Evaluation time
    is taken off the training clock; the final (annealed) network is scored too."""
    from medsr.infer.selfsup import _reconstruct, _train

    norm, normaliser, acq, scale = _prepared(image)
    n = norm.shape[0]
    d = target or float(np.mean(image.spacing[1:]))
    m_out = max(n + 1, round(n * acq.spacing / d))
    dev = torch.device("cpu")
    points: list[dict] = []
    pending = sorted(checkpoints)
    apply_seconds: list[float] = []

    def evaluate(model, entry) -> dict:
        t = time.perf_counter()
        out, fidelity = _reconstruct(
            model, norm, acq, m_out, config.planes_per_call, dev, lambda: None
        )
        apply_seconds.append(time.perf_counter() - t)
        point = {**entry, "fidelity_psnr": fidelity}
        if truth is not None:
            point.update(scores(np.asarray(normaliser.inverse(out.numpy()), np.float32), truth))
        print(
            "    "
            + ", ".join(f"{k} {v:.4g}" for k, v in point.items() if isinstance(v, float | int)),
            flush=True,
        )
        return point

    clock = _PausableClock()

    def on_check(model, entry) -> None:
        if pending and entry["seconds"] >= pending[0]:
            while pending and entry["seconds"] >= pending[0]:
                pending.pop(0)
            t = time.perf_counter()
            points.append(evaluate(model, dict(entry)))
            clock.paused += time.perf_counter() - t

    t0 = clock()
    trained = _train(norm, acq, (1.0, 1.0), scale, config, dev, lambda s: None, clock, on_check)
    seconds = clock() - t0
    final = evaluate(
        trained.model,
        {"step": trained.steps, "seconds": seconds, "heldout_psnr": trained.heldout_psnr},
    )
    final["final"] = True
    points.append(final)
    return {
        "config": {k: v for k, v in config.__dict__.items()},
        "steps": trained.steps,
        "stop_reason": trained.stop_reason,
        "train_seconds": seconds,
        "apply_seconds": float(np.median(apply_seconds)),
        "points": points,
        "history": trained.history,
    }


def would_stop(history: list[dict], patience: int, min_delta: float) -> dict | None:
    """The held-out check at which the early-stopping rule would start the anneal."""
    best, stale = -np.inf, 0
    for entry in history:
        stale = 0 if entry["heldout_psnr"] > best + min_delta else stale + 1
        best = max(best, entry["heldout_psnr"])
        if stale >= patience:
            return entry
    return None


def part_tune(args) -> list[dict]:
    """Batch sizes at equal training time: held-out PSNR after ``--tune-seconds`` of training
    (budget mode without early stopping; the held-out patches do not depend on the batch)."""
    from medsr.infer.selfsup import SelfSupConfig, _train

    _, image = _mni_4mm()
    norm, _, acq, scale = _prepared(image)
    rows = []
    for batch in (16, 8, 4):
        config = SelfSupConfig(
            budget=args.tune_seconds, patience=0, batch_size=batch, seed=args.seed
        )
        load = os.getloadavg()
        trained = _train(norm, acq, (1.0, 1.0), scale, config, torch.device("cpu"), lambda s: None)
        rows.append(
            {
                "batch": batch,
                "patch": config.patch,
                "seconds": args.tune_seconds,
                "steps": trained.steps,
                "heldout_psnr": trained.heldout_psnr,
                "load": load,
            }
        )
        print(
            f"  batch {batch}: {trained.steps} steps, held-out {trained.heldout_psnr:.3f} dB",
            flush=True,
        )
    return rows


def part_curve(args) -> dict:
    """PSNR/SSIM versus training wall time (simulated 4 mm volumes) and the fidelity score
    versus time on a real thick-slice volume."""
    from medsr.infer.selfsup import DEFAULT_BUDGET, SelfSupConfig
    from medsr.io import read

    out: dict = {}
    every = [30, 90, 180, 300, 420, 600, 900]
    default = SelfSupConfig(seed=args.seed)
    cases = load_cases([c for c in args.cases if c != "thick"])
    for name, (truth, _) in cases.items():
        image = thick_image(truth, 4, 4.0)
        cub = scores(cubic(image, 4), truth)
        runs = {}
        if name == "mni" and args.long:
            print(f"{name} 4 mm: long run, {args.long:.0f} s without early stopping", flush=True)
            config = SelfSupConfig(budget=args.long, patience=0, seed=args.seed)
            runs["long"] = tracked_run(image, config, [c for c in every if c < args.long], truth)
        print(f"{name} 4 mm: default run (budget {DEFAULT_BUDGET:.0f} s)", flush=True)
        # until its anneal the default run repeats the long run step for step (same seed,
        # same rate): only its end is scored
        runs["default"] = tracked_run(image, default, [], truth)
        if name == "mni":
            print(f"{name} 4 mm: --steps 500 (the old default)", flush=True)
            runs["steps 500"] = tracked_run(
                image, SelfSupConfig(steps=500, seed=args.seed), [], truth
            )
        out[name] = {"cubic": cub, "runs": runs, "load_after": os.getloadavg()}
    if "thick" in args.cases:
        if not THICK.exists():
            print(f"{THICK} missing: real thick case skipped")
        else:
            image = read(THICK)
            print(
                f"{THICK.name}: {image.array.shape} at {image.spacing} mm, default run", flush=True
            )
            out["thick"] = {
                "file": THICK.name,
                "shape": list(image.array.shape),
                "spacing": [round(s, 4) for s in image.spacing],
                "runs": {"default": tracked_run(image, default, [60, 120, 180])},
                "load_after": os.getloadavg(),
            }
    return out


def fig_curve(curve: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medsr.infer.selfsup import DEFAULT_BUDGET

    sims = [k for k in curve if k != "thick"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    colours = {"mni": "tab:blue", "brats": "tab:orange"}
    for name in sims:
        c = colours.get(name, "tab:green")
        for run, data in curve[name]["runs"].items():
            pts = data["points"]
            t = [p["seconds"] for p in pts]
            # the end of each run: a star (long), a diamond (default budget), a square (500 steps)
            end = {"long": "*", "default": "D", "steps 500": "s"}[run]
            for ax, key in zip(axes[:2], ("psnr", "ssim"), strict=True):
                ax.plot(t, [p[key] for p in pts], "-", color=c, marker=".", alpha=0.8)
                ax.plot(
                    t[-1],
                    pts[-1][key],
                    end,
                    color=c,
                    ms=9 if end == "*" else 6,
                    label=f"{name} {run}",
                    ls="",
                )
        for ax, key in zip(axes[:2], ("psnr", "ssim"), strict=True):
            ax.axhline(curve[name]["cubic"][key], color=c, lw=0.8, alpha=0.6)
    for ax, label in zip(axes[:2], ("PSNR (dB), whole volume", "SSIM, sagittal"), strict=True):
        ax.axvline(DEFAULT_BUDGET, color="grey", lw=0.8, ls="-.")
        ax.set_xlim(left=0)
        ax.set_xlabel("training wall time (s), 1 thread")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    if sims:
        axes[0].legend(fontsize=7)
    if "thick" in curve:
        pts = curve["thick"]["runs"]["default"]["points"]
        t = [p["seconds"] for p in pts]
        ax, twin = axes[2], axes[2].twinx()
        ax.plot(t, [p["fidelity_psnr"] for p in pts], "--", marker=".", color="tab:red")
        ax.plot(t[-1], pts[-1]["fidelity_psnr"], "*", color="tab:red", ms=10)
        twin.plot(t, [p["heldout_psnr"] for p in pts], "--", marker=".", color="tab:purple")
        twin.plot(t[-1], pts[-1]["heldout_psnr"], "*", color="tab:purple", ms=10)
        ax.set_ylabel("fidelity (consistency), dB", color="tab:red", fontsize=9)
        twin.set_ylabel("held-out in-plane PSNR, dB", color="tab:purple", fontsize=9)
        ax.axvline(DEFAULT_BUDGET, color="grey", lw=0.8, ls="-.")
        ax.set_title(f"real 6.5 mm {curve['thick']['file'].split('_')[0]}", fontsize=10)
        ax.set_xlabel("training wall time (s), 1 thread")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Self-supervised through-plane SR vs training time (markers: end of each run; thin "
        "lines: cubic)",
        fontsize=10,
    )
    fig.tight_layout()
    path = OUT / "curve.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def curve_table(curve: dict) -> str:
    lines = [
        "| volume | run | training (s) | steps | held-out PSNR | PSNR (dB) | PSNR fg | SSIM "
        "| fidelity (dB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, case in curve.items():
        if "cubic" in case:
            c = case["cubic"]
            lines.append(
                f"| {name} 4 mm | cubic | 0 | – | – | {c['psnr']:.2f} | {c['psnr_fg']:.2f} | "
                f"{c['ssim']:.4f} | – |"
            )
        for run, data in case["runs"].items():
            for p in data["points"]:
                end = f" (end: {data['stop_reason']})" if p.get("final") else ""
                held = "–" if p.get("heldout_psnr") is None else f"{p['heldout_psnr']:.2f}"
                sim = (
                    f"{p['psnr']:.2f} | {p['psnr_fg']:.2f} | {p['ssim']:.4f}"
                    if "psnr" in p
                    else "– | – | –"
                )
                lines.append(
                    f"| {name}{' 4 mm' if 'cubic' in case else ''} | {run}{end} | "
                    f"{p['seconds']:.0f} | {p['step']} | {held} | {sim} | "
                    f"{p['fidelity_psnr']:.2f} |"
                )
    return "\n".join(lines)


def step_table(step: dict, tune: list[dict] | None) -> str:
    lines = [
        "| patch | batch | channels-last | threads | input (B, 1, h, w) | sampling (ms) "
        "| network (ms) | step (ms) | output kpixel/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in step["rows"]:
        lines.append(
            f"| {r['patch']} | {r['batch']} | {'yes' if r['channels_last'] else 'no'} | "
            f"{r['threads']} | {tuple(r['input'])} | {r['sample_ms']:.1f} | {r['model_ms']:.1f} | "
            f"{r['step_ms']:.1f} | {r['kpixels_per_s']:.0f} |"
        )
    lines += [
        "",
        f"Degrading one whole {step['slice'][0]} x {step['slice'][1]} slice (as the sampler did "
        f"before): {step['degrade_whole_slice_ms']:.2f} ms; only the patch's strip: "
        f"{step['degrade_patch_strip_ms']:.3f} ms (per patch, 1 thread).",
    ]
    if tune:
        lines += [
            "",
            "| batch | patch | training (s) | steps | held-out PSNR (dB) | load before |",
            "|---|---|---|---|---|---|",
        ]
        for r in tune:
            lines.append(
                f"| {r['batch']} | {r['patch']} | {r['seconds']:.0f} | {r['steps']} | "
                f"{r['heldout_psnr']:.3f} | {', '.join(f'{v:.1f}' for v in r['load'])} |"
            )
    return "\n".join(lines)


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


def budget_section(report: dict) -> str:
    """The RESULTS.md section for the step, tune and curve parts (issue 21)."""
    lines = [
        BUDGET_HEADING,
        "",
        f"{report['date']}, {report['machine']} (no GPU), torch {report['torch']}, one torch "
        "thread, `nice -n 10`. A long training job and other tests shared the CPU; load "
        "averages (1, 5, 15 min) at the start and end of each run:",
        "",
    ]
    for run in report["runs"]:
        if {"step", "tune", "curve"} & set(run["parts"]):
            start, end = (", ".join(f"{v:.1f}" for v in load) for load in run["load"])
            lines.append(f"- `{run['command']}`: load {start} -> {end}")
    if report.get("step"):
        lines += ["", "### Step cost", "", step_table(report["step"], report.get("tune"))]
    if report.get("curve"):
        lines += [
            "",
            "### Quality versus training time",
            "",
            curve_table(report["curve"]),
            "",
            "Figure: [selfsup/curve.png](selfsup/curve.png).",
        ]
        lines += ["", early_stop_lines(report["curve"])]
    return "\n".join(lines) + "\n"


def early_stop_lines(curve: dict) -> str:
    """When the early-stopping rule would have started the anneal in the long runs (their
    held-out history does not depend on the rule: they ran without it)."""
    out = []
    for name, case in curve.items():
        run = case["runs"].get("long")
        if not run:
            continue
        for patience in (3, 6, 10):
            entry = would_stop(run["history"], patience, 0.01)
            when = (
                "never"
                if entry is None
                else f"at step {entry['step']}, {entry['seconds']:.0f} s "
                f"(held-out {entry['heldout_psnr']:.2f} dB)"
            )
            out.append(
                f"- {name} long run ({run['train_seconds']:.0f} s, {run['steps']} steps): "
                f"patience {patience} checks, 0.01 dB: the anneal would start {when}"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--parts",
        nargs="*",
        default=["quality", "speed", "dipy"],
        help="quality, speed, dipy, step, tune, curve, figure (curve.png and curve.md from "
        "results.json); none with --append: the section from results.json",
    )
    p.add_argument(
        "--cases", nargs="+", default=["mni", "brats", "spine"], help="thick: the real volume"
    )
    p.add_argument("--rounds", type=int, default=3, help="step part: interleaved rounds")
    p.add_argument("--tune-seconds", type=float, default=60.0, help="tune part: seconds per run")
    p.add_argument(
        "--long", type=float, default=480.0, help="curve part: the long MNI run (s; 0: none)"
    )
    p.add_argument("--steps", type=int, default=None, help="training steps (default: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=None, help="PyTorch CPU threads (default: all cores)"
    )
    p.add_argument("--model", default=None, help="a trained 2D checkpoint to compare with")
    p.add_argument("--model-scale", type=int, default=4, help="the cases --model runs on")
    p.add_argument("--append", type=Path, default=None, help="append a section to this file")
    p.add_argument(
        "--append-budget", type=Path, default=None, help="append the issue 21 section to this file"
    )
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
    measured = [part for part in args.parts if part != "figure"]  # figure: a redraw
    if measured:
        report.setdefault("runs", []).append({"command": command.strip(), "parts": args.parts})
    load_start = os.getloadavg()
    if args.threads is not None:  # the step part sets its own per configuration
        torch.set_num_threads(args.threads)
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
    if "step" in args.parts:
        report["step"] = part_step(args)
    if "tune" in args.parts:
        report["tune"] = part_tune(args)
    if "step" in args.parts or "tune" in args.parts:
        (OUT / "step_time.md").write_text(step_table(report["step"], report.get("tune")) + "\n")
    if "curve" in args.parts:
        report.setdefault("curve", {}).update(part_curve(args))
    if ("curve" in args.parts or "figure" in args.parts) and report.get("curve"):
        (OUT / "curve.md").write_text(curve_table(report["curve"]) + "\n")
        fig_curve(report["curve"])
    if measured:
        report["runs"][-1]["load"] = [load_start, os.getloadavg()]
        (OUT / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    if args.append:
        with args.append.open("a") as f:
            f.write("\n" + section(report))
    if args.append_budget:
        with args.append_budget.open("a") as f:
            f.write("\n" + budget_section(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
