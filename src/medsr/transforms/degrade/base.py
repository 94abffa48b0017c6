"""What every degradation shares: the conventions' helpers and the :class:`Stage` base.

Shapes, scale pairs, the divisibility check, reflect padding and the random draws (all from
an explicit ``torch.Generator``) live here so each family module applies them the same way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from medsr.errors import ConfigError
from medsr.schema import convert

Scale = int | tuple[int, int]
Seed = torch.Generator | int
Range = float | tuple[float, float]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548...


# -- small helpers -----------------------------------------------------------------------------
def as_generator(seed: Seed | None, *, what: str = "this degradation") -> torch.Generator:
    """``torch.Generator`` from a generator (returned as is) or an integer seed."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return torch.Generator().manual_seed(int(seed))
    raise ConfigError(
        f"{what} is random: pass generator= a torch.Generator or an int seed, got {seed!r}"
    )


def _to4d(x: torch.Tensor, op: str) -> tuple[torch.Tensor, int]:
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{op}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ConfigError(
            f"{op}: expected a float tensor in [0, 1], got dtype {x.dtype}; "
            "normalise it first (medsr.transforms.intensity)"
        )
    if x.ndim == 2:
        return x[None, None], 2
    if x.ndim == 3:
        return x[None], 3
    if x.ndim == 4:
        return x, 4
    raise ConfigError(
        f"{op}: expected shape (H, W), (C, H, W) or (B, C, H, W), got {tuple(x.shape)}; "
        "use along_axis() or slicewise() for volumes"
    )


def _from4d(y: torch.Tensor, ndim: int, *, clip: bool = False) -> torch.Tensor:
    """Back to the input's ``ndim`` dimensions; ``clip`` clamps to [0, 1] first (for steps
    that overshoot: cubic lobes, ringing, noise)."""
    if clip:
        y = y.clamp(0.0, 1.0)
    if ndim == 2:
        return y[0, 0]
    if ndim == 3:
        return y[0]
    return y


def _pair(scale: Scale, op: str) -> tuple[int, int]:
    if isinstance(scale, int) and not isinstance(scale, bool):
        pair = (scale, scale)
    elif (
        isinstance(scale, tuple | list)
        and len(scale) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in scale)
    ):
        pair = (int(scale[0]), int(scale[1]))
    else:
        raise ConfigError(f"{op}: scale must be an int or a pair of ints, got {scale!r}")
    if min(pair) < 1:
        raise ConfigError(f"{op}: scale must be >= 1, got {scale!r}")
    return pair


def _check_divisible(x4: torch.Tensor, factors: tuple[int, int], op: str) -> None:
    h, w = x4.shape[-2:]
    if h % factors[0] or w % factors[1]:
        raise ConfigError(
            f"{op}: HR shape {tuple(x4.shape)} is not divisible by the scale {factors} "
            f"(H, W); crop it first, e.g. crop_to_multiple(x, {factors})"
        )


def _to4d_scaled(
    x: torch.Tensor, scale: Scale, op: str
) -> tuple[torch.Tensor, int, tuple[int, int]]:
    """``x`` as ``(B, C, H, W)``, its number of dimensions and the scale pair dividing H, W."""
    x4, nd = _to4d(x, op)
    factors = _pair(scale, op)
    _check_divisible(x4, factors, op)
    return x4, nd, factors


def crop_to_multiple(
    x: torch.Tensor | np.ndarray,
    multiple: int | Sequence[int],
    *,
    dims: Sequence[int] = (-2, -1),
) -> torch.Tensor | np.ndarray:
    """Crop ``x`` along ``dims`` to the largest multiple of ``multiple`` (per dim or for all).

    The first rows/columns are kept and the excess is dropped at the end, so index 0 (the
    image origin) stays where it was. Works on tensors and numpy arrays; returns a view.
    """
    dims = tuple(dims)
    mults = (
        (multiple,) * len(dims) if isinstance(multiple, int) else tuple(int(m) for m in multiple)
    )
    if len(mults) != len(dims) or min(mults) < 1:
        raise ConfigError(f"crop_to_multiple: need {len(dims)} positive multiples, got {multiple}")
    index: list[slice] = [slice(None)] * x.ndim
    for d, m in zip(dims, mults, strict=True):
        n = x.shape[d]
        if n < m:
            raise ConfigError(f"crop_to_multiple: axis {d} of shape {tuple(x.shape)} is < {m}")
        index[d] = slice(0, n - n % m)
    return x[tuple(index)]


def _pad(x4: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding (no dark border), replicate where the image is too small to reflect."""
    if not any(pad):
        return x4
    h, w = x4.shape[-2:]
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return F.pad(x4, pad, mode=mode)


def _randn(shape: Sequence[int], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    # Drawn on the generator's device and moved, so a CPU generator also drives CUDA data.
    return torch.randn(tuple(shape), generator=g, device=g.device, dtype=like.dtype).to(like.device)


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g, device=g.device))


def _per_sample(spec: Range, n: int, g: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """One value per batch element, shape (B, 1, 1, 1): the constant or uniform in the range."""
    if isinstance(spec, tuple | list):
        assert g is not None
        lo, hi = float(spec[0]), float(spec[1])
        u = torch.rand(n, generator=g, device=g.device, dtype=torch.float64)
        values = lo + (hi - lo) * u
    else:
        values = torch.full((n,), float(spec), dtype=torch.float64)
    return values.to(device=like.device, dtype=like.dtype).view(n, 1, 1, 1)


def _is_range(spec: Range) -> bool:
    return isinstance(spec, tuple | list)


def _choice(g: torch.Generator, probs: Sequence[float]) -> int:
    p = torch.tensor(list(probs), dtype=torch.float64)
    return int(torch.multinomial(p / p.sum(), 1, generator=g))


# -- config coercion ---------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


# -- stages ------------------------------------------------------------------------------------
class Stage:
    """One step of a :class:`Degradation` (a frozen dataclass of its YAML parameters).

    ``name`` is its key in :data:`DEGRADATIONS`; ``random`` says whether it draws random
    numbers; ``is_noise`` whether :meth:`Degradation.downsample_only` drops it.
    """

    name: ClassVar[str]
    random: ClassVar[bool] = False
    is_noise: ClassVar[bool] = False
    function: ClassVar[Callable[..., torch.Tensor] | None] = None

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = convert(getattr(self, f.name), hints[f.name], f"{self.name}.{f.name}")
            object.__setattr__(self, f.name, value)
        self._check()

    def _check(self) -> None:
        """Range checks beyond the types (raise ConfigError)."""

    def factors(self) -> tuple[int, int]:
        """How many HR pixels per LR pixel along (H, W)."""
        return (1, 1)

    def apply(self, x4: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Degrade ``x4`` ``(B, C, H, W)``: :attr:`function` called with the stage's fields as
        keyword arguments (and ``generator=`` for a random stage), so a stage's parameters
        and its function's are one list. Stages without one function override this."""
        if self.function is None:
            raise NotImplementedError(f"{type(self).__name__} has no function; override apply()")
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        if self.random:
            kwargs["generator"] = generator
        return self.function(x4, **kwargs)

    def deterministic(self) -> Stage | None:
        """The noise-free counterpart used by ``downsample_only`` (None: drop the stage)."""
        return None if self.is_noise else self

    def to_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            cfg[f.name] = _plain(getattr(self, f.name))
        return cfg


class ScaledStage(Stage):
    """A stage that resamples the in-plane axes by its ``scale`` field (an int or a pair)."""

    scale: Scale

    def _check(self) -> None:
        self.factors()

    def factors(self) -> tuple[int, int]:
        return _pair(self.scale, self.name)


class NoiseStage(Stage):
    """A random stage that :meth:`Degradation.downsample_only` drops (noise, compression)."""

    random: ClassVar[bool] = True
    is_noise: ClassVar[bool] = True


def _check_range(name: str, value: Range, *, low: float, inclusive: bool = False) -> None:
    values = value if isinstance(value, tuple) else (value,)
    bad = [v for v in values if (v < low if inclusive else v <= low)]
    if bad or (isinstance(value, tuple) and value[0] > value[1]):
        op = ">=" if inclusive else ">"
        raise ConfigError(f"{name} must be {op} {low} (a range as [low, high]), got {value!r}")
