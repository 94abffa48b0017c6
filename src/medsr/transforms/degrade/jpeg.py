"""JPEG compression with Pillow, 8-bit, each channel as its own greyscale image."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from medsr.errors import ConfigError
from medsr.transforms.degrade.base import NoiseStage, Seed, _from4d, _is_range, _to4d, as_generator


# -- JPEG --------------------------------------------------------------------------------------
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().numpy()


def _jpeg_roundtrip(plane: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    mode = "RGB" if plane.ndim == 3 else "L"
    Image.fromarray(plane, mode=mode).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert(mode))


def jpeg(
    x: torch.Tensor,
    quality: int | tuple[int, int],
    *,
    generator: Seed | None = None,
    color: bool = False,
) -> torch.Tensor:
    """JPEG compression with Pillow at ``quality`` (1..100), or a range drawn per image.

    The image is quantised to 8 bits first (JPEG baseline is 8-bit; 12/16-bit medical data
    lose their extra precision here). Each channel is coded as its own greyscale image, so
    the slices of a 2.5D stack do not bleed into each other; ``color=True`` codes 3-channel
    images as RGB (with chroma subsampling). Output on the 1/255 grid, in [0, 1].
    """
    x4, nd = _to4d(x, "jpeg")
    if _is_range(quality):
        g = as_generator(generator, what="jpeg with a quality range")
        lo, hi = int(quality[0]), int(quality[1])  # type: ignore[index]
        qualities = torch.randint(lo, hi + 1, (x4.shape[0],), generator=g, device=g.device)
        qs = [int(q) for q in qualities]
    else:
        qs = [int(quality)] * x4.shape[0]  # type: ignore[arg-type]
    for q in qs:
        if not 1 <= q <= 100:
            raise ConfigError(f"jpeg: quality must be in 1..100, got {q}")
    planes = _to_uint8(x4)
    out = np.empty_like(planes)
    for b, q in enumerate(qs):
        if color and planes.shape[1] == 3:
            out[b] = _jpeg_roundtrip(
                np.ascontiguousarray(planes[b].transpose(1, 2, 0)), q
            ).transpose(2, 0, 1)
        else:
            for c in range(planes.shape[1]):
                out[b, c] = _jpeg_roundtrip(planes[b, c], q)
    y = torch.from_numpy(out).to(device=x4.device, dtype=x4.dtype) / 255.0
    return _from4d(y, nd)


@dataclass(frozen=True)
class JPEGCompression(NoiseStage):
    """JPEG compression with Pillow (see :func:`jpeg`)."""

    name: ClassVar[str] = "jpeg"
    function: ClassVar = staticmethod(jpeg)
    quality: int | tuple[int, int] = (30, 95)
    color: bool = False

    def _check(self) -> None:
        values = self.quality if isinstance(self.quality, tuple) else (self.quality,)
        if any(not 1 <= q <= 100 for q in values) or values[0] > values[-1]:
            raise ConfigError(f"jpeg.quality must be in 1..100 (or [low, high]), got {values}")
