"""Make docs/img/degradations.png: every degradation on a real MRI slice.

    .venv/bin/python benchmarks/make_degradation_figure.py [--data ../shared/data] [--out PATH]

The slice is the BraTS FLAIR of pat0003 (CC BY-NC-SA 3.0 Switzerland, see
../shared/data/brain-mri-brats2013/LICENSE-CC-BY-NC-SA-3.0.txt); the figure is a derivative
under the same license. Each LR image is enlarged back with nearest neighbour so its pixels
stay visible. Only Pillow is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from medsr.transforms import degrade as D
from medsr.transforms.intensity import fit_normaliser

REPO = Path(__file__).resolve().parents[1]
PANEL = 240
LABEL = 22
COLUMNS = 5


def nearest_up(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 (size), enlarged by pixel repetition."""
    h, w = x.shape
    rows = np.repeat(np.arange(h), size[0] // h)
    cols = np.repeat(np.arange(w), size[1] // w)
    return (x.clamp(0, 1).numpy()[np.ix_(rows, cols)] * 255).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "degradations.png")
    args = parser.parse_args(argv)
    import nibabel

    path = args.data / "brain-mri-brats2013" / "pat0003" / "Flair_subtrMeanDivStd.nii.gz"
    if not path.is_file():
        print(f"{path} not found", file=sys.stderr)
        return 1
    volume = np.asarray(nibabel.load(path).get_fdata(dtype=np.float32))  # (X, Y, Z), RAS
    unit = torch.from_numpy(fit_normaliser(volume, modality="MR").forward(volume))
    axial = unit[:, :, 80].T.contiguous()  # LPS volume: anterior at the top, right on the left
    sagittal = unit[112, :, :].T.flip(0).contiguous()  # (Z, Y): superior at the top

    panels: list[tuple[str, np.ndarray]] = [
        ("HR: BraTS FLAIR 240x240", nearest_up(axial, (240, 240)))
    ]

    def add(label: str, lr: torch.Tensor) -> None:
        panels.append((label, nearest_up(lr, (PANEL, PANEL))))

    add("bicubic x4 (antialiased)", D.bicubic(axial, 4))
    add("bilinear x4 (no antialias)", D.bilinear(axial, 4))
    add("Gaussian blur x4, sigma 1.7", D.blur_downsample(axial, 4))
    add("k-space x4, no window", D.kspace_truncate(axial, 4))
    add("k-space x4, Hamming", D.kspace_truncate(axial, 4, window="hamming"))
    add("Rician noise, SNR 10", D.rician_noise(axial, 10.0, generator=0))
    add("Gaussian noise, sigma 0.05", D.gaussian_noise(axial, 0.05, generator=0))
    add("Poisson noise, peak 100", D.poisson_noise(axial, 100.0, generator=0))
    add("JPEG quality 10", D.jpeg(axial, 10))
    real = D.build_degradation({"name": "realesrgan", "scale": 4})
    add("Real-ESRGAN x4, seed 0", real(axial, generator=0))
    add("Real-ESRGAN x4, seed 3", real(axial, generator=3))
    mri = D.load_degradation(REPO / "configs" / "degradations" / "mri_kspace_x2.yaml")
    add("mri_kspace_x2.yaml (seed 0)", mri(axial, generator=0))
    # sagittal: 155 slices of 1 mm -> 31 thick slices of 5 mm along Z (the rows)
    thick = D.thick_slices(sagittal, thickness=5.0, axis=0)
    pad = (PANEL - sagittal.shape[0]) // 2
    canvas = np.zeros((PANEL, PANEL), np.uint8)
    canvas[pad : pad + 155] = nearest_up(sagittal, (155, 240))
    panels.append(("sagittal HR, 1 mm slices", canvas.copy()))
    canvas[pad : pad + 155] = nearest_up(thick, (155, 240))
    panels.append(("thick slices 5 mm (Gaussian)", canvas))

    rows = -(-len(panels) // COLUMNS)
    figure = Image.new("L", (COLUMNS * PANEL, rows * (PANEL + LABEL)), color=255)
    draw = ImageDraw.Draw(figure)
    font = ImageFont.load_default(size=14)
    for i, (label, pixels) in enumerate(panels):
        x, y = (i % COLUMNS) * PANEL, (i // COLUMNS) * (PANEL + LABEL)
        draw.text((x + 4, y + 3), label, fill=0, font=font)
        figure.paste(Image.fromarray(pixels, mode="L"), (x, y + LABEL))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB, {len(panels)} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
