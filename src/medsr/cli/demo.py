"""``medsr demo``: super-resolve a bundled real sample and show it beside bicubic and the original.

The sample is the ground truth: the demo makes its low-resolution version (antialiased
bicubic down by the scale), writes it in the sample's format, and runs it like any user input
through :func:`medsr.infer.pipeline.run` (read, super-resolve with the default model, write
the result: a derived DICOM series for the CT sample); bicubic runs on the same input for
comparison. ``side_by_side.png`` shows PSNR and SSIM of each method against the original,
in physical units.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from medsr.errors import ConfigError
from medsr.infer.defaults import DEFAULT_MODELS, FALLBACK_MODEL, default_model
from medsr.samples import SAMPLES


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="super-resolve a bundled real sample and write a side-by-side PNG",
        description=(
            "Take a bundled real sample (the ground truth), make its low-resolution version "
            "(antialiased bicubic down by --scale), super-resolve it with --model and with "
            "bicubic through the same pipeline as `medsr upscale`, and write the result in the "
            "sample's format plus side_by_side.png (LR, bicubic, the model, the original, with "
            "PSNR/SSIM against the original). Default model: the shipped medsr model for the "
            f"scale ({', '.join(f'x{k}: {v}' for k, v in sorted(DEFAULT_MODELS.items()))}), "
            f"else {FALLBACK_MODEL}."
        ),
    )
    p.add_argument(
        "--out",
        default="demo-out",
        help="output folder (default demo-out; its demo files are replaced)",
    )
    p.add_argument("--sample", choices=sorted(SAMPLES), default="chest-ct", help="default chest-ct")
    p.add_argument("--scale", type=int, default=4, help="scale factor (default 4)")
    p.add_argument(
        "--model", default=None, help="default: the shipped model for --scale (see above)"
    )


def _window(image) -> tuple[float, float]:
    """Display window: the DICOM WindowCenter/Width when present, else 0.5-99.5 percentiles."""
    centre, width = image.metadata.get("window_center"), image.metadata.get("window_width")
    try:
        c = float(centre[0] if isinstance(centre, list | tuple) else centre)
        w = float(width[0] if isinstance(width, list | tuple) else width)
        if w > 0:
            return c - w / 2, c + w / 2
    except (TypeError, ValueError, IndexError):
        pass
    low, high = np.percentile(image.array, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def _zoom_box(hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size``-square window with the most edge energy (for the zoom)."""
    gy, gx = np.gradient(hr.astype(np.float64))
    energy = np.hypot(gy, gx)
    h, w = hr.shape
    step = max(size // 4, 1)
    best, corner = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            value = float(energy[y : y + size, x : x + size].sum())
            if value > best:
                best, corner = value, (y, x)
    return corner


def _metrics(sr: np.ndarray, hr: np.ndarray) -> dict[str, float]:
    from medsr.metrics import psnr, ssim

    data_range = float(hr.max() - hr.min()) or 1.0
    a = sr.reshape(-1, 1, *sr.shape[-2:])
    b = hr.reshape(-1, 1, *hr.shape[-2:])
    return {
        "psnr": float(psnr(a, b, data_range=data_range).mean()),
        "ssim": float(ssim(a, b, data_range=data_range).mean()),
    }


def _figure(
    path: Path,
    panels: list[tuple[str, np.ndarray]],
    window: tuple[float, float],
    title: str,
    zoom: tuple[int, int, int],
) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    y0, x0, size = zoom
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 9.0))
    for k, (label, img) in enumerate(panels):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        top.add_patch(
            Rectangle((x0 - 0.5, y0 - 0.5), size, size, fill=False, color="#ffcc00", lw=1.2)
        )
        top.set_title(label, fontsize=10)
        crop = img[y0 : y0 + size, x0 : x0 + size]
        bottom.imshow(crop, cmap="gray", vmin=window[0], vmax=window[1], interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import torch

    from medsr import samples
    from medsr.infer.model_source import load_model
    from medsr.infer.pipeline import Job, UpscaleOptions, default_format, output_path, upscale
    from medsr.infer.pipeline import run as run_job
    from medsr.io import read, write
    from medsr.io.write import fit_to_output, stored_range
    from medsr.models import PRETRAINED
    from medsr.transforms.degrade import build_degradation

    start = time.perf_counter()
    s = args.scale
    if s < 2:
        raise ConfigError(f"--scale must be at least 2, got {s}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.sample
    hr = read(samples.path(name))
    if hr.color:
        raise ConfigError(f"sample {name} is in colour; the demo shows grey images")
    h, w = hr.spatial_shape[-2:]
    hr = hr.replace(array=hr.array[..., : h - h % s, : w - w % s])  # keeps the origin
    fmt = default_format(hr.source.format if hr.source is not None else "nifti")

    # The LR input: antialiased bicubic in physical units (linear, so the same as in any
    # unclipped normalisation), on the coarser grid, written and read back like user data.
    degrade = build_degradation({"name": "bicubic", "scale": s, "clip": False})
    planes = torch.from_numpy(hr.array.reshape(-1, 1, *hr.array.shape[-2:]))
    lr_array = degrade(planes).numpy().reshape(*hr.array.shape[:-2], h // s, w // s)
    lr_image, _ = fit_to_output(hr.regrid(lr_array), fmt)  # as the scanner would store it
    lr_path = output_path(out / f"{name}-lr-x{s}", lr_image, fmt)
    write(lr_image, lr_path, format=fmt, overwrite=True)

    model = load_model(args.model if args.model is not None else default_model(s), scale=s)
    options = UpscaleOptions(
        device="cpu", format=fmt, overwrite=True, description=f"{model.name} x{s} (medsr demo)"
    )
    label = model.name.split(" ")[0].replace("/", "_")
    # a shipped model's name already ends with its scale (medsr-edsr-tiny-x4)
    stem = f"{name}-sr-{label}" if label.endswith(f"-x{s}") else f"{name}-sr-{label}-x{s}"
    outcome = run_job(Job(lr_path, Path(stem), out), model, options)
    if outcome.exception is not None:
        raise outcome.exception
    assert outcome.image is not None and outcome.output is not None
    lr, main = outcome.image, outcome.result
    results = (
        {}
        if model.name == "bicubic"
        else {"bicubic": upscale(lr, load_model("bicubic", scale=s), options)}
    )
    results[model.name] = main
    clipped = outcome.clipped

    # Figure and metrics on the physical values; the middle slice of a volume is shown.
    z = hr.spatial_shape[0] // 2 if hr.is_volume else None

    def plane(a: np.ndarray) -> np.ndarray:
        return a[z] if z is not None else a

    nearest = np.repeat(np.repeat(lr.array, s, axis=-2), s, axis=-1)
    scores = {"nearest": _metrics(nearest, hr.array)}
    scores.update({k: _metrics(r.image.array, hr.array) for k, r in results.items()})

    def label(key: str, text: str) -> str:
        m = scores[key]
        return f"{text}\nPSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}"

    panels = [(label("nearest", f"LR input (1/{s}, nearest)"), plane(nearest))]
    for key, r in results.items():
        tag = " (default)" if key == model.name and args.model is None else ""
        panels.append(
            (label(key, f"{key}{tag}, fidelity {r.fidelity_psnr:.1f} dB"), plane(r.image.array))
        )
    panels.append(("original (ground truth)", plane(hr.array)))
    hr_plane = plane(hr.array)
    size = max(min(hr_plane.shape) // 4, 8)
    zoom = (*_zoom_box(hr_plane, size), size)
    kind = "trained model" if model.trained else "interpolation"
    where = f"slice {z + 1} of {hr.spatial_shape[0]}, " if z is not None else ""
    caution = ""
    if model.name in PRETRAINED and SAMPLES[name].seen_in_training:
        held_out = sorted(k for k, v in SAMPLES.items() if not v.seen_in_training)
        caution = (
            f"this {name} subject is in {model.name}'s training data, so its scores here are "
            f"optimistic; held-out samples: {', '.join(held_out)} (--sample)"
        )
    title = "\n".join(
        line
        for line in (
            f"medsr demo: {SAMPLES[name].description.split(' (')[0]} ({name}), x{s}; "
            f"model: {model.name} ({kind})",
            caution,
            f"{where}PSNR/SSIM against the original in physical units (data range = its "
            f"min..max){', mean over slices' if z is not None else ''}"
            "; bottom row: the yellow box enlarged",
        )
        if line
    )
    figure = out / "side_by_side.png"
    _figure(figure, panels, _window(hr), title, zoom)

    sr_where = outcome.output
    print(f"sample: {name} ({SAMPLES[name].description}; {SAMPLES[name].license})")
    print(f"low-resolution input (1/{s}, antialiased bicubic): {lr_path}")
    print(f"super-resolved with {model.name} ({kind}): {sr_where}")
    limits = stored_range(main.image, fmt)
    if clipped and limits is not None:
        print(
            f"  ({clipped} output pixels, {100 * clipped / main.image.array.size:.2f}%, overshot "
            f"{limits[0]:g}..{limits[1]:g}, the range the source's bit depth stores, and were "
            "clipped when written; the figure and metrics use the unclipped values)"
        )
    print(f"side-by-side figure: {figure}")
    if caution:
        print(f"note: {caution}")
    for key, m in scores.items():
        fidelity = results[key].fidelity_psnr if key in results else math.nan
        extra = "" if math.isnan(fidelity) else f", fidelity {fidelity:.1f} dB"
        print(f"  {key:>10}: PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.4f}{extra}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
