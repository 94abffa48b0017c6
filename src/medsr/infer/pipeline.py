"""The upscale use case in one place: find the inputs, name the outputs, read -> upscale ->
fit -> write each one.

Every front end calls this module and only parses its input and presents the outcome:
``medsr upscale`` (single inputs, batch mode through :mod:`medsr.infer.batch`, and
``--self-supervised``), ``medsr demo``, the web app's jobs (:mod:`medsr.web.jobs`) and the
DICOM node (:mod:`medsr.net.listen`).

- :func:`plan` ``(inputs, out) -> Plan``: the jobs (one per image file or DICOM series) and
  their output names under OUT (a folder tree is mirrored; a folder of several series gives
  ``series-<number>-<hash>`` outputs; one input may be written to a file OUT names).
- :func:`check_plan`: before anything is read, refuse outputs that are, hold or lie inside an
  input, two inputs with one output, and an OUT that cannot be written
  (:mod:`medsr.infer.outputs`).
- :func:`run` ``(job, model, options) -> Outcome``: one input end to end; an error becomes
  the outcome's ``error`` (the other inputs still run), never an exception.
- The output policy: :func:`output_format` (the format a job's output gets: the one OUT's
  name means, else ``options.format``, else the input's, :data:`OUTPUT_FORMATS`, turned
  into TIFF for a volume when the writer cannot store one) and :func:`output_path` (a
  series folder or a file with the format's suffix), built on :mod:`medsr.io`'s
  ``SUFFIX_FORMATS``, ``WRITABLE``, ``VOLUME_FORMATS``, ``SUFFIXES`` and ``fit_to_output``.

Importing this module imports no PyTorch (the CLI builds its parser with it); the model
runs through :func:`medsr.infer.upscale.upscale_image`, imported when first needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr.errors import ConfigError, FileError, MedsrError, WriteError
from medsr.infer.defaults import DEFAULT_OVERLAP, DEFAULT_TILE, SELF_ENSEMBLE
from medsr.infer.outputs import (
    OutputLedger,
    candidate_outputs,
    check_writable,
    refuse_collisions,
    refuse_overlaps,
    refuse_replacing,
)
from medsr.io import WRITABLE, read, write
from medsr.io.image import Image
from medsr.io.read import SUFFIX_FORMATS, sniff, suffix_of
from medsr.io.write import SUFFIXES, VOLUME_FORMATS, fit_to_output

if TYPE_CHECKING:
    from medsr.infer.model_source import SRModel
    from medsr.infer.ood import OODWarning
    from medsr.infer.runtime import Runner
    from medsr.infer.safety import ConsistencyOptions
    from medsr.infer.selfsup import SelfSupConfig, SelfSupResult
    from medsr.infer.upscale import UpscaleResult
    from medsr.io.deidentify import DeidentificationState

__all__ = [
    "OUTPUT_FORMATS",
    "Job",
    "Outcome",
    "Plan",
    "SelfSupervised",
    "UpscaleOptions",
    "check_plan",
    "is_series_folder",
    "named_format",
    "output_format",
    "output_path",
    "plan",
    "run",
    "runner",
    "series_output_name",
    "upscale",
]

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = {
    "dicom": "dicom",
    "nifti": "nifti",
    "png": "png",
    "jpeg": "png",
    "tiff": "tiff",
    "npy": "npy",
    "npz": "npz",
    "mat": "npz",
}
"""The output format of each input format. MAT and JPEG are not written: NPZ keeps the
spacing, PNG is lossless. An input of another (unknown) kind is written as NPZ."""

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
ENGINE_SETTINGS = (
    "engine",
    "device",
    "precision",
    "channels_last",
    "compile",
    "threads",
    "self_ensemble",
)
"""The :class:`UpscaleOptions` fields that :func:`medsr.infer.runtime.get_runner` takes."""


# -- options -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UpscaleOptions:
    """How every input of a run is super-resolved and written.

    The first twelve are :func:`medsr.infer.upscale.upscale_image`'s settings (see there;
    tile and overlap in input pixels, ``tile`` None: automatic, 0: whole planes).
    ``format``: the output format (None: the input's, :func:`output_format`). ``overwrite``:
    replace existing outputs (with a ledger: only medsr's own, :mod:`medsr.infer.outputs`).
    ``save_maps``: write the consistency maps beside each output (:mod:`medsr.infer.safety`).
    ``deidentify``: one state for the whole run, so that UIDs map consistently (DICOM output
    only). ``description``: the derived series' description (None: ``<model> x<scale>``).
    """

    axis: str | int = "in-plane"
    tile: int | None = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    self_ensemble: bool = False
    engine: str | None = None
    threads: int | None = None
    consistency: ConsistencyOptions | None = None
    format: str | None = None
    overwrite: bool = False
    save_maps: bool = False
    deidentify: DeidentificationState | None = field(default=None, compare=False)
    description: str | None = None

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in WRITABLE:
            raise ConfigError(f"unknown output format {self.format!r}; choose from {WRITABLE}")

    def engine_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`medsr.infer.runtime.get_runner` (also taken by
        ``upscale_image``): which engine runs the model, where and how."""
        return {name: getattr(self, name) for name in ENGINE_SETTINGS}


@dataclass(frozen=True)
class SelfSupervised:
    """The self-supervised method (:mod:`medsr.infer.selfsup`) in place of a trained model:
    it learns from each volume's own in-plane slices and grows its slice axis
    (``UpscaleOptions.axis``). Spacings and thickness in mm (None: from the image)."""

    target_spacing: float | None = None
    slice_thickness: float | None = None
    slice_gap: float | None = None
    slice_profile: str = "gaussian"
    config: SelfSupConfig | None = None


def runner(model: SRModel, options: UpscaleOptions) -> Runner:
    """The engine ``options`` ask for (cached: :func:`upscale` gets the same one); made
    before the first input so that a front end can say what runs, and a bad setting fails
    before any input is read."""
    from medsr.infer.runtime import get_runner

    return get_runner(model, **options.engine_settings())


def upscale(
    image: Image,
    model: SRModel,
    options: UpscaleOptions,
    progress: Callable[[int, int], None] | None = None,
) -> UpscaleResult:
    """:func:`medsr.infer.upscale.upscale_image` with ``options``: the one place they are
    spelled out (``progress(done, total)`` in tiles)."""
    from medsr.infer.upscale import upscale_image

    return upscale_image(
        image,
        model,
        axis=options.axis,
        tile=options.tile,
        overlap=options.overlap,
        batch_size=options.batch_size,
        progress=progress,
        consistency=options.consistency,
        **options.engine_settings(),
    )


# -- the output policy ---------------------------------------------------------------------------
def named_format(out: Path) -> str | None:
    """The format ``out``'s own name asks for when it is an output *file*: ``x.png`` -> png,
    ``x.nii.gz`` -> nifti, ``x.dcm`` -> dicom; None for a folder (no image suffix, or an
    existing folder). Image suffixes medsr reads but does not write (``.jpg``, ``.mat``) are
    refused (ConfigError) rather than taken for a folder name."""
    suffix = suffix_of(out)
    if suffix not in SUFFIX_FORMATS or out.is_dir():
        return None
    fmt = SUFFIX_FORMATS[suffix]
    if fmt not in WRITABLE:
        raise ConfigError(
            f"OUT {out}: medsr does not write {suffix} files; name an output file "
            f"{', '.join(sorted(dict.fromkeys(SUFFIXES.values())))} (or a folder)"
        )
    return fmt


def input_format(path: Path) -> str | None:
    """The format of an input before it is read: a folder is a DICOM series; a file's
    suffix, else its content; None when unknown or unreadable."""
    if path.is_dir():
        return "dicom"
    fmt = SUFFIX_FORMATS.get(suffix_of(path))
    if fmt is not None:
        return fmt
    try:
        return sniff(path)
    except OSError:
        return None


def default_format(source_format: str, *, volume: bool = False) -> str:
    """The output format for an input of ``source_format`` (:data:`OUTPUT_FORMATS`); a volume
    whose format's writer holds only 2D images (PNG) is written as TIFF."""
    fmt = OUTPUT_FORMATS.get(source_format, "npz")
    return "tiff" if volume and fmt not in VOLUME_FORMATS else fmt


def output_format(job: Job, options: UpscaleOptions, image: Image | None = None) -> str | None:
    """The output format of ``job``: the one its output file's name means (it must agree with
    ``options.format``), else ``options.format``, else the input's (:func:`default_format`;
    from ``image`` when read, else from the input's name or content: None when unknown)."""
    named = named_format(job.file) if job.file is not None else None
    if named is not None:
        if options.format is not None and options.format != named:
            raise ConfigError(
                f"OUT {job.file} names a {named} file but --format is {options.format}; "
                "give one or make them agree"
            )
        return named
    if options.format is not None:
        return options.format
    if image is not None:
        source = image.source.format if image.source is not None else "npy"
        return default_format(source, volume=image.is_volume)
    source = input_format(job.path)
    return None if source is None else default_format(source)


def output_path(base: Path, image: Image, fmt: str) -> Path:
    """Where an output named ``base`` (no suffix) goes: a folder for a DICOM volume of
    single-frame files (one file per slice), else a file with the format's suffix."""
    if fmt == "dicom":
        source = image.source
        multiframe = source is not None and source.frame_order is not None
        if image.is_volume and not multiframe:
            return base
    return base.with_name(base.name + SUFFIXES[fmt])


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One input (an image file or a DICOM series folder; ``series_uid`` picks one series of
    a folder holding several) and where its output goes: ``out / stem`` plus the format's
    suffix, or ``file`` when OUT names the output file of a single input."""

    path: Path
    stem: Path  # relative to out, without the format's suffix
    out: Path = Path()  # OUT, or the staging folder of a batch run
    series_uid: str | None = None
    file: Path | None = None

    @property
    def label(self) -> str:
        """How messages name the input: its path, and the output name of one series of a
        folder of several (not the SeriesInstanceUID: UIDs are identifiers, PS3.15)."""
        return str(self.path) + (f" ({self.stem.name})" if self.series_uid else "")

    @property
    def key(self) -> tuple[str, str | None]:
        """The input's identity: an input given twice is one input."""
        return os.path.abspath(self.path), self.series_uid

    def target(self, image: Image, fmt: str) -> Path:
        """The output path for ``image`` written as ``fmt``."""
        return self.file if self.file is not None else output_path(self.out / self.stem, image, fmt)

    def candidates(self, fmt: str | None) -> list[Path]:
        """Every path the output may get before the input is read (for the checks)."""
        return (
            [self.file] if self.file is not None else candidate_outputs(self.out / self.stem, fmt)
        )


@dataclass(frozen=True)
class Plan:
    """The jobs of a run (each input once, in the order found), the files skipped (not
    images), and ``root``: the folder that holds the outputs and their ledger (OUT, or its
    folder when OUT is the output file)."""

    jobs: tuple[Job, ...]
    skipped: tuple[Path, ...]
    root: Path


def series_output_name(number: object, series_uid: str) -> str:
    """The output name of one series of a folder holding several: ``series-<number>-<hash>``
    (``series-<hash>`` without a SeriesNumber). The hash, 8 hex digits of the SHA-256 of the
    SeriesInstanceUID, keeps two series with one number apart and stays the same from run to
    run (it does not reveal the UID)."""
    digest = hashlib.sha256(series_uid.encode("utf-8")).hexdigest()[:8]
    text = str(number).strip() if number is not None else ""
    safe = "".join(c for c in text if c.isalnum() or c in "+-")
    return f"series-{safe}-{digest}" if safe else f"series-{digest}"


def _strip_suffix(name: str) -> str:
    suffix = suffix_of(Path(name))
    return name[: -len(suffix)] if suffix else name


def _is_dicom_file(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        return sniff(path) == "dicom"
    except OSError:
        return False


def _is_image_file(path: Path) -> bool:
    if suffix_of(path) in SUFFIX_FORMATS:
        return True
    try:
        return sniff(path) is not None
    except OSError:
        return False


def is_series_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding DICOM files directly (one input per series);
    any other folder is a tree of inputs."""
    return path.is_dir() and any(p.is_file() and _is_dicom_file(p) for p in path.iterdir())


def _series_jobs(folder: Path, stem: Path, dicom_files: list[Path]) -> list[Job]:
    from medsr.io.dicom import list_series

    groups = list_series(dicom_files)
    if len(groups) <= 1:
        return [Job(folder, stem)]
    return [
        Job(folder, stem / series_output_name(members[0][1].get("SeriesNumber"), uid), Path(), uid)
        for uid, members in sorted(groups.items())
    ]


def _discover(paths: Sequence[Path]) -> tuple[list[Job], list[Path]]:
    """Jobs for ``paths`` (stems relative to OUT), and the files skipped (not images)."""
    jobs: list[Job] = []
    skipped: list[Path] = []

    def walk(folder: Path, stem: Path) -> None:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        dicom_files = [p for p in files if _is_dicom_file(p)]
        if dicom_files:
            jobs.extend(_series_jobs(folder, stem, dicom_files))
        for path in files:
            if path in dicom_files or path.name.upper() == "DICOMDIR":
                continue
            if _is_image_file(path):
                jobs.append(Job(path, stem / _strip_suffix(path.name)))
            else:
                skipped.append(path)
        for sub in entries:
            if sub.is_dir():
                walk(sub, stem / sub.name)

    for path in paths:
        if path.is_dir():
            # a series folder keeps its name under OUT; a folder of studies is mirrored
            walk(path, Path(path.resolve().name) if is_series_folder(path) else Path())
        else:
            # missing or unreadable files become a failed job with a clear error
            jobs.append(Job(path, Path(_strip_suffix(path.name))))
    return jobs, skipped


def plan(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    listed: Sequence[Path] = (),
    single: bool | None = None,
) -> Plan:
    """The jobs for ``inputs`` (files, DICOM series folders, folder trees, searched
    recursively) with their outputs under ``out``.

    A series folder keeps its name under OUT (one ``series-<number>-<hash>`` output per
    series when it holds several); a folder tree is mirrored; a file keeps its name without
    the suffix. ``listed`` (the entries of a list file) are placed below their common
    folder. An input given twice is one job. ``single`` (default: exactly one job) lets OUT
    name the output file, by an image suffix (:func:`named_format`); batch mode passes False.
    """
    out = Path(out)
    jobs, skipped = _discover([Path(p) for p in inputs])
    if listed:
        from medsr.infer.batch import common_root

        root = common_root(listed)
        for entry in listed:
            base = entry if entry.is_dir() and not is_series_folder(entry) else entry.parent
            prefix = Path(os.path.relpath(os.path.abspath(base), root))
            found, skip = _discover([entry])
            skipped.extend(skip)
            jobs.extend(replace(j, stem=prefix / j.stem) for j in found)
    first: dict[tuple[str, str | None], Job] = {}
    for job in jobs:
        first.setdefault(job.key, job)
    unique = list(first.values())
    single = len(unique) == 1 if single is None else single
    file = out if single and named_format(out) is not None else None
    root = out.parent if file is not None else out
    return Plan(
        jobs=tuple(replace(job, out=out, file=file) for job in unique),
        skipped=tuple(skipped),
        root=root,
    )


def check_plan(plan: Plan, options: UpscaleOptions, inputs: Sequence[Path] = ()) -> None:
    """Before anything is read or written: every output format is known or agrees with OUT's
    name, OUT can be written, no output would be, hold or lie inside an input (the jobs'
    and the folder trees ``inputs`` they were found in), and no two inputs would write one
    output. Raises ConfigError/WriteError."""
    planned = [(job.label, job.candidates(output_format(job, options))) for job in plan.jobs]
    refuse_overlaps(planned, [job.path for job in plan.jobs] + list(inputs))
    refuse_collisions(planned)
    check_writable(plan.root)


# -- running -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What :func:`run` made of one job.

    On success: ``output`` (the written file, or the series folder), ``format`` (the
    output's), ``written`` (every file), ``image`` (the input), ``result`` (an
    :class:`~medsr.infer.upscale.UpscaleResult`, or a
    :class:`~medsr.infer.selfsup.SelfSupResult`), ``clipped`` (output pixels outside the
    stored range), ``warnings`` (out of distribution) and ``maps`` (the consistency summary
    when maps were saved). On failure: ``error`` (a message naming no path twice) and
    ``exception``; ``bug`` tells an unexpected exception from a medsr error."""

    job: Job
    output: Path | None = None
    format: str | None = None
    written: list[Path] = field(default_factory=list)
    image: Image | None = None
    result: UpscaleResult | SelfSupResult | None = None
    seconds: float = 0.0
    clipped: int = 0
    warnings: list[OODWarning] = field(default_factory=list)
    maps: dict[str, Any] | None = None
    error: str | None = None
    exception: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def bug(self) -> bool:
        return self.exception is not None and not isinstance(self.exception, MedsrError)


def run(
    job: Job,
    model: SRModel | SelfSupervised,
    options: UpscaleOptions,
    *,
    image: Image | None = None,
    ledger: OutputLedger | None = None,
    progress: Callable[..., None] | None = None,
) -> Outcome:
    """Read ``job``'s input (unless ``image`` is given: a front end that read it under its own
    limits), super-resolve it with ``model`` and write it where the output policy says.

    ``ledger``: the outputs medsr wrote under OUT; an existing output is replaced only with
    ``options.overwrite`` and when the ledger lists it (without a ledger, any existing output
    with ``overwrite``). The output is listed before it is written, so a killed write leaves a
    listed output. ``progress``: ``progress(done, total)`` in tiles for a model;
    ``progress(status)`` (:class:`~medsr.infer.selfsup.SelfSupProgress`) for
    :class:`SelfSupervised`. Errors are caught into the outcome (``error``; ``exception``).
    """
    outcome = Outcome(job)
    start = time.perf_counter()
    try:
        outcome.image = image = (
            read(job.path, series_uid=job.series_uid) if image is None else image
        )
        outcome.format = fmt = output_format(job, options, image)
        assert fmt is not None  # known once the image is read
        target = job.target(image, fmt)
        _refuse_replacing(target, options, ledger)
        # a model's output is checked against its training data and may get maps; the
        # self-supervised method learns from the input itself
        maps = options.save_maps and not isinstance(model, SelfSupervised)
        if maps:
            _check_map_targets(target, options, ledger)
        if isinstance(model, SelfSupervised):
            result, description = _self_supervised(image, model, options, progress)
        else:
            result = upscale(image, model, options, progress)
            description = f"{model.name} x{model.scale}" + (
                f", {SELF_ENSEMBLE}" if options.self_ensemble else ""
            )
        output, outcome.clipped = fit_to_output(result.image, fmt)
        if ledger is not None:
            ledger.record(target)  # before writing: a killed write leaves a listed output
        outcome.written = written = write(
            output,
            target,
            format=fmt,
            overwrite=options.overwrite,
            description=options.description or description,
            deidentify=options.deidentify,
        )
        outcome.result = result
        outcome.output = target if len(written) != 1 else written[0]
        if not isinstance(model, SelfSupervised):
            outcome.warnings = _out_of_distribution(image, model, result, written, fmt)
            if maps:
                outcome.maps = _save_maps(
                    result, image, output, outcome.output, fmt, options, ledger, outcome.warnings
                )
    except FileError as error:  # its message starts with the file; say it once
        outcome.error = error.problem if error.path == job.path else str(error)
        outcome.exception = error
    except MedsrError as error:
        outcome.error, outcome.exception = str(error), error
    except Exception as error:  # a bug: report it, keep going with the other inputs
        logger.debug("unexpected error on %s", job.label, exc_info=True)
        outcome.error = f"unexpected {type(error).__name__}: {error} (a bug in medsr)"
        outcome.exception = error
    outcome.seconds = time.perf_counter() - start
    return outcome


def _refuse_replacing(target: Path, options: UpscaleOptions, ledger: OutputLedger | None) -> None:
    if ledger is not None:
        refuse_replacing(target, ledger, overwrite=options.overwrite)
    elif not options.overwrite and target.exists() and (target.is_file() or any(target.iterdir())):
        raise WriteError(target, "already exists (pass --overwrite to replace it)")


def _self_supervised(
    image: Image,
    method: SelfSupervised,
    options: UpscaleOptions,
    progress: Callable[..., None] | None,
) -> tuple[SelfSupResult, str]:
    from medsr.infer.selfsup import self_supervised_upscale

    result = self_supervised_upscale(
        image,
        axis=options.axis,
        target_spacing=method.target_spacing,
        slice_thickness=method.slice_thickness,
        slice_gap=method.slice_gap,
        slice_profile=method.slice_profile,  # type: ignore[arg-type]
        config=method.config,
        device=options.device,
        threads=options.threads,
        progress=progress,
    )
    description = (
        f"self-supervised through-plane SR {result.acquisition.spacing:.3g} mm -> "
        f"{result.image.spacing[result.axis]:.3g} mm"
    )
    return result, description


# -- safety: out-of-distribution flags and consistency maps (medsr.infer.ood, .safety) -----------
def _out_of_distribution(
    image: Image, model: SRModel, result: UpscaleResult, written: list[Path], fmt: str
) -> list[OODWarning]:
    """Check ``image`` against the model's training data, log the warnings and flag the
    written DICOM files."""
    from medsr.infer.ood import check_input, flag_dicom

    warnings = check_input(image, model, result.normaliser)
    for w in warnings:
        logging.getLogger("medsr.infer.ood").warning("out of distribution: %s", w.text)
    if fmt == "dicom":
        flag_dicom([p for p in written if p.is_file()], warnings)
    return warnings


def _check_map_targets(target: Path, options: UpscaleOptions, ledger: OutputLedger | None) -> None:
    """Before the model runs: refuse map paths that exist and may not be replaced."""
    from medsr.infer.safety import map_paths

    for path in map_paths(target).values():
        _refuse_replacing(path, options, ledger)


def _save_maps(
    result: UpscaleResult,
    image: Image,
    output: Image,
    target: Path,
    fmt: str,
    options: UpscaleOptions,
    ledger: OutputLedger | None,
    warnings: list[OODWarning],
) -> dict[str, Any]:
    """Compute and write the maps of one output (``output``: the image as written to
    ``target``); returns their summary."""
    from medsr.infer.ood import flag_text
    from medsr.infer.safety import consistency_map, map_paths, write_maps

    maps = consistency_map(result, image, output=output)
    if warnings:
        maps.summary["out_of_distribution"] = [w.text for w in warnings]
    paths = map_paths(target)
    _check_map_targets(target, options, ledger)
    if ledger is not None:
        for path in paths.values():
            ledger.record(path)
    write_maps(
        maps,
        output,
        paths,
        fmt,
        overwrite=options.overwrite,
        deidentify=options.deidentify,
        flag=flag_text(warnings),
    )
    return maps.summary
