"""``medsr upscale INPUT... -o OUT``: super-resolve images, DICOM series and volumes.

Every input is read, super-resolved with :func:`medsr.infer.upscale_image` and written in
its own format (a DICOM series as a derived series, NIfTI with a rescaled affine, PNG/TIFF in
the source bit depth) under OUT. A folder that holds DICOM files directly is one series (one
input per series when it holds several); any other folder is searched recursively and its
tree is mirrored under OUT. A failed input is reported and the others still run; the exit
status is 1 if any failed. A folder tree, a ``--list`` file or a ``torchrun`` launch runs in
batch mode (:mod:`medsr.infer.batch`: sharded, resumable, with a manifest; docs/batch.md).
Before any input is read, :func:`check_outputs` refuses outputs that are, hold or lie inside
an input, two inputs with one output and an OUT that cannot be written; ``--overwrite``
replaces only medsr's own earlier outputs (:mod:`medsr.infer.outputs`).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medsr.cli.deidentify import add_deidentify_arguments, deidentification_state
from medsr.cli.dicomweb import add_dicomweb_arguments, uses_dicomweb, with_dicomweb
from medsr.cli.progress import Progress
from medsr.cli.safety import add_safety_arguments, consistency_options, refuse_in_batch
from medsr.cli.selfsup import add_self_supervised_arguments, run_self_supervised
from medsr.errors import ConfigError, FileError, MedsrError, WriteError
from medsr.infer.defaults import (
    BATCH_TILE,
    DEFAULT_MODELS,
    DEFAULT_OVERLAP,
    DEFAULT_SCALE,
    DEFAULT_TILE,
    DEVICES,
    ENGINES,
    FALLBACK_MODEL,
    PRECISIONS,
    default_model,
)
from medsr.infer.outputs import OutputLedger
from medsr.io import WRITABLE, read, write
from medsr.io.image import Image
from medsr.io.read import SUFFIX_FORMATS, sniff, suffix_of
from medsr.io.write import SUFFIXES

if TYPE_CHECKING:
    from medsr.infer.batch import BatchItem, ItemResult
    from medsr.infer.model_source import SRModel
    from medsr.infer.upscale import UpscaleResult

logger = logging.getLogger(__name__)

# The output format of each input format (MAT and JPEG are not written: NPZ keeps the spacing,
# PNG is lossless).
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
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def _defaults_text() -> str:
    return ", ".join(f"x{s}: {name}" for s, name in sorted(DEFAULT_MODELS.items()))


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="super-resolve images, DICOM series and volumes",
        description=(
            "Super-resolve each INPUT (an image file, a DICOM series folder, a NIfTI volume, or "
            "a folder of studies, searched recursively) and write the result under OUT in the "
            "input's format: a DICOM series becomes a derived series (new series of the same "
            "study, marked not for primary diagnosis), NIfTI keeps a rescaled affine, PNG/TIFF "
            "keep their bit depth. Intensities stay in the input's physical units (HU stays HU). "
            f"Default model: the shipped medsr model for the scale ({_defaults_text()}), "
            f"else {FALLBACK_MODEL}. Outputs are not for primary diagnosis."
        ),
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="files or folders")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output folder (the inputs' names or relative tree are kept under it); with a "
        "single input, a file name with an image suffix (.dcm, .nii, .nii.gz, .png, .tif, .npy, "
        ".npz) is the output file, in the format its suffix names. Never an input, inside one "
        "or holding one",
    )
    p.add_argument(
        "--model",
        default=None,
        help=f"a shipped model (`medsr models`), an interpolation (nearest, bilinear, bicubic, "
        f"lanczos), a checkpoint folder, an .onnx file from `medsr export`, or ESRGAN "
        f".pth/.safetensors weights (default: by scale, {_defaults_text()}; else "
        f"{FALLBACK_MODEL})",
    )
    p.add_argument(
        "--scale",
        type=int,
        default=None,
        help=f"scale factor (interpolation: default {DEFAULT_SCALE}; a trained model's own "
        "scale must match)",
    )
    p.add_argument(
        "--axis",
        default="in-plane",
        help="in-plane (every slice grows), through-plane (the slice axis 0 grows: for "
        "thick-slice volumes) or an array axis 0/1/2 to grow through-plane",
    )
    p.add_argument("--format", choices=WRITABLE, help="output format (default: the input's)")
    p.add_argument(
        "--tile",
        type=int,
        default=DEFAULT_TILE,
        help="tile size in input pixels, 0 for whole slices (default: automatic, whole slices "
        "unless the model's working memory for one would exceed 1.5 GiB)",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        help=f"tile overlap in input pixels (default {DEFAULT_OVERLAP})",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"tiles per model call (default: about one {BATCH_TILE}x{BATCH_TILE} tile's "
        "worth of input pixels; 8 times that on a GPU)",
    )
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: CUDA, else CPU")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16/fp16 autocast on a GPU (ignored on the CPU)",
    )
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    p.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the 8 flips/rotations (8x slower, often slightly better)",
    )
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="torch or onnxruntime (default: torch; onnxruntime for .onnx models)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier outputs of medsr (those listed in OUT/.medsr-outputs or an "
        "earlier batch manifest); other existing files are never replaced",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress on stderr (by default a bar on a terminal, else a plain line every "
        "10 s: input k of n, percent done, ETA)",
    )
    add_deidentify_arguments(p)
    add_safety_arguments(p)
    add_batch_arguments(p)
    add_self_supervised_arguments(p)
    add_dicomweb_arguments(p)


# -- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One input: a file or a DICOM series folder, and where its output goes (relative)."""

    path: Path
    stem: Path  # output path relative to OUT, without the format's suffix
    series_uid: str | None = None

    @property
    def label(self) -> str:
        # the output name, not the SeriesInstanceUID: UIDs are identifiers (PS3.15)
        return str(self.path) + (f" ({self.stem.name})" if self.series_uid else "")


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


def series_output_name(number: object, series_uid: str) -> str:
    """The output name of one series of a folder holding several: ``series-<number>-<hash>``
    (``series-<hash>`` without a SeriesNumber). The hash, 8 hex digits of the SHA-256 of the
    SeriesInstanceUID, keeps two series with one number apart and stays the same from run to
    run (it does not reveal the UID)."""
    import hashlib

    digest = hashlib.sha256(series_uid.encode("utf-8")).hexdigest()[:8]
    text = str(number).strip() if number is not None else ""
    safe = "".join(c for c in text if c.isalnum() or c in "+-")
    return f"series-{safe}-{digest}" if safe else f"series-{digest}"


def _series_jobs(folder: Path, stem: Path, dicom_files: list[Path]) -> list[Job]:
    from medsr.io.dicom import list_series

    groups = list_series(dicom_files)
    if len(groups) <= 1:
        return [Job(folder, stem)]
    return [
        Job(folder, stem / series_output_name(members[0][1].get("SeriesNumber"), uid), uid)
        for uid, members in sorted(groups.items())
    ]


def discover(paths: list[str]) -> tuple[list[Job], list[str]]:
    """Jobs for the command-line inputs, and the files skipped (not images)."""
    jobs: list[Job] = []
    skipped: list[str] = []

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
                skipped.append(str(path))
        for sub in entries:
            if sub.is_dir():
                walk(sub, stem / sub.name)

    for text in paths:
        path = Path(text)
        if path.is_dir():
            has_dicom = any(p.is_file() and _is_dicom_file(p) for p in path.iterdir())
            # a series folder keeps its name under OUT; a folder of studies is mirrored
            walk(path, Path(path.resolve().name) if has_dicom else Path())
        else:
            # missing or unreadable files become a failed job with a clear error
            jobs.append(Job(path, Path(_strip_suffix(path.name))))
    return jobs, skipped


def named_output_format(out: Path) -> str | None:
    """The format OUT's own name asks for when it is an output *file* (a single input):
    ``x.png`` -> png, ``x.nii.gz`` -> nifti, ``x.dcm`` -> dicom; None for a folder (no image
    suffix, or an existing folder). Image suffixes medsr reads but does not write (``.jpg``,
    ``.mat``) are refused rather than taken for a folder name."""
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


def output_format(
    job: Job, args: argparse.Namespace, out: Path, single: bool, image: Image | None = None
) -> str | None:
    """The output format of ``job``: OUT's suffix for a single input written to a file (it
    must agree with ``--format``), else ``--format``, else the input's (from ``image`` when
    read, else from the input's name or content; None when that is unknown)."""
    named = named_output_format(out) if single else None
    if named is not None:
        if args.format is not None and args.format != named:
            raise ConfigError(
                f"OUT {out} names a {named} file but --format is {args.format}; "
                "give one or make them agree"
            )
        return named
    if args.format is not None:
        return args.format
    if image is not None:
        source_format = image.source.format if image.source is not None else "npy"
    elif job.path.is_dir():
        source_format = "dicom"
    else:
        source_format = SUFFIX_FORMATS.get(suffix_of(job.path))
        if source_format is None:
            try:
                source_format = sniff(job.path)
            except OSError:
                return None
        if source_format is None:
            return None
    return OUTPUT_FORMATS.get(source_format, "npz")


def output_path(job: Job, image: Image, out: Path, fmt: str, single: bool) -> Path:
    """Where ``job``'s output goes: a file, or a folder for a DICOM series."""
    if single and named_output_format(out) is not None:
        return out
    base = out / job.stem
    if fmt == "dicom":
        source = image.source
        multiframe = source is not None and source.frame_order is not None
        if image.is_volume and not multiframe:
            return base
        return base.with_name(base.name + ".dcm")
    return base.with_name(base.name + SUFFIXES[fmt])


# -- running -----------------------------------------------------------------------------------
def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _spacing(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def _fidelity(value: float) -> str:
    return "inf dB" if math.isinf(value) else f"{value:.1f} dB"


@dataclass
class Outcome:
    job: Job
    output: Path | None = None
    image: Image | None = None
    result: UpscaleResult | None = None
    seconds: float = 0.0
    clipped: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()  # safety lines under the summary (medsr.cli.safety)


def _describe_model(model: SRModel) -> str:
    kind = "trained" if model.trained else "interpolation"
    return f"{model.name} x{model.scale} ({kind})"


def progress_bar(quiet: bool = False) -> Progress:
    """The per-input progress of ``medsr upscale`` on stderr: a bar on a terminal, plain
    periodic lines otherwise (:mod:`medsr.cli.progress`)."""
    return Progress("medsr upscale", quiet=quiet)


def run(args: argparse.Namespace) -> int:
    if uses_dicomweb(args):  # URL inputs fetched to a folder, --to stored after (docs/pacs.md)
        return with_dicomweb(args, run)
    if args.self_supervised:
        # a folder tree is fine (one model per volume, one process); sharding and manifests
        # are batch-mode features the self-supervised path does not have
        if args.list or args.manifest or os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
            raise ConfigError(
                "--self-supervised runs in one process over INPUT files and folders: "
                "--list, --manifest and torchrun are not supported with it"
            )
        return run_self_supervised(args)
    if args.model is None:  # the shipped model for this scale (batch and single runs alike)
        args.model = default_model(args.scale)
    if batch_mode(args):
        return run_batch_command(args)
    if not args.inputs:
        raise ConfigError("no INPUT given (or --list FILE)")

    from medsr.infer.model_source import load_model
    from medsr.infer.runtime import get_runner

    model = load_model(args.model, scale=args.scale)
    runner = get_runner(
        model,
        engine=args.engine,
        device=args.device,
        precision=args.precision,
        channels_last=args.channels_last,
        compile=args.compile,
        threads=args.threads,
        self_ensemble=args.self_ensemble,
    )
    jobs, skipped = discover(args.inputs)
    if not jobs:
        raise ConfigError(f"no image inputs found in {', '.join(args.inputs)}")
    out = Path(args.output)
    check_outputs(jobs, args, out, [Path(p) for p in args.inputs])
    ledger = OutputLedger(output_root(out, len(jobs) == 1))
    state = deidentification_state(args)
    print(f"model: {_describe_model(model)}; {runner.description}")
    for path in skipped:
        print(f"skipped {path} (not an image)")

    progress = progress_bar(quiet=args.quiet)
    outcomes: list[Outcome] = []
    used: set[Path] = set()
    with progress:
        overall = progress.add_task("inputs", total=len(jobs))
        for job in jobs:
            task = progress.add_task(job.path.name, total=None)

            def report(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            outcome = _process(job, model, args, out, len(jobs) == 1, state, report, used, ledger)
            progress.remove_task(task)
            progress.advance(overall)
            outcomes.append(outcome)
            if outcome.error is None:
                print(_summary_line(outcome, model))
                for note in outcome.notes:
                    print(f"  {note}")
            else:
                print(f"FAILED {job.label}: {outcome.error}", file=sys.stderr)
    if len(outcomes) > 1:  # one input: its ok line says it all
        _print_table(outcomes, model)
    failed = sum(o.error is not None for o in outcomes)
    print(
        f"{len(outcomes) - failed} of {len(outcomes)} inputs upscaled"
        + (f", {failed} failed" if failed else "")
    )
    return 1 if failed else 0


def output_target(
    job: Job,
    image: Image,
    args: argparse.Namespace,
    out: Path,
    single: bool,
    used: set[Path] | None = None,
    ledger: OutputLedger | None = None,
) -> tuple[str, Path]:
    """The output format (see :func:`output_format`) and path of ``job``; refuses a path
    another input of this run already took (``used``) and one that exists, unless
    ``--overwrite`` is given and ``ledger`` lists it as an earlier medsr output."""
    from medsr.infer.outputs import refuse_replacing

    fmt = output_format(job, args, out, single, image)
    assert fmt is not None
    target = output_path(job, image, out, fmt, single)
    if used is not None:
        if target in used:
            raise ConfigError(f"output {target} would be written twice (inputs with one name)")
        used.add(target)
    if ledger is not None:
        refuse_replacing(target, ledger, overwrite=args.overwrite)
    elif not args.overwrite and target.exists() and (target.is_file() or any(target.iterdir())):
        raise WriteError(target, "already exists (pass --overwrite to replace it)")
    return fmt, target


def output_root(out: Path, single: bool) -> Path:
    """The folder that holds the outputs (and their list, ``.medsr-outputs``): OUT, or the
    folder of OUT when a single input is written to the file OUT."""
    return out.parent if single and named_output_format(out) is not None else out


def check_outputs(
    jobs: list[Job],
    args: argparse.Namespace,
    out: Path,
    roots: list[Path] | None = None,
    *,
    single: bool | None = None,
) -> None:
    """Before anything is read or written: OUT can be written, no output would be, hold or
    lie inside an input (``jobs`` and the folder ``roots`` they were found in), and no two
    inputs would write one output. ``single`` (default: one job) lets OUT name the output
    file; batch mode passes False. Raises ConfigError/WriteError (exit status 2)."""
    from medsr.infer.outputs import (
        candidate_outputs,
        check_writable,
        refuse_collisions,
        refuse_overlaps,
    )

    single = len(jobs) == 1 if single is None else single
    planned = {}
    for job in jobs:  # an input given twice is one input (its label is the first one's)
        key = (os.path.abspath(job.path), job.series_uid)
        fmt = output_format(job, args, out, single)  # refuses an OUT/--format mismatch
        if single and named_output_format(out) is not None:
            paths = [out]
        else:
            paths = candidate_outputs(out / job.stem, fmt)
        planned.setdefault(key, (job.label, paths))
    inputs = [job.path for job in jobs] + list(roots or [])
    refuse_overlaps(planned.values(), inputs)
    refuse_collisions(planned.values())
    check_writable(output_root(out, single))


def _process(job, model, args, out, single, state, report, used, ledger=None) -> Outcome:
    from medsr.infer.upscale import fit_to_output, upscale_image

    outcome = Outcome(job)
    start = time.perf_counter()
    try:
        image = read(job.path, series_uid=job.series_uid)
        outcome.image = image
        fmt, target = output_target(job, image, args, out, single, used, ledger)
        if getattr(args, "save_maps", False):
            from medsr.cli.safety import check_map_targets

            check_map_targets(target, args, ledger)
        result = upscale_image(
            image,
            model,
            axis=args.axis,
            tile=args.tile,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            self_ensemble=args.self_ensemble,
            engine=args.engine,
            threads=args.threads,
            progress=report,
            consistency=consistency_options(args),
        )
        output, outcome.clipped = fit_to_output(result.image, fmt)
        if ledger is not None:
            ledger.record(target)  # before writing: a killed write leaves a listed output
        written = write(
            output,
            target,
            format=fmt,
            overwrite=args.overwrite,
            description=f"{model.name} x{model.scale}",
            deidentify=state,
        )
        outcome.result = result
        outcome.output = target if len(written) != 1 else written[0]
        from medsr.cli.safety import out_of_distribution, save_maps, summary_notes

        ood = out_of_distribution(image, model, result, written, fmt)
        maps = None
        if getattr(args, "save_maps", False):
            maps, _ = save_maps(
                result,
                image,
                output,
                outcome.output,
                fmt,
                args,
                ledger=ledger,
                state=state,
                warnings=ood,
            )
        outcome.notes = tuple(summary_notes(result, maps, ood))
    except FileError as error:  # its message starts with the file; say it once
        outcome.error = error.problem if error.path == job.path else str(error)
    except MedsrError as error:
        outcome.error = str(error)
    except Exception as error:  # a bug: report it, keep going with the other inputs
        if getattr(args, "debug", False):
            raise
        logger.debug("unexpected error on %s", job.label, exc_info=True)
        outcome.error = f"unexpected {type(error).__name__}: {error} (a bug in medsr; --debug)"
    outcome.seconds = time.perf_counter() - start
    return outcome


def _summary_line(o: Outcome, model: SRModel) -> str:
    assert o.image is not None and o.result is not None
    sr = o.result.image
    return (
        f"ok {o.job.label} -> {o.output}: {_shape(o.image.array.shape)} -> "
        f"{_shape(sr.array.shape)}, spacing {_spacing(o.image.spacing)} -> "
        f"{_spacing(sr.spacing)} mm, {model.name} x{model.scale} {o.result.axis}, "
        f"{o.seconds:.1f} s, fidelity {_fidelity(o.result.fidelity_psnr)}"
        + (f"; {o.clipped} pixel(s) outside the source's stored range clipped" if o.clipped else "")
    )


def _print_table(outcomes: list[Outcome], model: SRModel) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"medsr upscale: {model.name} x{model.scale}")
    for name in ("input", "output", "shape", "spacing (mm)", "time", "fidelity", "status"):
        table.add_column(name)
    for o in outcomes:
        if o.error is None and o.result is not None and o.image is not None:
            table.add_row(
                o.job.label,
                str(o.output),
                f"{_shape(o.image.array.shape)} -> {_shape(o.result.image.array.shape)}",
                f"{_spacing(o.image.spacing)} -> {_spacing(o.result.image.spacing)}",
                f"{o.seconds:.1f} s",
                _fidelity(o.result.fidelity_psnr),
                "ok",
            )
        else:
            table.add_row(o.job.label, "", "", "", f"{o.seconds:.1f} s", "", "FAILED")
    Console(width=200 if not sys.stdout.isatty() else None).print(table)


# -- batch mode: folder trees, list files, torchrun (docs/batch.md) ------------------------------
def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "batch mode",
        "used for a folder tree, a --list file or under torchrun: inputs sharded over the "
        "processes, outputs written atomically, a manifest of results, re-runs resume",
    )
    g.add_argument(
        "--list",
        metavar="FILE",
        help="a text file of inputs, one a line (# comments; relative to the file's folder); "
        "outputs mirror the inputs' tree below their common folder",
    )
    g.add_argument("--manifest", metavar="CSV", help="results manifest (default OUT/manifest.csv)")
    g.add_argument(
        "--retries", type=int, default=1, help="extra attempts of a failed input (default 1)"
    )


def batch_mode(args: argparse.Namespace) -> bool:
    """Folder trees (not a single series folder), list files and torchrun runs go to
    :mod:`medsr.infer.batch`."""
    import os

    if getattr(args, "list", None) or getattr(args, "manifest", None):
        return True
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        return True
    for text in args.inputs:
        path = Path(text)
        if path.is_dir() and not any(p.is_file() and _is_dicom_file(p) for p in path.iterdir()):
            return True
    return False


def _batch_items(args: argparse.Namespace, skipped: list[str]) -> list[BatchItem]:
    from medsr.infer.batch import BatchItem, common_root, read_list_file

    jobs, skip = discover(args.inputs) if args.inputs else ([], [])
    skipped.extend(skip)
    roots = [Path(p) for p in args.inputs]
    if args.list:
        entries = read_list_file(args.list)
        roots.extend(entries)
        root = common_root(entries)
        for entry in entries:
            tree = entry.is_dir() and not any(
                p.is_file() and _is_dicom_file(p) for p in entry.iterdir()
            )
            base = entry if tree else entry.parent
            prefix = Path(os.path.relpath(os.path.abspath(base), root))
            found, skip = discover([str(entry)])
            skipped.extend(skip)
            jobs.extend(Job(j.path, prefix / j.stem, j.series_uid) for j in found)
    if not jobs:
        raise ConfigError(f"no image inputs found in {', '.join(args.inputs) or args.list}")
    check_outputs(jobs, args, Path(args.output), roots, single=False)
    return [BatchItem(j.path, j.stem, j.series_uid) for j in jobs]


def _settings(args: argparse.Namespace, model: SRModel) -> str:
    """What changes the outputs: a resumed run must use the same."""
    return (
        f"{model.name} x{model.scale}; axis {args.axis}; format {args.format or 'auto'}; "
        f"tile {'auto' if args.tile is None else args.tile}; overlap {args.overlap}; "
        f"{args.precision}"
        + ("; self-ensemble" if args.self_ensemble else "")
        + ("; consistency" if getattr(args, "consistency", False) else "")
        + ("; deidentified" if getattr(args, "deidentify", False) else "")
    )


def run_batch_command(args: argparse.Namespace) -> int:
    import copy
    import secrets

    from medsr import distributed as ddp
    from medsr.infer.batch import DIST_TIMEOUT, ItemResult, has_previous_run, run_batch
    from medsr.infer.model_source import load_model
    from medsr.infer.runtime import get_runner
    from medsr.io.deidentify import DeidentificationState

    out = Path(args.output)
    refuse_in_batch(args)
    info = ddp.setup(args.device, timeout=DIST_TIMEOUT)
    try:
        rank_args = copy.copy(args)
        rank_args.device = str(info.device)
        if args.threads is None and info.distributed and info.device.type == "cpu":
            # torchrun sets OMP_NUM_THREADS=1; the cores are better shared out between the
            # processes of this node
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            local = int(os.environ.get("LOCAL_WORLD_SIZE") or info.world_size)
            rank_args.threads = max(1, (cores or os.cpu_count() or 1) // local)
        model = load_model(args.model, scale=args.scale)
        runner = get_runner(
            model,
            engine=args.engine,
            device=rank_args.device,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            threads=rank_args.threads,
            self_ensemble=args.self_ensemble,
        )
        state = deidentification_state(args)
        keyed = state is not None and state.keyed
        if state is not None and not keyed:
            # one random key for all the processes of this run (a resumed run needs --deid-key)
            key = ddp.broadcast_object(secrets.token_bytes(32) if info.is_main else None, info)
            state = DeidentificationState(key=key)
        prefix = f"[rank {info.rank}] " if info.distributed else ""
        if info.is_main:
            print(f"model: {_describe_model(model)}; {runner.description}")

        def items() -> list[BatchItem]:
            resuming = not args.overwrite and has_previous_run(out, args.manifest)
            if state is not None and not keyed and resuming:
                raise ConfigError(
                    "resuming a --deidentify run needs the same --deid-key as the first "
                    "run (else UIDs would differ between the runs); or pass --overwrite"
                )
            skipped: list[str] = []
            found = _batch_items(args, skipped)
            for path in skipped:
                print(f"skipped {path} (not an image)")
            return found

        def process(item: BatchItem, staging: Path) -> ItemResult:
            job = Job(item.path, item.stem, item.series_uid)
            o = _process(job, model, rank_args, staging, False, state, None, set())
            if o.error is not None or o.image is None or o.result is None:
                return ItemResult(error=o.error or "no result")
            image, sr = o.image, o.result.image
            return ItemResult(
                output=o.output,
                input_shape=tuple(image.array.shape),
                output_shape=tuple(sr.array.shape),
                input_spacing=tuple(image.spacing),
                output_spacing=tuple(sr.spacing),
                slices=int(image.array.shape[0]) if image.is_volume else 1,
                model=f"{model.name} x{model.scale}",
                fidelity_psnr=o.result.fidelity_psnr,
            )

        def on_plan(pending: int, skipped: int) -> None:
            if info.is_main and skipped:
                print(f"resuming: {skipped} input(s) already done, {pending} to do")

        def on_result(item: BatchItem, row: dict[str, str], result: ItemResult | None) -> None:
            if row["status"] == "ok":
                fidelity = _fidelity(float(row["fidelity_psnr"] or "nan"))
                print(
                    f"{prefix}ok {item.path} -> {out / row['output']}: {row['input_shape']} -> "
                    f"{row['output_shape']}, {row['seconds']} s, fidelity {fidelity}"
                )
            else:
                print(f"{prefix}FAILED {item.path}: {row['error']}", file=sys.stderr)

        report = run_batch(
            items,
            process,
            out=out,
            settings=_settings(args, model),
            manifest=args.manifest,
            dist_info=info,
            retries=args.retries,
            overwrite=args.overwrite,
            on_result=on_result,
            on_plan=on_plan,
        )
    finally:
        ddp.teardown(info)
    if info.is_main:
        print(
            f"{report.ok} of {report.processed} inputs upscaled"
            + (f", {report.failed} failed" if report.failed else "")
            + (f"; {report.skipped} already done" if report.skipped else "")
        )
        if report.failures:
            print(f"failed inputs (after {args.retries} retry/retries):", file=sys.stderr)
            for path, error in report.failures:
                print(f"  {path}: {error}", file=sys.stderr)
        for line in report.lines():
            print(line)
        print(f"manifest: {report.manifest}")
    return 1 if report.failed else 0
