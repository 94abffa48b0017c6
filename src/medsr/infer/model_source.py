"""Where an inference model comes from, and the policies it carries with it.

``load_model(spec)`` resolves, in this order:

1. a name of :data:`medsr.models.PRETRAINED` (weights shipped with medsr, see `medsr models`),
2. a name of :data:`medsr.models.GENERATORS` that needs no weights (the interpolation
   baselines ``nearest``, ``bilinear``, ``bicubic``, ``lanczos``); a network name without
   weights is refused (an untrained network only makes noise),
3. a path: a medsr checkpoint folder (or its ``config.json`` / ``model.safetensors``), an
   ONNX file written by ``medsr export`` (``.onnx``), or official ESRGAN / Real-ESRGAN
   weights (``.pth``, ``.pt``, ``.safetensors``).

The result is an :class:`SRModel`: the network plus what inference needs to use it
correctly, read from the checkpoint's ``config.json`` ``metadata``:

``"normalisation"``
    how to map an input to the model's [0, 1] range (:class:`NormalisationPolicy`):
    either a fixed normaliser dict with a ``"kind"`` (``{"kind": "ct_window", "low": -1024,
    "high": 3071, "clip": false, "window": "wide"}``) applied to every input as is, or a
    fitting policy with a ``"method"`` (``{"method": "auto", "window": "wide",
    "percentiles": [0.5, 99.5], "clip": false}``) fitted per input image or volume with
    :func:`medsr.transforms.intensity.fit_normaliser`. Missing: ``{"method": "auto",
    "clip": false}``.
``"degradation"``
    the training degradation as a list of stage dicts
    (:func:`medsr.transforms.degrade.build_degradation`); its noise-free
    ``downsample_only()`` is the fidelity check's operator. Missing: antialiased bicubic at
    the model's scale.

See docs/inference.md for the schema.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsr.errors import CheckpointError, ConfigError
from medsr.infer.defaults import DEFAULT_MODEL, DEFAULT_SCALE
from medsr.io.image import Image
from medsr.transforms.degrade import Degradation, build_degradation
from medsr.transforms.intensity import (
    CT_WINDOWS,
    METHODS,
    Normaliser,
    fit_normaliser,
    normaliser_from_dict,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_SCALE",
    "DEPLOYED_ONNX",
    "ONNX_METADATA_KEY",
    "NormalisationPolicy",
    "SRModel",
    "interpolation_names",
    "load_model",
    "wrap_module",
]

logger = logging.getLogger(__name__)

ONNX_METADATA_KEY = "medsr"
"""Key of the JSON model description in an exported ONNX file's ``metadata_props``."""

DEPLOYED_ONNX = "model.onnx"
"""The ONNX export shipped beside a shipped model's ``model.safetensors`` (``onnx_file``)."""


# -- normalisation policy -----------------------------------------------------------------------
_POLICY_KEYS = ("method", "window", "percentiles", "clip")


@dataclass(frozen=True)
class NormalisationPolicy:
    """How an input image is mapped to the model's [0, 1] range (and back).

    ``normaliser`` set: that fixed map for every input (what the model was trained with, e.g.
    a CT window). Otherwise a normaliser is fitted to each input image or volume with
    :func:`~medsr.transforms.intensity.fit_normaliser` (``method``, ``window``,
    ``percentiles``, ``clip``), using the image's modality and bits stored.

    ``clip`` defaults to False at inference: clipping to the window is not invertible and
    would destroy values outside it (metal, bright vessels, air below a narrow window).
    """

    normaliser: Normaliser | None = None
    method: str = "auto"
    window: str | tuple[float, float] = "wide"
    percentiles: tuple[float, float] = (0.5, 99.5)
    clip: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"normalisation method {self.method!r} is not one of {', '.join(METHODS)}"
            )
        if isinstance(self.window, str):
            if self.window not in CT_WINDOWS:
                raise ConfigError(
                    f"normalisation window {self.window!r} is not one of "
                    f"{', '.join(CT_WINDOWS)} (or [low, high] in HU)"
                )
        else:
            object.__setattr__(self, "window", _pair(self.window, "normalisation window"))
        object.__setattr__(
            self, "percentiles", _pair(self.percentiles, "normalisation percentiles")
        )
        if not isinstance(self.clip, bool):
            raise ConfigError(f"normalisation clip must be true or false, got {self.clip!r}")

    def fit(self, image: Image) -> Normaliser:
        """The normaliser for one image or volume (fitted on all its pixels)."""
        if self.normaliser is not None:
            return self.normaliser
        source = image.source
        return fit_normaliser(
            image.array,
            modality=image.modality,
            bits_stored=source.bits_stored if source is not None else None,
            signed=bool(source.signed) if source is not None else False,
            method=self.method,  # type: ignore[arg-type]
            window=self.window,
            percentiles=self.percentiles,
            clip=self.clip,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``metadata["normalisation"]`` form (see :meth:`from_dict`)."""
        if self.normaliser is not None:
            return self.normaliser.to_dict()
        window = self.window if isinstance(self.window, str) else list(self.window)
        return {
            "method": self.method,
            "window": window,
            "percentiles": list(self.percentiles),
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> NormalisationPolicy:
        """Read ``metadata["normalisation"]``: a normaliser dict (has ``"kind"``), a fitting
        policy (has ``"method"``, optional ``window``, ``percentiles``, ``clip``), or None
        for the default policy. Strict: unknown keys raise ConfigError."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"metadata 'normalisation' must be a mapping, got {data!r}")
        if "kind" in data:
            return cls(normaliser=normaliser_from_dict(data))
        unknown = sorted(set(data) - set(_POLICY_KEYS))
        if unknown:
            raise ConfigError(
                f"metadata 'normalisation': unknown key(s) {', '.join(map(repr, unknown))}; a "
                f"fitting policy has {', '.join(_POLICY_KEYS)}, a fixed normaliser has 'kind'"
            )
        params: dict[str, Any] = dict(data)
        if isinstance(params.get("window"), list):
            params["window"] = tuple(params["window"])
        if "percentiles" in params:
            params["percentiles"] = tuple(params["percentiles"])
        return cls(**params)


def _pair(value: Any, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be two numbers [low, high], got {value!r}") from None
    if not high > low:
        raise ConfigError(f"{what} must have high > low, got {value!r}")
    return low, high


def _degradation(data: Any, scale: int) -> Degradation:
    if data is None:
        return build_degradation({"name": "bicubic", "scale": scale, "antialias": True})
    try:
        return build_degradation(data)
    except ConfigError as error:
        raise ConfigError(f"metadata 'degradation': {error}") from error


# -- the model ----------------------------------------------------------------------------------
@dataclass(eq=False)
class SRModel:
    """A super-resolution model ready for inference, with its intensity and degradation policy.

    Exactly one of ``module`` (a generator: ``(B, in_channels, H, W) -> (B, out_channels,
    scale*H, scale*W)``) and ``onnx`` (the bytes of an ONNX file from ``medsr export``) is
    set. ``size_multiple``: input height and width must divide by it (the ONNX runtime pads
    to it; PyTorch RRDBNet x1/x2 pads itself). ``trained`` is False for the interpolation
    baselines (which need no training). ``onnx_file``: an ONNX export of ``module`` shipped
    beside its weights (the shipped models; same output within 1e-5): a CPU job with no engine
    asked for runs it on ONNX Runtime without exporting first.
    """

    name: str
    scale: int
    in_channels: int
    out_channels: int
    normalisation: NormalisationPolicy = field(default_factory=NormalisationPolicy)
    degradation: Degradation | None = None
    module: nn.Module | None = None
    onnx: bytes | None = None
    trained: bool = True
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    size_multiple: int = 1
    onnx_file: Path | None = None
    _runners: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.module is None) == (self.onnx is None):
            raise ConfigError("an SRModel needs exactly one of module and onnx")
        if self.degradation is None:
            self.degradation = _degradation(None, self.scale)
        if self.in_channels == self.out_channels:
            if self.in_channels not in (1, 3):
                raise ConfigError(
                    f"{self.name}: {self.in_channels} channels in and out; medsr runs models "
                    "with 1 (grey) or 3 (RGB) channels, or 2.5D (odd in_channels, 1 out)"
                )
        elif not (self.out_channels == 1 and self.in_channels % 2 == 1):
            raise ConfigError(
                f"{self.name}: in_channels={self.in_channels}, out_channels="
                f"{self.out_channels}: not a grey, RGB or 2.5D model"
            )

    @property
    def engine(self) -> str:
        """``"torch"`` for a PyTorch module, ``"onnxruntime"`` for an ONNX model."""
        return "torch" if self.module is not None else "onnxruntime"

    def activation_bytes_per_pixel(self) -> float:
        """Working memory of one inference call per input pixel (bytes, an estimate).

        For medsr's generators, measured once on a 32 x 32 probe with forward hooks: the
        largest activation any layer produces, times 3 (its input, its output and a skip
        connection are alive together), float32. Other modules are not run (a probe could have
        side effects): the widest convolution counts as if it ran at the output resolution
        (an upper bound); an ONNX model counts as 256 channels there. Used to tile only when a
        whole plane would not fit.
        """
        from medsr.models import Generator

        cached = self._runners.get(("activation_bytes",))
        if cached is not None:
            return float(cached)
        if isinstance(self.module, Generator):
            value = _probe_activation_bytes(self.module, self.in_channels)
        else:
            widest = 256
            if self.module is not None:
                convs = [m.out_channels for m in self.module.modules() if isinstance(m, nn.Conv2d)]
                widest = max([*convs, self.in_channels, self.out_channels])
            value = 3.0 * 4.0 * widest * self.scale * self.scale
        self._runners[("activation_bytes",)] = value
        return value

    @property
    def is_2_5d(self) -> bool:
        """Neighbouring slices in (``in_channels`` odd > 1), the centre slice out."""
        return self.in_channels > 1 and self.out_channels == 1

    def config(self) -> dict[str, Any]:
        """What an exported ONNX file records to be used like this model."""
        return {
            "name": self.name,
            "scale": self.scale,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "size_multiple": self.size_multiple,
            "trained": self.trained,
            "metadata": {
                **self.metadata,
                "normalisation": self.normalisation.to_dict(),
                "degradation": self.degradation.to_config() if self.degradation else None,
            },
        }

    def consistency_degradation(self) -> Degradation:
        """The noise-free training degradation, with its output clipping turned off.

        The fidelity check compares normalised values that may leave [0, 1] (the inference
        normaliser does not clip), so clipping the re-degraded SR would count as an error.
        """
        assert self.degradation is not None
        clean = self.degradation.downsample_only()
        stages = tuple(
            dataclasses.replace(stage, clip=False)
            if any(f.name == "clip" for f in dataclasses.fields(stage))  # type: ignore[arg-type]
            else stage
            for stage in clean.stages
        )
        return Degradation(stages)


def _probe_activation_bytes(module: nn.Module, in_channels: int, size: int = 32) -> float:
    largest = 0

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel())

    handles = [m.register_forward_hook(hook) for m in module.modules() if m is not module]
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        with torch.no_grad():
            out = module(torch.zeros(1, in_channels, size, size, device=device))
        largest = max(largest, out.numel())
    finally:
        for handle in handles:
            handle.remove()
    return 3.0 * 4.0 * largest / (size * size)


# -- resolution ---------------------------------------------------------------------------------
def interpolation_names() -> list[str]:
    """Generators of the table that need no weights: the interpolation baselines."""
    from medsr.models import GENERATORS
    from medsr.models import interpolation as module

    return [arch for arch, cls in GENERATORS.items() if cls.__module__ == module.__name__]


def load_model(spec: str | Path, *, scale: int | None = None) -> SRModel:
    """Resolve ``spec`` (a shipped name, ``fast`` / ``quality``, an interpolation name or a
    path) to an :class:`SRModel`.

    ``scale`` chooses the scale of an interpolation baseline (default :data:`DEFAULT_SCALE`)
    and must match the scale of a trained model when given. Models load on the CPU; the
    runner moves them to the device. Raises ConfigError (unknown name, untrained network,
    wrong scale) or CheckpointError (unreadable file).
    """
    from medsr.models import GENERATORS, MODEL_TAGS, PRETRAINED, tagged_model

    text = str(spec)
    if text in MODEL_TAGS:  # "fast" / "quality": the shipped weights with that tag
        text = tagged_model(text, DEFAULT_SCALE if scale is None else scale)
    if text in PRETRAINED:
        entry = PRETRAINED[text]
        model = _load_checkpoint(entry.folder(), scale=scale)
        model.name = text
        deployed = entry.folder() / DEPLOYED_ONNX
        model.onnx_file = deployed if deployed.is_file() else None
        return model
    if text in GENERATORS:
        return _load_table(text, scale)
    path = Path(text).expanduser()
    if not path.exists():
        interpolation = interpolation_names()
        raise ConfigError(
            f"model {text!r} is not a shipped model ({', '.join(PRETRAINED) or 'none yet'}), "
            f"an interpolation ({', '.join(interpolation)}), nor an existing path (a medsr "
            "checkpoint folder, an .onnx file from `medsr export`, or ESRGAN .pth/.safetensors)"
        )
    if path.is_dir() or path.name in ("config.json", "model.safetensors"):
        return _load_checkpoint(path, scale=scale)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(path, scale=scale)
    if suffix in (".pth", ".pt", ".safetensors"):
        return _load_esrgan(path, scale=scale)
    raise ConfigError(
        f"{path}: not a model file medsr reads (a checkpoint folder, .onnx, .pth, .pt, "
        ".safetensors)"
    )


def _load_table(arch: str, scale: int | None) -> SRModel:
    from medsr.models import build_generator

    interpolation = interpolation_names()
    if arch not in interpolation:
        raise ConfigError(
            f"{arch} is a network without trained weights in medsr (random weights only make "
            f"noise); give a checkpoint folder from training, an .onnx file or official ESRGAN "
            f"weights, or an interpolation ({', '.join(interpolation)})"
        )
    scale = DEFAULT_SCALE if scale is None else scale
    module = build_generator(arch, {"scale": scale, "in_channels": 1})
    return SRModel(
        name=arch,
        scale=scale,
        in_channels=1,
        out_channels=1,
        module=module.eval(),
        trained=False,
        source="interpolation",
    )


def _check_scale(found: int, wanted: int | None, where: Path) -> None:
    if wanted is not None and wanted != found:
        raise ConfigError(f"{where} is a x{found} model; --scale {wanted} does not match it")


def _size_multiple(module: nn.Module) -> int:
    # RRDBNet x1/x2 pixel-unshuffles (padding itself in PyTorch; an ONNX graph cannot).
    return int(getattr(module, "unshuffle", 1) or 1)


def _from_metadata(
    *,
    name: str,
    module: nn.Module | None,
    onnx: bytes | None,
    scale: int,
    in_channels: int,
    out_channels: int,
    metadata: Mapping[str, Any],
    source: str,
    size_multiple: int,
    trained: bool = True,
) -> SRModel:
    return SRModel(
        name=name,
        scale=scale,
        in_channels=in_channels,
        out_channels=out_channels,
        normalisation=NormalisationPolicy.from_dict(metadata.get("normalisation")),
        degradation=_degradation(metadata.get("degradation"), scale),
        module=module,
        onnx=onnx,
        trained=trained,
        source=source,
        metadata=dict(metadata),
        size_multiple=size_multiple,
    )


def _load_checkpoint(path: Path, *, scale: int | None) -> SRModel:
    from medsr.models import load, read_config

    folder = path if path.is_dir() else path.parent
    config = read_config(folder)
    if config["kind"] != "generator":
        raise CheckpointError(folder, f"holds a {config['kind']}, not a generator")
    # the deploy form: re-parameterisable models fold their training branches (same output)
    module = load(folder).fuse()
    found = int(module.scale)  # type: ignore[arg-type]
    _check_scale(found, scale, folder)
    metadata = config.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise CheckpointError(folder / "config.json", "'metadata' must be a JSON object")
    try:
        return _from_metadata(
            name=f"{folder.name} ({config['arch']})",
            module=module,
            onnx=None,
            scale=found,
            in_channels=int(module.in_channels),  # type: ignore[arg-type]
            out_channels=int(module.out_channels),  # type: ignore[arg-type]
            metadata=metadata,
            source=str(folder),
            size_multiple=_size_multiple(module),
        )
    except ConfigError as error:
        raise CheckpointError(folder / "config.json", str(error)) from error


def _load_esrgan(path: Path, *, scale: int | None) -> SRModel:
    from medsr.models import load_official_esrgan

    module = load_official_esrgan(path, scale=scale)
    return _from_metadata(
        name=f"{path.name} (rrdbnet)",
        module=module,
        onnx=None,
        scale=module.scale,
        in_channels=module.in_channels,
        out_channels=module.out_channels,
        metadata={},
        source=str(path),
        size_multiple=_size_multiple(module),
    )


def _load_onnx(path: Path, *, scale: int | None) -> SRModel:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError(
            "running .onnx models needs onnxruntime: pip install 'medsr[onnx]'"
        ) from None
    data = path.read_bytes()
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
    except Exception as error:  # onnxruntime raises its own exception types
        raise CheckpointError(path, f"not a readable ONNX model ({error})") from error
    if ONNX_METADATA_KEY not in meta:
        raise CheckpointError(
            path,
            f"has no '{ONNX_METADATA_KEY}' metadata: only ONNX files written by `medsr export` "
            "are supported (they record the scale, channels and normalisation)",
        )
    try:
        config = json.loads(meta[ONNX_METADATA_KEY])
        found = int(config["scale"])
        in_channels, out_channels = int(config["in_channels"]), int(config["out_channels"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(path, f"invalid '{ONNX_METADATA_KEY}' metadata ({error})") from error
    _check_scale(found, scale, path)
    try:
        return _from_metadata(
            name=f"{path.name} ({config.get('name', 'onnx')})",
            module=None,
            onnx=data,
            scale=found,
            in_channels=in_channels,
            out_channels=out_channels,
            metadata=config.get("metadata") or {},
            source=str(path),
            size_multiple=int(config.get("size_multiple", 1)),
            trained=bool(config.get("trained", True)),
        )
    except ConfigError as error:
        raise CheckpointError(path, str(error)) from error


def wrap_module(
    module: nn.Module,
    *,
    name: str | None = None,
    normalisation: NormalisationPolicy | Mapping[str, Any] | None = None,
    degradation: Degradation | list[dict[str, Any]] | None = None,
    trained: bool = True,
) -> SRModel:
    """An :class:`SRModel` around any module that follows the generator contract
    (attributes ``scale``, ``in_channels`` and optionally ``out_channels``)."""
    try:
        scale = int(module.scale)  # type: ignore[arg-type]
        in_channels = int(module.in_channels)  # type: ignore[arg-type]
    except AttributeError:
        raise ConfigError(
            f"{type(module).__name__} lacks the generator attributes scale and in_channels"
        ) from None
    out_channels = int(getattr(module, "out_channels", in_channels))
    if not isinstance(normalisation, NormalisationPolicy):
        normalisation = NormalisationPolicy.from_dict(normalisation)
    if not isinstance(degradation, Degradation):
        degradation = _degradation(degradation, scale)
    return SRModel(
        name=name or type(module).__name__,
        scale=scale,
        in_channels=in_channels,
        out_channels=out_channels,
        normalisation=normalisation,
        degradation=degradation,
        module=module.eval(),
        trained=trained,
        source="module",
        size_multiple=_size_multiple(module),
    )
