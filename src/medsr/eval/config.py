"""The benchmark configuration: a YAML file read strictly into frozen dataclasses.

Every section rejects unknown keys and names the valid ones; every value is type-checked.
Relative paths (manifest, degradation file, model files) are taken from the current working
directory, like every other medsr command: run a committed config from the repository root.
See docs/evaluation.md for the schema with an example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsr.errors import ConfigError
from medsr.eval.evaluate import DEFAULT_REGION_METRICS
from medsr.eval.regions import Region, parse_region
from medsr.metrics import DEFAULT_METRICS, METRICS
from medsr.schema import at_least, check_keys, get, read_yaml
from medsr.transforms.degrade import (
    DEGRADATIONS,
    Degradation,
    build_degradation,
    load_degradation,
)

__all__ = [
    "TABLE_STYLES",
    "BenchmarkConfig",
    "FigureItem",
    "FiguresConfig",
    "MethodConfig",
    "TableConfig",
    "load_config",
    "parse_config",
    "resolve_degradation",
]

TABLE_STYLES: dict[str, str] = {
    "lumbar_spine": "PSNR and SSIM by method (the lumbar spine MedSRGAN work)",
    "brats": "SSIM, NRMSE, MAE and VIF mean ± std against bilinear and bicubic "
    "(the BraTS Real-ESRGAN work)",
    "chest_xray": "PSNR and SSIM with one column per split: validation and test "
    "(the chest X-ray CNN/GAN work)",
    "brain_tumour": "metrics inside a region (tumour) and outside it (normal tissue) "
    "(the brain tumour SRGAN/ESPCN work)",
}
"""Table styles of the source works: key -> what the table shows."""

_STYLE_METRICS: dict[str, tuple[str, ...]] = {
    "lumbar_spine": ("psnr", "ssim"),
    "brats": ("ssim", "nrmse_mean_unit", "mae", "vif"),
    "chest_xray": ("psnr", "ssim"),
    "brain_tumour": ("psnr", "ssim"),
}


@dataclass(frozen=True)
class MethodConfig:
    """One method: ``name`` (label), ``model`` (what ``medsr.infer.load_model`` resolves:
    an interpolation name, a checkpoint folder, ``.onnx``, ESRGAN weights), ``tile`` and
    ``overlap`` (input pixels; default whole slices)."""

    name: str
    model: str
    tile: int | None = None
    overlap: int | None = None


@dataclass(frozen=True)
class TableConfig:
    """A table in the style of a source work (:data:`TABLE_STYLES`).

    ``datasets``: rows of these datasets only (default all); ``volumes``: a regular
    expression searched in ``volume_id`` (e.g. ``Flair``); ``split``: the split (default the
    first evaluated; the ``chest_xray`` style shows every split); ``region``: the region of
    the ``brain_tumour`` style; ``metrics``: override the style's metrics; ``title``.
    """

    style: str
    title: str | None = None
    datasets: tuple[str, ...] | None = None
    volumes: str | None = None
    split: str | None = None
    region: str | None = None
    metrics: tuple[str, ...] | None = None

    @property
    def columns(self) -> tuple[str, ...]:
        return self.metrics if self.metrics is not None else _STYLE_METRICS[self.style]


@dataclass(frozen=True)
class FigureItem:
    """A slice to draw: ``volume_id`` and ``slice_index`` (as in the manifest), ``split``
    (default the figures' split) and an ``inset`` ``[top, left, size]`` in HR pixels
    (default: found automatically)."""

    volume_id: str
    slice_index: int
    split: str | None = None
    inset: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class FiguresConfig:
    """``per_dataset`` slices chosen automatically per dataset (the evaluated slice with the
    largest foreground), or the listed ``items``; ``split`` (default the first evaluated);
    ``inset_size`` in HR pixels (default a fifth of the smaller side); ``methods`` to show
    (default all); ``embed``: embed the PNGs in the HTML report (else link them)."""

    per_dataset: int = 1
    items: tuple[FigureItem, ...] = ()
    split: str | None = None
    inset_size: int | None = None
    methods: tuple[str, ...] | None = None
    embed: bool = True


@dataclass(frozen=True)
class BenchmarkConfig:
    """A whole benchmark (see docs/evaluation.md)."""

    title: str
    manifest: Path
    degradation: Degradation
    methods: tuple[MethodConfig, ...]
    splits: tuple[str, ...] = ("val",)
    datasets: tuple[str, ...] | None = None
    every: int = 1
    max_slices_per_volume: int | None = None
    seed: int = 0
    reference: str | None = None
    metrics: tuple[str, ...] = DEFAULT_METRICS
    region_metrics: tuple[str, ...] = DEFAULT_REGION_METRICS
    regions: tuple[Region, ...] = ()
    border: int = 0
    clamp: bool = True
    tables: tuple[TableConfig, ...] = ()
    figures: FiguresConfig | None = FiguresConfig()
    device: str = "cpu"
    threads: int | None = None
    output: Path | None = None
    description: str = ""
    degradation_spec: Any = None


_TOP_KEYS = (
    "title",
    "description",
    "manifest",
    "splits",
    "datasets",
    "every",
    "max_slices_per_volume",
    "seed",
    "degradation",
    "methods",
    "reference",
    "metrics",
    "region_metrics",
    "regions",
    "border",
    "clamp",
    "tables",
    "figures",
    "device",
    "threads",
    "output",
)

_SHORTHAND = re.compile(r"^([a-z_]+)_x(\d+)$")


def resolve_degradation(spec: Any) -> Degradation:
    """A degradation from a YAML file path, a shorthand ``NAME_xS`` (``bicubic_x4``: the
    ``NAME`` stage at scale ``S`` with its defaults), or a list of stage mappings."""
    if isinstance(spec, str):
        path = Path(spec)
        if path.suffix.lower() in (".yaml", ".yml") or path.exists():
            if not path.is_file():
                raise ConfigError(f"degradation file {spec} does not exist")
            return load_degradation(path)
        match = _SHORTHAND.match(spec)
        if match and match.group(1) in DEGRADATIONS:
            return build_degradation({"name": match.group(1), "scale": int(match.group(2))})
        raise ConfigError(
            f"degradation {spec!r} is neither a YAML file nor NAME_xS with NAME one of "
            f"{', '.join(sorted(DEGRADATIONS))} (e.g. bicubic_x4)"
        )
    if isinstance(spec, list | Mapping):
        return build_degradation(spec)  # type: ignore[arg-type]
    raise ConfigError(f"degradation must be a file, NAME_xS or a list of stages, got {spec!r}")


def _metrics(values: tuple[str, ...], where: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    unknown = [v for v in values if v not in METRICS and v not in extra]
    if unknown:
        raise ConfigError(
            f"{where}: unknown metric(s) {unknown}; choose from {sorted(METRICS) + list(extra)}"
        )
    return values


def _method(data: Any, where: str) -> MethodConfig:
    d = check_keys(data, ("name", "model", "tile", "overlap"), where)
    tile = get(d, "tile", where, int | None, None)
    overlap = get(d, "overlap", where, int | None, None)
    if tile is not None and tile < 0:
        raise ConfigError(f"{where}.tile must be >= 0 (0: whole slices), got {tile}")
    if overlap is not None:
        at_least(f"{where}.overlap", overlap, 0)
    return MethodConfig(
        name=get(d, "name", where, str, nonempty=True),
        model=get(d, "model", where, str, nonempty=True),
        tile=tile,
        overlap=overlap,
    )


def _region(data: Any, where: str) -> Region:
    d = check_keys(data, ("name", "mask", "datasets", "volumes", "min_pixels"), where)
    name = get(d, "name", where, str, nonempty=True)
    mask = get(d, "mask", where, str, nonempty=True)
    if "=" in mask:
        raise ConfigError(f"{where}.mask: give the name in 'name', not in {mask!r}")
    datasets = get(d, "datasets", where, tuple[str, ...] | None, None, nonempty=True)
    volumes = get(d, "volumes", where, str | None, None, nonempty=True)
    min_pixels = get(d, "min_pixels", where, int, 1)
    return parse_region(f"{name}={mask}", datasets=datasets, volumes=volumes, min_pixels=min_pixels)


def _table(data: Any, where: str, extra_metrics: tuple[str, ...]) -> TableConfig:
    d = check_keys(
        data, ("style", "title", "datasets", "volumes", "split", "region", "metrics"), where
    )
    style = get(d, "style", where, str, nonempty=True)
    if style not in TABLE_STYLES:
        raise ConfigError(f"{where}.style {style!r} is not one of {', '.join(TABLE_STYLES)}")
    volumes = get(d, "volumes", where, str | None, None, nonempty=True)
    if volumes is not None:
        try:
            re.compile(volumes)
        except re.error as error:
            raise ConfigError(f"{where}.volumes {volumes!r}: {error}") from error
    metrics = get(d, "metrics", where, tuple[str, ...] | None, None, nonempty=True)
    if metrics is not None:
        _metrics(metrics, f"{where}.metrics", extra_metrics)
    region = get(d, "region", where, str | None, None, nonempty=True)
    if style == "brain_tumour" and region is None:
        raise ConfigError(f"{where}: the brain_tumour style needs a 'region' (a region name)")
    return TableConfig(
        style=style,
        title=get(d, "title", where, str | None, None, nonempty=True),
        datasets=get(d, "datasets", where, tuple[str, ...] | None, None, nonempty=True),
        volumes=volumes,
        split=get(d, "split", where, str | None, None, nonempty=True),
        region=region,
        metrics=metrics,
    )


def _figures(data: Any, where: str) -> FiguresConfig | None:
    if data is None or data is False:
        return None
    d = check_keys(data, ("per_dataset", "items", "split", "inset_size", "methods", "embed"), where)
    items = []
    raw_items = d.get("items", [])
    if not isinstance(raw_items, list):
        raise ConfigError(f"{where}.items must be a list, got {raw_items!r}")
    for k, item in enumerate(raw_items):
        w = f"{where}.items[{k}]"
        i = check_keys(item, ("volume_id", "slice_index", "split", "inset"), w)
        inset = i.get("inset")
        if inset is not None:
            if (
                not isinstance(inset, list)
                or len(inset) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in inset)
                or inset[0] < 0
                or inset[1] < 0
                or inset[2] < 1
            ):
                raise ConfigError(f"{w}.inset must be [top, left, size] in pixels, got {inset!r}")
            inset = tuple(inset)
        items.append(
            FigureItem(
                volume_id=get(i, "volume_id", w, str, nonempty=True),
                slice_index=get(i, "slice_index", w, int),
                split=get(i, "split", w, str | None, None, nonempty=True),
                inset=inset,
            )
        )
    per_dataset = get(d, "per_dataset", where, int, 0 if items else 1)
    at_least(f"{where}.per_dataset", per_dataset, 0)
    inset_size = get(d, "inset_size", where, int | None, None)
    if inset_size is not None:
        at_least(f"{where}.inset_size", inset_size, 4, unit="pixels")
    return FiguresConfig(
        per_dataset=per_dataset,
        items=tuple(items),
        split=get(d, "split", where, str | None, None, nonempty=True),
        inset_size=inset_size,
        methods=get(d, "methods", where, tuple[str, ...] | None, None, nonempty=True),
        embed=get(d, "embed", where, bool, True),
    )


def parse_config(data: Any, *, where: str = "benchmark config") -> BenchmarkConfig:
    """A :class:`BenchmarkConfig` from parsed YAML; raises ConfigError for any problem."""
    d = check_keys(data, _TOP_KEYS, where)
    methods_raw = d.get("methods")
    if not isinstance(methods_raw, list) or not methods_raw:
        raise ConfigError(f"{where}.methods must be a non-empty list of {{name, model}}")
    methods = tuple(_method(m, f"{where}.methods[{k}]") for k, m in enumerate(methods_raw))
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.methods: names must be unique, got {names}")
    reference = get(
        d, "reference", where, str | None, "bicubic" if "bicubic" in names else None, nonempty=True
    )
    if reference is not None and reference not in names:
        raise ConfigError(f"{where}.reference {reference!r} is not one of the methods {names}")
    metrics = _metrics(
        get(d, "metrics", where, tuple[str, ...], DEFAULT_METRICS, nonempty=True),
        f"{where}.metrics",
    )
    region_metrics = _metrics(
        get(d, "region_metrics", where, tuple[str, ...], DEFAULT_REGION_METRICS, nonempty=True),
        f"{where}.region_metrics",
    )
    regions_raw = d.get("regions", [])
    if not isinstance(regions_raw, list):
        raise ConfigError(f"{where}.regions must be a list of {{name, mask}}")
    regions = tuple(_region(r, f"{where}.regions[{k}]") for k, r in enumerate(regions_raw))
    splits = get(d, "splits", where, tuple[str, ...], ("val",), nonempty=True)
    extra = ("consistency_psnr", "runtime_s") + (
        ("nrmse_mean_unit",) if "nrmse_mean" in metrics else ()
    )
    tables_raw = d.get("tables", [])
    if not isinstance(tables_raw, list):
        raise ConfigError(f"{where}.tables must be a list of {{style, ...}}")
    tables = tuple(_table(t, f"{where}.tables[{k}]", extra) for k, t in enumerate(tables_raw))
    region_names = {r.name for r in regions}
    for k, t in enumerate(tables):
        if t.region is not None and t.region not in region_names:
            raise ConfigError(
                f"{where}.tables[{k}].region {t.region!r} is not one of the regions "
                f"{sorted(region_names)}"
            )
        if t.split is not None and t.split not in splits:
            raise ConfigError(f"{where}.tables[{k}].split {t.split!r} is not evaluated {splits}")
        missing = [
            c
            for c in t.columns
            if c not in metrics and c not in extra and t.style != "brain_tumour"
        ]
        if t.style == "brain_tumour":
            missing = [c for c in t.columns if c not in region_metrics]
        if missing:
            raise ConfigError(
                f"{where}.tables[{k}] ({t.style}) needs metric(s) {missing}, which this "
                "benchmark does not compute; add them to metrics (or region_metrics) or set "
                "the table's metrics"
            )
    figures = _figures(d.get("figures", {}), f"{where}.figures")
    if figures is not None:
        if figures.methods is not None:
            unknown = [m for m in figures.methods if m not in names]
            if unknown:
                raise ConfigError(f"{where}.figures.methods {unknown} are not methods {names}")
        if figures.split is not None and figures.split not in splits:
            raise ConfigError(f"{where}.figures.split {figures.split!r} is not evaluated {splits}")
    every = get(d, "every", where, int, 1)
    border = get(d, "border", where, int, 0)
    threads = get(d, "threads", where, int | None, None)
    output = get(d, "output", where, str | None, None, nonempty=True)
    degradation_spec = get(d, "degradation", where, Any)
    return BenchmarkConfig(
        title=get(d, "title", where, str, "medsr benchmark", nonempty=True),
        description=get(d, "description", where, str, "", nonempty=True)
        if d.get("description")
        else "",
        manifest=Path(get(d, "manifest", where, str, nonempty=True)),
        degradation=resolve_degradation(degradation_spec),
        degradation_spec=degradation_spec,
        methods=methods,
        splits=splits,
        datasets=get(d, "datasets", where, tuple[str, ...] | None, None, nonempty=True),
        every=every,
        max_slices_per_volume=get(d, "max_slices_per_volume", where, int | None, None),
        seed=get(d, "seed", where, int, 0),
        reference=reference,
        metrics=metrics,
        region_metrics=region_metrics,
        regions=regions,
        border=border,
        clamp=get(d, "clamp", where, bool, True),
        tables=tables,
        figures=figures,
        device=get(d, "device", where, str, "cpu", nonempty=True),
        threads=threads,
        output=None if output is None else Path(output),
    )


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and check a benchmark YAML file."""
    return parse_config(read_yaml(path, what="benchmark config"), where=str(path))
