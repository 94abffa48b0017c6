"""Through-plane super-resolution of a thick-slice volume with a 2D in-plane model.

A thick-slice volume ``(Z, Y, X)`` is coarse along Z only. The 2D model sees the two stacks
of planes that contain Z: the ``(Z, X)`` planes (one per Y) and the ``(Z, Y)`` planes (one per
X). A 2D SR model upsamples both axes of each plane by ``s``; we keep the gain along Z and
bring the in-plane axis back to its original grid by averaging each group of ``s`` output
pixels (area averaging: the mean of the sub-pixels a pixel covers, which is how a coarser
pixel integrates a finer image, and which keeps the mean intensity). The two orientations
are averaged, which cancels their direction-specific artefacts. Result: ``(s*Z, Y, X)``.

This follows the multi-orientation idea of SMORE (Zhao et al., 2019/2021) with a model
trained on in-plane data; the later self-supervised task trains the 2D model on the
volume's own in-plane slices and reuses :func:`through_plane` unchanged.

The 2D part is a callable ``sr_stack(stack, reduce) -> out``: ``stack`` is ``(N, 1, H, W)``
(``H`` = the slice axis), ``reduce`` maps a ``(b, 1, s*H, s*W)`` model output to ``(b, 1,
s*H, W)``, and ``out`` is ``(N, 1, s*H, W)``. :func:`medsr.infer.upscale.super_resolve_stack`
is one (tiling, batching, 2.5D neighbours, self-ensemble); any function with this contract
works.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from medsr.errors import ConfigError

__all__ = ["StackSR", "area_reduce", "planes_count", "through_plane"]

StackSR = Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor]
"""``sr_stack(stack (N, 1, H, W), reduce) -> (N, 1, s*H, W)``."""


def area_reduce(y: Tensor, scale: int, *, dim: int = -1) -> Tensor:
    """Average each run of ``scale`` samples along ``dim``: ``(..., s*W) -> (..., W)``."""
    if y.shape[dim] % scale:
        raise ConfigError(
            f"area_reduce: size {y.shape[dim]} along {dim} is not a multiple of {scale}"
        )
    dim %= y.ndim
    return y.unflatten(dim, (-1, scale)).mean(dim + 1)


def through_plane(volume: Tensor, sr_stack: StackSR, *, scale: int, axis: int = 0) -> Tensor:
    """Super-resolve ``volume`` (3D, normalised) along ``axis`` by ``scale``; the other two
    axes keep their size. ``(Z, Y, X) -> (s*Z, Y, X)`` for ``axis=0``."""
    if volume.ndim != 3:
        raise ConfigError(
            f"through-plane SR needs a volume (Z, Y, X), got shape {tuple(volume.shape)}"
        )
    axis %= 3
    vol = volume.movedim(axis, 0)  # (Z, A, B)
    z, a, b = vol.shape

    def reduce(y: Tensor) -> Tensor:
        return area_reduce(y, scale, dim=-1)

    # (Z, B) planes, one per A: stack (A, 1, Z, B) -> (A, 1, sZ, B) -> (sZ, A, B)
    first = sr_stack(vol.permute(1, 0, 2).unsqueeze(1), reduce)
    _check(first, (a, 1, scale * z, b))
    result = first[:, 0].permute(1, 0, 2).contiguous()
    del first
    # (Z, A) planes, one per B: stack (B, 1, Z, A) -> (B, 1, sZ, A) -> (sZ, A, B)
    second = sr_stack(vol.permute(2, 0, 1).unsqueeze(1), reduce)
    _check(second, (b, 1, scale * z, a))
    result.add_(second[:, 0].permute(1, 2, 0)).mul_(0.5)
    return result.movedim(0, axis)


def _check(out: Tensor, expected: tuple[int, ...]) -> None:
    if tuple(out.shape) != expected:
        raise ConfigError(
            f"sr_stack returned shape {tuple(out.shape)}, expected {expected} "
            "(the in-plane axis reduced back to its size)"
        )


def planes_count(shape: tuple[int, int, int], axis: int = 0) -> tuple[int, int]:
    """Number of planes in the two stacks of :func:`through_plane` for a volume ``shape``."""
    dims = [shape[i] for i in range(3) if i != axis % 3]
    return dims[0], dims[1]
