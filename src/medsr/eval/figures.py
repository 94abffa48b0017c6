"""Figure grids: LR, each method and HR side by side, a zoomed inset, absolute error maps.

Layout of :func:`figure_grid` (one column per image, LR first and HR last):

1. the whole slice in the HR display window, with the inset's box drawn in;
2. the inset enlarged (nearest neighbour, so pixels stay visible);
3. ``|SR - HR|`` for every method on one shared colour scale (0 to the 99.5th percentile of
   all methods' errors, so that a few extreme pixels do not wash the maps out), with a
   colour bar in physical units.

The inset is given, or found by :func:`detail_box`: the square of highest HR gradient
energy that lies (almost) entirely in the foreground. matplotlib is imported only here,
and only when a figure is drawn (no pyplot, no global backend change). PNGs are quantised
to a 256-colour palette to keep them small.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from medsr.errors import ConfigError

__all__ = ["Box", "GridFigure", "detail_box", "figure_grid", "quantise_png"]

Box = tuple[int, int, int]
"""``(top, left, size)`` of a square in HR pixels."""


def _window_sums(x: np.ndarray, size: int) -> np.ndarray:
    """Sum of ``x`` over every ``size`` x ``size`` window: ``(H - size + 1, W - size + 1)``."""
    c = np.zeros((x.shape[0] + 1, x.shape[1] + 1), dtype=np.float64)
    c[1:, 1:] = np.cumsum(np.cumsum(x, axis=0, dtype=np.float64), axis=1)
    return c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]


def detail_box(
    hr: np.ndarray,
    *,
    size: int,
    foreground: np.ndarray | None = None,
    min_foreground: float = 0.9,
    multiple: int = 1,
    margin: int | None = None,
) -> Box:
    """The ``size`` x ``size`` square of ``hr`` ``(H, W)`` with the highest gradient energy
    (sum of squared finite differences) among squares with at least ``min_foreground`` of
    their pixels in ``foreground`` (all squares when none qualifies or without a
    foreground). ``multiple``: top and left are multiples of it (the scale, so the inset
    falls on whole LR pixels). ``margin``: pixels kept between the square and the image
    border (default ``size // 4``; the outermost pixels carry the interpolations' border
    effects rather than detail), dropped when the image is too small for it. Ties go to the
    first square in raster order."""
    hr = np.asarray(hr, dtype=np.float64)
    if hr.ndim != 2:
        raise ConfigError(f"detail_box needs an (H, W) image, got shape {hr.shape}")
    h, w = hr.shape
    if not 1 <= size <= min(h, w):
        raise ConfigError(f"inset size {size} must be between 1 and {min(h, w)} for {h}x{w}")
    gy, gx = np.gradient(hr)
    energy = _window_sums(gx * gx + gy * gy, size)
    candidates = np.zeros(energy.shape, dtype=bool)
    candidates[::multiple, ::multiple] = True
    margin = size // 4 if margin is None else margin
    inner = np.zeros(energy.shape, dtype=bool)
    inner[margin : energy.shape[0] - margin, margin : energy.shape[1] - margin] = True
    if (candidates & inner).any():
        candidates &= inner
    if foreground is not None:
        fg = _window_sums(np.asarray(foreground, dtype=np.float64), size) / (size * size)
        good = candidates & (fg >= min_foreground)
        if good.any():
            candidates = good
    scores = np.where(candidates, energy, -np.inf)
    top, left = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(top), int(left), int(size)


@dataclass(frozen=True)
class GridFigure:
    """A drawn grid: the PNG bytes and the top of the shared error colour scale."""

    png: bytes = field(repr=False)
    error_max: float


def quantise_png(png: bytes, *, colors: int = 256) -> bytes:
    """The PNG re-encoded with an adaptive palette of ``colors`` colours (much smaller for
    figures of grey images and a colour map), optimised."""
    from PIL import Image as PILImage

    with PILImage.open(io.BytesIO(png)) as im:
        palette = im.convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def figure_grid(
    *,
    lr: np.ndarray,
    outputs: Sequence[tuple[str, np.ndarray]],
    hr: np.ndarray,
    window: tuple[float, float],
    box: Box,
    title: str = "",
    labels: Mapping[str, str] | None = None,
    units: str = "",
    panel_inches: float = 1.9,
    dpi: int = 80,
    error_percentile: float = 99.5,
) -> GridFigure:
    """The figure as palette-quantised PNG bytes, with the top of the error colour scale.

    Args:
        lr: ``(h, w)`` LR slice, physical units.
        outputs: ``(name, sr)`` per method, ``sr`` ``(H, W)`` physical units.
        hr: ``(H, W)`` ground truth, physical units.
        window: display window ``(low, high)`` of every image panel.
        box: the inset ``(top, left, size)`` in HR pixels.
        title: figure title.
        labels: a second title line per name (e.g. ``"30.12 dB / 0.9123"``).
        units: unit of the error colour bar.
    """
    from matplotlib.figure import Figure as MplFigure
    from matplotlib.patches import Rectangle

    hr = np.asarray(hr, dtype=np.float64)
    lr = np.asarray(lr, dtype=np.float64)
    big_h, big_w = hr.shape
    sy, sx = big_h / lr.shape[0], big_w / lr.shape[1]
    top, left, size = box
    if top < 0 or left < 0 or top + size > big_h or left + size > big_w:
        raise ConfigError(f"inset {box} lies outside the {big_h}x{big_w} image")
    for name, sr in outputs:
        if np.shape(sr) != hr.shape:
            raise ConfigError(f"{name}: SR shape {np.shape(sr)} differs from HR {hr.shape}")
    labels = dict(labels or {})
    columns: list[tuple[str, np.ndarray | None]] = [("LR (input)", None)]
    columns += [(name, np.asarray(sr, dtype=np.float64)) for name, sr in outputs]
    columns.append(("HR (ground truth)", hr))
    errors = [np.abs(sr - hr) for _, sr in outputs]
    pooled = np.concatenate([e.ravel() for e in errors]) if errors else np.zeros(1)
    vmax = float(np.percentile(pooled, error_percentile)) if pooled.size else 1.0
    if not vmax > 0:
        vmax = float(pooled.max()) if pooled.size and pooled.max() > 0 else 1.0
    vmin_img, vmax_img = window

    ncols = len(columns)
    aspect = big_h / big_w
    fig = MplFigure(
        figsize=(panel_inches * ncols + 0.9, panel_inches * (2 + aspect) + 0.7), dpi=dpi
    )
    grid = fig.add_gridspec(
        3,
        ncols + 1,
        width_ratios=[1] * ncols + [0.06],
        height_ratios=[aspect, 1, aspect],
        hspace=0.12,
        wspace=0.04,
        left=0.04,
        right=0.94,
        top=0.86 if title else 0.92,
        bottom=0.02,
    )
    image_kw = {"cmap": "gray", "vmin": vmin_img, "vmax": vmax_img, "interpolation": "nearest"}
    error_image = None
    for col, (name, image) in enumerate(columns):
        full = fig.add_subplot(grid[0, col])
        zoom = fig.add_subplot(grid[1, col])
        err = fig.add_subplot(grid[2, col])
        for ax in (full, zoom, err):
            ax.set_xticks([])
            ax.set_yticks([])
        if image is None:  # the LR input, drawn on the HR grid so the box lines up
            full.imshow(lr, extent=(-0.5, big_w - 0.5, big_h - 0.5, -0.5), **image_kw)
            t0, l0 = int(top / sy), int(left / sx)
            t1, l1 = int(np.ceil((top + size) / sy)), int(np.ceil((left + size) / sx))
            zoom.imshow(lr[t0:t1, l0:l1], **image_kw)
            err.axis("off")
            err.text(
                0.5,
                0.5,
                "absolute error\n|SR − HR|\n(one colour scale)",
                ha="center",
                va="center",
                fontsize=7.5,
                transform=err.transAxes,
            )
        else:
            full.imshow(image, **image_kw)
            zoom.imshow(image[top : top + size, left : left + size], **image_kw)
            if col < ncols - 1:
                error_image = err.imshow(
                    errors[col - 1], cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest"
                )
            else:
                err.axis("off")
        full.add_patch(
            Rectangle(
                (left - 0.5, top - 0.5), size, size, fill=False, edgecolor="yellow", linewidth=1.0
            )
        )
        heading = name if name not in labels else f"{name}\n{labels[name]}"
        full.set_title(heading, fontsize=7.5)
        if col == 0:
            full.set_ylabel("slice", fontsize=7.5)
            zoom.set_ylabel(f"inset x{big_h / size:.1f}", fontsize=7.5)
    if error_image is not None:
        cax = fig.add_subplot(grid[2, ncols])
        bar = fig.colorbar(error_image, cax=cax)
        bar.ax.tick_params(labelsize=6.5)
        bar.set_label(f"|SR − HR| {units}".strip(), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=8.5)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return GridFigure(quantise_png(buffer.getvalue()), vmax)
