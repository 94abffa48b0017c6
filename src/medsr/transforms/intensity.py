"""Invertible per-modality intensity normalisation to [0, 1] and back.

Every normaliser is a small frozen dataclass holding an affine map ``y = (x - low) / (high -
low)`` in physical units (HU for CT, scanner units for MR, stored values for X-ray):

* :class:`CTWindow`: a window in HU, by default the wide ``-1024..3071`` (the 12-bit CT
  range), or a named one from :data:`CT_WINDOWS` (``lung``, ``mediastinum``, ``bone``,
  ``brain``, ``wide``).
* :class:`PercentileScaling`: MR, ``low``/``high`` are percentiles (0.5 / 99.5 by default)
  of the foreground of one volume, fitted with :func:`fit_normaliser`.
* :class:`BitDepthScaling`: X-ray, by bits stored: ``0 .. 2**bits - 1`` (or the signed range).
* :class:`MinMax`: generic, the array's minimum and maximum.

``forward`` maps to [0, 1] and ``inverse`` back, on numpy arrays or torch tensors (same
type out; integer input becomes float32). **Clipping is not invertible**: with
``clip=True`` (the default, so the degradations and models see [0, 1]) values outside
``[low, high]`` come back as ``low`` or ``high``. Use ``clip=False`` for an exactly invertible
linear map when values outside the window matter (e.g. CT metal above 3071 HU); the
normalised values may then leave [0, 1].

``to_dict()`` gives a JSON-serialisable dict with a ``"kind"`` key (e.g. ``{"kind":
"ct_window", "low": -1024.0, "high": 3071.0, "clip": true, "window": "wide"}``) that
:func:`normaliser_from_dict` reads back, so a manifest or a checkpoint's ``config.json`` can
store it and metrics can be computed in physical units after ``inverse``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import numpy as np

from medsr.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch: if torch is not loaded yet, no
    tensor can exist (this keeps ``medsr prepare`` and ``medsr --help`` free of torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


CT_WINDOWS: dict[str, tuple[float, float]] = {
    "wide": (-1024.0, 3071.0),  # the full 12-bit CT range
    "lung": (-1350.0, 150.0),  # level -600, width 1500
    "mediastinum": (-125.0, 225.0),  # level 50, width 350
    "bone": (-500.0, 1300.0),  # level 400, width 1800
    "brain": (0.0, 80.0),  # level 40, width 80
}
"""Named CT windows as ``(low, high)`` in HU (level -/+ width / 2)."""


def _affine(x: ArrayT, low: float, high: float, clip: bool) -> ArrayT:
    if _is_tensor(x):
        t = x if x.is_floating_point() else x.float()
        y = (t - low) / (high - low)
        return y.clamp(0.0, 1.0) if clip else y
    a = np.asarray(x)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    a = a.astype(dtype, copy=False)
    y = (a - dtype.type(low)) / dtype.type(high - low)
    return np.clip(y, 0.0, 1.0, out=y) if clip else y


def _affine_inverse(y: ArrayT, low: float, high: float) -> ArrayT:
    if _is_tensor(y):
        t = y if y.is_floating_point() else y.float()
        return t * (high - low) + low
    a = np.asarray(y)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    a = a.astype(dtype, copy=False)
    return a * dtype.type(high - low) + dtype.type(low)


class Normaliser:
    """Base of the normalisers: an invertible map from physical units to [0, 1]."""

    kind: ClassVar[str]
    clip: bool  # a field of every subclass

    @property
    def bounds(self) -> tuple[float, float]:
        """``(low, high)``: the physical values mapped to 0 and 1."""
        raise NotImplementedError

    def forward(self, x: ArrayT) -> ArrayT:
        """Physical units -> [0, 1] (clipped when ``clip``). Any shape; float32 for ints."""
        low, high = self.bounds
        return _affine(x, low, high, self.clip)

    def inverse(self, y: ArrayT) -> ArrayT:
        """[0, 1] -> physical units (exact inverse of ``forward`` inside ``[low, high]``)."""
        low, high = self.bounds
        return _affine_inverse(y, low, high)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"kind": ..., <fields>}``."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normaliser:
        """Inverse of :meth:`to_dict` (strict: unknown or missing keys raise ConfigError)."""
        if cls is Normaliser:
            return normaliser_from_dict(data)
        params = dict(data)
        kind = params.pop("kind", cls.kind)
        if kind != cls.kind:
            raise ConfigError(f"normaliser kind {kind!r} given to {cls.__name__} ({cls.kind!r})")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(params) - set(fields))
        missing = [
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and name not in params
        ]
        if unknown or missing:
            problems = []
            if unknown:
                problems.append(f"unknown key(s) {', '.join(map(repr, unknown))}")
            if missing:
                problems.append(f"missing key(s) {', '.join(map(repr, missing))}")
            raise ConfigError(
                f"normaliser {kind!r}: {'; '.join(problems)}; valid keys: kind, {', '.join(fields)}"
            )
        return cls(**params)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def _check_bounds(obj: Any, name: str) -> None:
    low = _number(obj.low, f"{name}.low")
    high = _number(obj.high, f"{name}.high")
    if not high > low:
        raise ConfigError(f"{name}: high must be > low, got low={low}, high={high}")
    object.__setattr__(obj, "low", low)
    object.__setattr__(obj, "high", high)
    object.__setattr__(obj, "clip", _flag(obj.clip, f"{name}.clip"))


@dataclass(frozen=True)
class CTWindow(Normaliser):
    """A CT window ``[low, high]`` in HU mapped to [0, 1]; ``window`` names it (or None)."""

    kind: ClassVar[str] = "ct_window"
    low: float = CT_WINDOWS["wide"][0]
    high: float = CT_WINDOWS["wide"][1]
    clip: bool = True
    window: str | None = "wide"

    def __post_init__(self) -> None:
        _check_bounds(self, "ct_window")
        if self.window is not None and not isinstance(self.window, str):
            raise ConfigError(f"ct_window.window must be a name or null, got {self.window!r}")

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high

    @classmethod
    def named(cls, window: str = "wide", *, clip: bool = True) -> CTWindow:
        """One of :data:`CT_WINDOWS` (``wide``, ``lung``, ``mediastinum``, ``bone``, ``brain``)."""
        if window not in CT_WINDOWS:
            raise ConfigError(
                f"unknown CT window {window!r}; valid: {', '.join(CT_WINDOWS)} "
                "(or give low/high in HU)"
            )
        low, high = CT_WINDOWS[window]
        return cls(low=low, high=high, clip=clip, window=window)

    @classmethod
    def from_level_width(cls, level: float, width: float, *, clip: bool = True) -> CTWindow:
        """The window ``level -/+ width / 2`` (the radiologist's centre/width)."""
        return cls(low=level - width / 2.0, high=level + width / 2.0, clip=clip, window=None)


@dataclass(frozen=True)
class PercentileScaling(Normaliser):
    """MR: ``low``/``high`` are the ``p_low``/``p_high`` percentiles of a volume's foreground."""

    kind: ClassVar[str] = "percentile"
    low: float
    high: float
    p_low: float = 0.5
    p_high: float = 99.5
    clip: bool = True

    def __post_init__(self) -> None:
        _check_bounds(self, "percentile")
        p_low = _number(self.p_low, "percentile.p_low")
        p_high = _number(self.p_high, "percentile.p_high")
        if not 0.0 <= p_low < p_high <= 100.0:
            raise ConfigError(
                f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {p_low, p_high}"
            )
        object.__setattr__(self, "p_low", p_low)
        object.__setattr__(self, "p_high", p_high)

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


@dataclass(frozen=True)
class BitDepthScaling(Normaliser):
    """X-ray: stored values ``0 .. 2**bits_stored - 1`` (signed: ``-2**(b-1) .. 2**(b-1) - 1``)."""

    kind: ClassVar[str] = "bit_depth"
    bits_stored: int
    signed: bool = False
    clip: bool = True

    def __post_init__(self) -> None:
        bits = self.bits_stored
        if isinstance(bits, bool) or not isinstance(bits, int | np.integer) or not 1 <= bits <= 32:
            raise ConfigError(f"bit_depth.bits_stored must be an integer 1..32, got {bits!r}")
        object.__setattr__(self, "bits_stored", int(bits))
        object.__setattr__(self, "signed", _flag(self.signed, "bit_depth.signed"))
        object.__setattr__(self, "clip", _flag(self.clip, "bit_depth.clip"))

    @property
    def bounds(self) -> tuple[float, float]:
        low = -(2.0 ** (self.bits_stored - 1)) if self.signed else 0.0
        return low, low + 2.0**self.bits_stored - 1.0


@dataclass(frozen=True)
class MinMax(Normaliser):
    """Generic: ``[low, high]`` (e.g. an image's minimum and maximum) mapped to [0, 1]."""

    kind: ClassVar[str] = "minmax"
    low: float
    high: float
    clip: bool = True

    def __post_init__(self) -> None:
        _check_bounds(self, "minmax")

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


NORMALISERS: dict[str, type[Normaliser]] = {
    "ct_window": CTWindow,
    "percentile": PercentileScaling,
    "bit_depth": BitDepthScaling,
    "minmax": MinMax,
}
"""Name table: the ``"kind"`` of a normaliser dict -> its class."""


def normaliser_from_dict(data: Mapping[str, Any]) -> Normaliser:
    """A normaliser from its :meth:`Normaliser.to_dict` form (dispatches on ``"kind"``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a normaliser is a mapping with a 'kind', got {data!r}")
    kind = data.get("kind")
    if kind not in NORMALISERS:
        raise ConfigError(f"unknown normaliser kind {kind!r}; valid: {', '.join(NORMALISERS)}")
    return NORMALISERS[kind].from_dict(data)


# -- fitting -----------------------------------------------------------------------------------
XRAY_MODALITIES = frozenset({"CR", "DX", "DR", "MG", "RG", "RF", "XA", "IO", "PX", "XR", "XRAY"})
_MODALITY_ALIASES = {"MRI": "MR", "X-RAY": "XRAY", "X_RAY": "XRAY"}

Method = Literal["auto", "ct_window", "percentile", "bit_depth", "minmax"]
METHODS: tuple[str, ...] = ("auto", "ct_window", "percentile", "bit_depth", "minmax")


def _auto_method(modality: str) -> str:
    code = _MODALITY_ALIASES.get(modality.upper(), modality.upper())
    if code == "CT":
        return "ct_window"
    if code == "MR":
        return "percentile"
    if code in XRAY_MODALITIES:
        return "bit_depth"
    return "minmax"


def foreground(array: np.ndarray) -> np.ndarray:
    """Voxels above the volume's minimum (drops the constant background that skull-stripped
    or zero-padded MR volumes have); all voxels when that leaves under 1 % of them."""
    finite = np.isfinite(array)
    if not finite.any():
        raise ConfigError("cannot fit a normaliser: the array has no finite value")
    fg = finite & (array > array[finite].min())
    return fg if fg.sum() >= 0.01 * finite.sum() else finite


def _spread(low: float, high: float, what: str) -> tuple[float, float]:
    if high > low:
        return low, high
    logger.warning("%s: constant image (%g); mapping it to 0 with a unit range", what, low)
    return low, low + 1.0


def fit_normaliser(
    array: np.ndarray | torch.Tensor,
    *,
    modality: str,
    bits_stored: int | None = None,
    method: Method = "auto",
    mask: np.ndarray | None = None,
    window: str | tuple[float, float] = "wide",
    percentiles: tuple[float, float] = (0.5, 99.5),
    signed: bool = False,
    clip: bool = True,
) -> Normaliser:
    """Fit the normaliser for one image or volume (physical units) of a given modality.

    ``method="auto"`` picks by DICOM modality code: ``CT`` -> :class:`CTWindow` (``window``:
    a name from :data:`CT_WINDOWS` or ``(low, high)`` in HU); ``MR`` -> :class:`PercentileScaling`
    over the foreground (``mask`` if given, else :func:`foreground`) of the whole array, so
    fit it per volume; X-ray codes (CR, DX, DR, MG, RG, RF, XA, IO, PX, XR) ->
    :class:`BitDepthScaling` with ``bits_stored`` (when missing and the values are
    integers, the smallest bit depth >= 8 that holds the maximum, with a warning);
    anything else -> :class:`MinMax`. ``clip`` is passed to the normaliser (see the
    module docstring: clipping is not invertible).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown normalisation method {method!r}; valid: {', '.join(METHODS)}")
    a = array.detach().cpu().numpy() if _is_tensor(array) else np.asarray(array)
    chosen = _auto_method(modality) if method == "auto" else method
    if chosen == "ct_window":
        if isinstance(window, str):
            return CTWindow.named(window, clip=clip)
        low, high = window
        return CTWindow(low=float(low), high=float(high), clip=clip, window=None)
    if chosen == "bit_depth":
        if bits_stored is None:
            finite = a[np.isfinite(a)]
            if finite.size == 0 or not np.all(finite == np.round(finite)) or finite.min() < 0:
                raise ConfigError(
                    "bit-depth scaling needs bits_stored (the values are not non-negative "
                    "integers, so it cannot be inferred); pass bits_stored= or method='minmax'"
                )
            bits_stored = max(8, math.ceil(math.log2(float(finite.max()) + 1.0)))
            logger.warning("bits_stored not given; inferred %d from the maximum", bits_stored)
        return BitDepthScaling(bits_stored=bits_stored, signed=signed, clip=clip)
    if chosen == "percentile":
        p_low, p_high = percentiles
        if mask is None:
            fg = foreground(a)
        else:
            fg = np.asarray(mask, dtype=bool)
            if fg.shape != a.shape:
                raise ConfigError(f"mask shape {fg.shape} does not match array shape {a.shape}")
            fg = fg & np.isfinite(a)
        values = a[fg]
        if values.size == 0:
            raise ConfigError("cannot fit percentiles: the mask selects no finite voxel")
        low, high = (float(v) for v in np.percentile(values, [p_low, p_high]))
        low, high = _spread(low, high, "percentile scaling")
        return PercentileScaling(low=low, high=high, p_low=p_low, p_high=p_high, clip=clip)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        raise ConfigError("cannot fit min-max scaling: the array has no finite value")
    low, high = _spread(float(finite.min()), float(finite.max()), "min-max scaling")
    return MinMax(low=low, high=high, clip=clip)


__all__ = [
    "CT_WINDOWS",
    "METHODS",
    "NORMALISERS",
    "XRAY_MODALITIES",
    "BitDepthScaling",
    "CTWindow",
    "MinMax",
    "Normaliser",
    "PercentileScaling",
    "fit_normaliser",
    "foreground",
    "normaliser_from_dict",
]
