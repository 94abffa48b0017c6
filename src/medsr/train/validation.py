"""Validation: PSNR and SSIM in physical units on whole validation slices, and image panels.

For each validation slice (``lr`` ``(C, h, w)``, ``hr`` ``(1, H, W)`` in [0, 1], optional
``normaliser`` dict):

1. ``sr = G(lr)`` (the EMA generator when EMA is on), in eval mode, without gradients;
2. when the slice's normaliser clips (``clip: true``, the default) SR is clamped to [0, 1],
   the range the normalised HR lives in; an unclipped normaliser leaves SR as it is;
3. SR and HR are mapped back to physical units with ``normaliser.inverse`` (HU, scanner
   units, stored X-ray values);
4. ``data_range`` is the width of the normaliser's window, ``high - low`` of
   ``normaliser.bounds``: the CT window, the MR percentile range of the volume, the X-ray bit
   depth. It is fixed per volume (the HR's own min-max would change with the slice content and
   make slices incomparable). Without a normaliser, values are taken as they are, with
   ``data_range`` 1.

Reported: the mean over slices of ``psnr`` and ``ssim`` (``medsr.metrics``, float64, valid
SSIM window), the same for bicubic upsampling of the LR's centre channel (``psnr_bicubic``,
``ssim_bicubic``) as a reference point, and ``slices``. Panels are ``[LR (nearest) | bicubic
| SR | HR]`` in [0, 1] grey levels, saved as 8-bit PNG.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from medsr.metrics import psnr, ssim
from medsr.train.data import centre_crop_pair
from medsr.transforms.intensity import normaliser_from_dict

__all__ = ["ValidationResult", "save_panel", "validate"]

_SSIM_MIN = 11


@dataclass
class ValidationResult:
    """Mean metrics over the validation slices and the image panels of the first few."""

    metrics: dict[str, float] = field(default_factory=dict)
    panels: list[tuple[int, np.ndarray]] = field(default_factory=list)


def _to_physical(x: torch.Tensor, normaliser: Any) -> torch.Tensor:
    if normaliser is None:
        return x
    return normaliser.inverse(x)


def _scores(sr: torch.Tensor, hr: torch.Tensor, record: Any) -> tuple[float, float]:
    normaliser = normaliser_from_dict(record) if record is not None else None
    if normaliser is None or normaliser.clip:
        sr = sr.clamp(0.0, 1.0)
    width = 1.0
    if normaliser is not None:
        low, high = normaliser.bounds
        width = float(high - low)
    sr_p = _to_physical(sr.double(), normaliser)
    hr_p = _to_physical(hr.double(), normaliser)
    p = float(psnr(sr_p, hr_p, data_range=width)[0])
    s = math.nan
    if min(hr.shape[-2:]) >= _SSIM_MIN:
        s = float(ssim(sr_p, hr_p, data_range=width)[0])
    return p, s


def _grey8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def _panel(
    lr_up: torch.Tensor, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor
) -> np.ndarray:
    images = [_grey8(t[0, 0].float().cpu()) for t in (lr_up, bicubic, sr, hr)]
    gap = np.full((images[0].shape[0], 2), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, image in enumerate(images):
        if i:
            parts.append(gap)
        parts.append(image)
    return np.concatenate(parts, axis=1)


def save_panel(panel: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(panel).save(path)


@torch.no_grad()
def validate(
    generator: nn.Module,
    dataset: Dataset,
    indices: Sequence[int],
    *,
    factors: tuple[int, int],
    device: torch.device,
    crop: int | None = None,
    num_images: int = 0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
) -> ValidationResult:
    """Run ``generator`` on ``dataset[i]`` for ``i`` in ``indices`` (see the module doc)."""
    was_training = generator.training
    generator.eval()
    result = ValidationResult()
    sums = {"psnr": 0.0, "ssim": 0.0, "psnr_bicubic": 0.0, "ssim_bicubic": 0.0}
    counts = dict.fromkeys(sums, 0)
    try:
        for n, index in enumerate(indices):
            item = dataset[index]
            lr, hr = centre_crop_pair(item["lr"], item["hr"], crop, factors)
            lr = lr[None].to(device)
            hr = hr[None].float()
            if channels_last:
                lr = lr.contiguous(memory_format=torch.channels_last)
            with autocast():
                sr = generator(lr)
            sr = sr.float().cpu()
            centre = lr[:, lr.shape[1] // 2 : lr.shape[1] // 2 + 1].float().cpu()
            bicubic = F.interpolate(centre, size=hr.shape[-2:], mode="bicubic", align_corners=False)
            record = item.get("normaliser")
            for suffix, image in (("", sr), ("_bicubic", bicubic)):
                p, s = _scores(image, hr, record)
                for name, value in ((f"psnr{suffix}", p), (f"ssim{suffix}", s)):
                    if not math.isnan(value):  # identical images give +inf PSNR: kept
                        sums[name] += value
                        counts[name] += 1
            if n < num_images:
                nearest = F.interpolate(centre, size=hr.shape[-2:], mode="nearest")
                result.panels.append((int(index), _panel(nearest, bicubic, sr, hr)))
    finally:
        generator.train(was_training)
    result.metrics = {k: (sums[k] / counts[k] if counts[k] else math.nan) for k in sums}
    result.metrics["slices"] = float(len(indices))
    return result
