"""Fidelity to the low-resolution input: degrade the SR output again and compare with LR.

A super-resolved image should explain its input: applying the acquisition model
(blur + downsampling) that produced ``lr`` from the true image to ``sr`` should give back
``lr``. Structure that the network invented and that survives the degradation (a bright
spot, an edge, a texture coarser than the LR pixels) makes ``degrade(sr)`` differ from
``lr`` and lowers the consistency PSNR. Structure in the null space of the degradation
(for instance a checkerboard finer than the LR pixels under area averaging) is invisible
to this check by construction: a high consistency PSNR is necessary, not sufficient.

Pass the deterministic part of the degradation (blur and downsampling, not the noise):
with noise in ``degrade`` the check measures the noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from medsr.errors import ConfigError
from medsr.metrics.core import ArrayLike, DataRange, as_batch, psnr, to_4d

__all__ = ["consistency_psnr"]


def consistency_psnr(
    sr: ArrayLike,
    lr: ArrayLike,
    *,
    degrade: Callable[[Tensor], Tensor],
    data_range: DataRange,
) -> Tensor:
    """PSNR of ``degrade(sr)`` against ``lr`` in dB; ``(B,)``, higher is more consistent.

    Args:
        sr: super-resolved image, ``(B, C, sH, sW)``, ``(C, sH, sW)`` or ``(sH, sW)``,
            tensor or numpy array.
        lr: the low-resolution input the SR was made from, ``(B, C, H, W)`` (same rules).
        degrade: the degradation that made ``lr`` from a high-resolution image, as a
            callable from ``(B, C, sH, sW)`` to ``(B, C, H, W)``. It receives ``sr`` as a
            4-dimensional tensor of its own floating dtype (numpy and integer inputs as
            float64), so a degradation module with float32 buffers works unchanged.
        data_range: width of the value range (or ``(low, high)``), as for :func:`psnr`.

    ``+inf`` means ``degrade(sr)`` reproduces ``lr`` exactly (as the true HR image does
    when ``lr`` was made without noise).
    """
    # a floating tensor keeps its dtype and device for degrade; anything else -> float64
    x = to_4d(sr, "sr") if isinstance(sr, Tensor) and sr.is_floating_point() else as_batch(sr)
    target = as_batch(lr, name="lr")
    with torch.no_grad():
        again = degrade(x)
    if not isinstance(again, Tensor):
        raise ConfigError(f"degrade must return a torch.Tensor, got {type(again).__name__}")
    if again.shape != target.shape:
        raise ConfigError(
            f"degrade(sr) has shape {tuple(again.shape)} but lr has {tuple(target.shape)}; "
            "pass the degradation that made lr from an image of sr's size"
        )
    return psnr(again, target.to(again.device), data_range=data_range)
