"""Work 5 (thick/thin SRGAN): paired DICOM series, the paired datasets, evaluation.

The shared data has no real thick/thin acquisitions of one patient, so they are made as
real DICOM series: each BraTS volume (1 mm) becomes a thin 12-bit MR series, and a thick
series (5 mm, Gaussian slice profile, contiguous: ``configs/degradations/thick_slice_5mm``)
derived from it with its own slice thickness and positions, in the same study and frame of
reference. The two series are paired by patient position with
:func:`medsr.data.pairing.pair_series` (``medsr pair``), which reads only their headers.

A training item is a paired slice: the LR input is the thick slice and its two thick
neighbours (2.5D, the paper's Model 2), bicubic x4 down in-plane; the target is the paired
thin slice. The trained models are then run on the real thick volumes of
``brain-mri-thick`` and ``head-ct``, which have no thin truth: only the consistency score
and figures are reported.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from medsr.errors import ConfigError, MedsrError

__all__ = ["PairDataset", "PairedVolume", "ThickThin", "prepare_pairs"]

logger = logging.getLogger(__name__)

Log = Callable[[str], None]

THICKNESS = 5.0
STORED_MAX = 4095.0  # 12-bit MR
SCALE = 4
SEQUENCES = ("Flair", "T1c")
THICK_SOURCES = ("brain-mri-thick", "head-ct")
FIGURE_CROP = 384


@dataclass
class PairedVolume:
    """One synthesised thin/thick pair of series, read back from DICOM, and its pairs."""

    subject: str
    name: str
    split: str
    thin: np.ndarray  # (Z, Y, X) stored units
    thick: np.ndarray  # (Z / 5, Y, X)
    pairs: list[tuple[int, int]]  # (thick index, thin index), matched ones
    normaliser: Any

    def lr(self, k: int) -> torch.Tensor:
        """The normalised 2.5D input of thick slice ``k``: ``(3, h, w)``."""
        from medsr.transforms.degrade import bicubic

        idx = [min(max(i, 0), len(self.thick) - 1) for i in (k - 1, k, k + 1)]
        planes = np.stack([self.normaliser.forward(self.thick[i]) for i in idx]).astype(np.float32)
        h, w = (n - n % SCALE for n in planes.shape[1:])
        x = torch.from_numpy(np.ascontiguousarray(planes[:, :h, :w]))[None]
        return bicubic(x, SCALE, antialias=True, clip=False)[0].clamp(0, 1)

    def hr(self, j: int) -> torch.Tensor:
        plane = np.asarray(self.normaliser.forward(self.thin[j]), dtype=np.float32)
        h, w = (n - n % SCALE for n in plane.shape)
        return torch.from_numpy(np.ascontiguousarray(plane[:h, :w]))[None].clamp(0, 1)


class PairDataset(Dataset):
    """The paired slices of some volumes, as ``medsr.train`` datasets want them.

    ``patch_size`` None: whole slices with the ``normaliser`` (validation); else random HR
    patches (and the matching LR patch) with flips, seeded by (seed, epoch, index).
    """

    def __init__(
        self,
        volumes: list[PairedVolume],
        *,
        patch_size: int | None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.items = [(v, k, j) for v in volumes for k, j in v.pairs]
        if limit is not None:
            step = max(1, len(self.items) // limit)
            self.items = self.items[::step][:limit]
        if not self.items:
            raise ConfigError("no paired slices in this split")
        self.patch_size = patch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume, k, j = self.items[index]
        lr, hr = volume.lr(k), volume.hr(j)
        if self.patch_size is None:
            return {"lr": lr, "hr": hr, "normaliser": volume.normaliser.to_dict()}
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + index)
        size = min(self.patch_size, hr.shape[-2], hr.shape[-1]) // SCALE * SCALE
        small = size // SCALE
        best = None
        for _ in range(5):
            top = int(torch.randint(0, lr.shape[-2] - small + 1, (1,), generator=g))
            left = int(torch.randint(0, lr.shape[-1] - small + 1, (1,), generator=g))
            patch = hr[:, top * SCALE : top * SCALE + size, left * SCALE : left * SCALE + size]
            best = (top, left)
            if float((patch > 0.05).float().mean()) >= 0.5:
                break
        assert best is not None
        top, left = best
        lr = lr[:, top : top + small, left : left + small]
        hr = hr[:, top * SCALE : top * SCALE + size, left * SCALE : left * SCALE + size]
        if bool(torch.rand((), generator=g) < 0.5):
            lr, hr = lr.flip(-1), hr.flip(-1)
        if bool(torch.rand((), generator=g) < 0.5):
            lr, hr = lr.flip(-2), hr.flip(-2)
        return {"lr": lr.contiguous(), "hr": hr.contiguous()}


@dataclass
class ThickThin:
    """The synthesised pairs of one working folder."""

    folder: Path
    data_root: Path
    profile: str
    volumes: list[PairedVolume]
    manifest: Path
    notes: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[PairedVolume]:
        return [v for v in self.volumes if v.split == name]

    def datasets(self, spec: Any, profile: str) -> tuple[Dataset, Dataset]:
        from medsr.reproduce.runner import train_config_data
        from medsr.train import parse_config

        config = parse_config(train_config_data(spec, profile, notes=[]))
        train = PairDataset(
            self.split("train"), patch_size=config.data.patch_size, seed=config.seed
        )
        val = PairDataset(self.split("val"), patch_size=None, limit=config.data.val_max_slices)
        return train, val

    # ------------------------------------------------------------------------ evaluation
    def evaluate(self, checkpoints: Mapping[str, Path], out: Path, log: Log) -> Path:
        """Score bicubic and each model on the test pairs (stored 12-bit units), then run the
        models on the real thick volumes; writes ``results.csv``, figures and
        ``thick-volumes.md`` into ``out``."""
        from medsr.eval.results import format_value
        from medsr.metrics import mae, mse, psnr, ssim
        from medsr.models import build_generator, load

        out.mkdir(parents=True, exist_ok=True)
        methods: dict[str, torch.nn.Module] = {
            "bicubic": build_generator("bicubic", {"scale": SCALE, "in_channels": 1})
        }
        for name, path in checkpoints.items():
            methods[name] = load(path)
        columns = [
            "method", "split", "dataset", "subject_id", "volume_id", "slice_index",
            "hr_slice_index", "data_range", "psnr", "ssim", "mse", "mae",
        ]  # fmt: skip
        rows: list[dict[str, Any]] = []
        test = self.split("test")
        per_volume = 2 if self.profile == "smoke" else None
        figure_done = False
        for volume in test:
            pairs = volume.pairs if per_volume is None else volume.pairs[:per_volume]
            shown = pairs[len(pairs) // 2] if pairs else None
            for k, j in pairs:
                lr = volume.lr(k)[None]
                hr = volume.hr(j)[0].double().numpy()
                hr_stored = np.asarray(volume.normaliser.inverse(hr), dtype=np.float64)
                outputs = {}
                for name, model in methods.items():
                    with torch.no_grad():
                        x = lr[:, 1:2] if name == "bicubic" else lr
                        sr = model(x).clamp(0, 1)[0, 0].double().numpy()
                    sr_stored = np.asarray(volume.normaliser.inverse(sr), dtype=np.float64)
                    outputs[name] = sr_stored
                    a = torch.from_numpy(sr_stored)[None, None]
                    b = torch.from_numpy(hr_stored)[None, None]
                    rows.append(
                        {
                            "method": name,
                            "split": "test",
                            "dataset": "brain-mri-brats2013",
                            "subject_id": volume.subject,
                            "volume_id": volume.name,
                            "slice_index": k,
                            "hr_slice_index": j,
                            "data_range": STORED_MAX,
                            "psnr": float(psnr(a, b, data_range=STORED_MAX)[0]),
                            "ssim": float(ssim(a, b, data_range=STORED_MAX)[0]),
                            "mse": float(mse(a, b)[0]),
                            "mae": float(mae(a, b)[0]),
                        }
                    )
                if not figure_done and (k, j) == shown:
                    self._pair_figure(volume, k, j, lr, hr_stored, outputs, out)
                    figure_done = True
        results = out / "results.csv"
        with open(results, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: format_value(row[c]) for c in columns})
        log(f"evaluate: {len(rows)} rows on {len(test)} test volume(s)")
        self._thick_volumes(checkpoints, out, log)
        return results

    def _pair_figure(self, volume, k, j, lr, hr_stored, outputs, out: Path) -> None:
        from medsr.eval.figures import detail_box, figure_grid

        centre = np.asarray(volume.normaliser.inverse(lr[0, 1].double().numpy()), np.float64)
        low, high = np.percentile(hr_stored, [0.5, 99.5])
        size = max(4 * SCALE, (min(hr_stored.shape) // 5) // SCALE * SCALE)
        box = detail_box(hr_stored, size=size, foreground=hr_stored > low, multiple=SCALE)
        grid = figure_grid(
            lr=centre,
            outputs=list(outputs.items()),
            hr=hr_stored,
            window=(float(low), float(high + (high == low))),
            box=box,
            title=f"{volume.name} · thick slice {k} -> thin slice {j} · x{SCALE} in-plane",
            units="(stored units)",
        )
        (out / "figures").mkdir(exist_ok=True)
        (out / "figures" / "pair-example.png").write_bytes(grid.png)

    def _thick_volumes(self, checkpoints: Mapping[str, Path], out: Path, log: Log) -> None:
        from medsr.infer import load_model, upscale_image
        from medsr.io import read

        lines = [
            "## Real thick volumes (no thin ground truth)",
            "",
            "Consistency score: PSNR (dB) of the SR output degraded again by the model's "
            "noise-free degradation against the input (medsr upscale's fidelity check; "
            "higher: the output explains its input better; necessary, not sufficient).",
            "",
            "| volume | slices run | method | consistency PSNR (dB) | seconds |",
            "|---|---|---|---|---|",
        ]
        found = False
        keep = {"smoke": 1, "cpu": 3}.get(self.profile)
        for source in THICK_SOURCES:
            folder = self.data_root / source
            if not folder.is_dir():
                lines.append(f"| {source}: absent | | | | |")
                continue
            for path in sorted(folder.glob("*.nii*")):
                found = True
                try:
                    image = read(path)
                    array = image.array
                    z0 = 0
                    if keep is not None and array.ndim == 3 and array.shape[0] > keep:
                        z0 = (array.shape[0] - keep) // 2
                        image = image.replace(array=array[z0 : z0 + keep])
                    shown = {}
                    for name in ("bicubic", *checkpoints):
                        spec = "bicubic" if name == "bicubic" else str(checkpoints[name])
                        model = load_model(spec, scale=SCALE)
                        start = _now()
                        result = upscale_image(image, model, device="cpu")
                        seconds = _now() - start
                        shown[name] = result.image.array
                        fidelity = result.fidelity_psnr
                        value = "inf" if math.isinf(fidelity) else f"{fidelity:.2f}"
                        lines.append(
                            f"| {path.name} | {z0}-{z0 + image.array.shape[0] - 1} | {name} | "
                            f"{value} | {seconds:.1f} |"
                        )
                    self._thick_figure(path, image.array, shown, out)
                except MedsrError as error:
                    lines.append(f"| {path.name} | | | error: {error} | |")
        if not found:
            lines.append("")
            lines.append("No real thick volume was found under the data root.")
        lines += [
            "",
            "Figures: `thick-*.png` (input slice enlarged by nearest neighbour, "
            "bicubic and each model; one display window from the input's 0.5-99.5 "
            "percentiles).",
            "",
        ]
        (out / "thick-volumes.md").write_text("\n".join(lines), encoding="utf-8")
        log("thick volumes: consistency scores written")

    def _thick_figure(
        self, path: Path, array: np.ndarray, shown: Mapping[str, np.ndarray], out: Path
    ) -> None:
        from PIL import Image as PILImage
        from PIL import ImageDraw

        centre = array[array.shape[0] // 2] if array.ndim == 3 else array
        low, high = (float(v) for v in np.percentile(centre, [0.5, 99.5]))
        high = high if high > low else low + 1.0

        def to8(x: np.ndarray) -> np.ndarray:
            return (np.clip((x - low) / (high - low), 0, 1) * 255).astype(np.uint8)

        panels = [("input", np.kron(centre, np.ones((SCALE, SCALE))))]
        for name, volume in shown.items():
            plane = volume[volume.shape[0] // 2] if volume.ndim == 3 else volume
            panels.append((name, plane))
        # the central FIGURE_CROP x FIGURE_CROP output pixels, so that detail stays visible
        crop = []
        for name, plane in panels:
            h0 = max(0, (plane.shape[0] - FIGURE_CROP) // 2)
            w0 = max(0, (plane.shape[1] - FIGURE_CROP) // 2)
            crop.append((name, plane[h0 : h0 + FIGURE_CROP, w0 : w0 + FIGURE_CROP]))
        panels = crop
        h = max(p.shape[0] for _, p in panels)
        w = sum(p.shape[1] for _, p in panels)
        canvas = PILImage.new("L", (w, h + 16), 0)
        draw = ImageDraw.Draw(canvas)
        x = 0
        for name, plane in panels:
            canvas.paste(PILImage.fromarray(to8(plane)), (x, 16))
            draw.text((x + 4, 2), name, fill=255)
            x += plane.shape[1]
        stem = path.name.split(".")[0]
        canvas.save(out / f"thick-{stem}.png", optimize=True)


def _now() -> float:
    import time

    return time.perf_counter()


# ------------------------------------------------------------------------------ synthesis
def _subjects(data_root: Path) -> list[Path]:
    folder = data_root / "brain-mri-brats2013"
    if not folder.is_dir():
        raise ConfigError(f"data folder {folder} does not exist (set --data to the shared data)")
    subjects = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(subjects) < 2:
        raise ConfigError(f"{folder} needs at least 2 patient folders, found {len(subjects)}")
    return subjects


def _splits(subjects: list[str]) -> dict[str, str]:
    """The last subject is the test split, the one before validation, the rest training
    (the subject with the training split is always at least one)."""
    out = {s: "train" for s in subjects}
    out[subjects[-1]] = "test"
    if len(subjects) >= 3:
        out[subjects[-2]] = "val"
    return out


def _synthesise(source: Path, target: Path, limit: int | None) -> None:
    """Write ``target/thin`` and ``target/thick`` DICOM series from a 1 mm NIfTI volume."""
    from medsr.io import read, write
    from medsr.io.image import Image
    from medsr.transforms.degrade import along_axis, load_degradation

    volume = read(source)
    array = np.asarray(volume.array, dtype=np.float64)
    background = array[0, 0, 0]
    filled = [(plane != background).mean() > 0.01 for plane in array]
    rows = np.flatnonzero(filled)
    if rows.size == 0:
        raise ConfigError(f"{source}: every slice is blank")
    first, last = int(rows[0]), int(rows[-1]) + 1
    count = (last - first) // int(THICKNESS) * int(THICKNESS)
    if limit is not None:
        count = min(count, limit)
    if count < 3 * int(THICKNESS):
        raise ConfigError(f"{source}: fewer than {3 * int(THICKNESS)} non-blank slices")
    start = first + ((last - first) - count) // 2
    array = array[start : start + count]
    low, high = float(array.min()), float(array.max())
    stored = np.round((array - low) / max(high - low, 1e-12) * STORED_MAX).astype(np.float32)
    thin = Image(array=stored, spacing=(1.0, 1.0, 1.0), modality="MR")
    write(thin, target / "thin", overwrite=True)
    thin = read(target / "thin")
    degradation = load_degradation(Path("configs/degradations/thick_slice_5mm.yaml"))
    thick = along_axis(degradation, torch.from_numpy(thin.array.astype(np.float32)), axis=0)
    write(
        thin.regrid(np.round(thick.numpy())),
        target / "thick",
        like=thin,
        overwrite=True,
        description="synthesised 5 mm slices",
    )


def prepare_pairs(data_root: Path, folder: Path, profile: str, log: Log) -> ThickThin:
    """Synthesise (once) and pair the series; read them back into :class:`PairedVolume`."""
    from medsr.data.pairing import pair_series, series_slices, write_pairs
    from medsr.io import read
    from medsr.transforms.intensity import fit_normaliser

    subjects = _subjects(data_root)
    split_of = _splits([s.name for s in subjects])
    sequences = SEQUENCES[:1] if profile == "smoke" else SEQUENCES
    limit = 20 if profile == "smoke" else None
    series_root = folder / "series"
    volumes: list[PairedVolume] = []
    summary: list[dict[str, Any]] = []
    for subject in subjects:
        for sequence in sequences:
            sources = sorted(subject.glob(f"{sequence}*.nii*"))
            if not sources:
                continue
            target = series_root / subject.name / sequence
            done = target / "pairs.csv"
            if not done.is_file():
                log(f"synthesise {subject.name}/{sequence}: thin and 5 mm DICOM series")
                _synthesise(sources[0], target, limit)
                pairing = pair_series(
                    series_slices(target / "thick"), series_slices(target / "thin")
                )
                write_pairs(pairing, target / "pairs.tmp")
                (target / "pairs.tmp").replace(done)
            with open(done, encoding="utf-8") as handle:
                table = list(csv.DictReader(handle))
            pairs = [
                (int(r["lr_index"]), int(r["hr_index"]))
                for r in table
                if str(r.get("matched", "1")).lower() in ("1", "true", "yes")
            ]
            thin = read(target / "thin").array.astype(np.float32)
            thick = read(target / "thick").array.astype(np.float32)
            normaliser = fit_normaliser(thin, modality="MR")
            volumes.append(
                PairedVolume(
                    subject=subject.name,
                    name=f"{subject.name}/{sequence}",
                    split=split_of[subject.name],
                    thin=thin,
                    thick=thick,
                    pairs=pairs,
                    normaliser=normaliser,
                )
            )
            summary.append(
                {
                    "volume": f"{subject.name}/{sequence}",
                    "split": split_of[subject.name],
                    "thin_slices": len(thin),
                    "thick_slices": len(thick),
                    "pairs": len(pairs),
                }
            )
    if not volumes:
        raise ConfigError(f"no {'/'.join(sequences)} volume under {data_root}")
    (series_root / "pairs-summary.json").write_text(
        json.dumps(summary, indent=2) + "\n", encoding="utf-8"
    )
    return ThickThin(
        folder=folder, data_root=data_root, profile=profile, volumes=volumes, manifest=series_root
    )
