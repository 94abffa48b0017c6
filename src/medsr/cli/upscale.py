"""``medsr upscale INPUT... -o OUT``: super-resolve images, DICOM series and volumes.

A front end of :mod:`medsr.infer.pipeline`, which finds the inputs, names the outputs and
runs read -> upscale -> write for each: this module parses the options into an
:class:`~medsr.infer.pipeline.UpscaleOptions` and shows the progress and the outcomes. Every
input is written in its own format (a DICOM series as a derived series, NIfTI with a
rescaled affine, PNG/TIFF in the source bit depth) under OUT. A failed input is reported and
the others still run; the exit status is 1 if any failed. A folder tree, a ``--list`` file or
a ``torchrun`` launch runs in batch mode (:mod:`medsr.infer.batch`: sharded, resumable, with
a manifest; docs/batch.md). Before any input is read, :func:`~medsr.infer.pipeline.check_plan`
refuses outputs that are, hold or lie inside an input, two inputs with one output and an OUT
that cannot be written; ``--overwrite`` replaces only medsr's own earlier outputs
(:mod:`medsr.infer.outputs`).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr.cli.deidentify import add_deidentify_arguments, deidentification_state
from medsr.cli.dicomweb import add_dicomweb_arguments, uses_dicomweb, with_dicomweb
from medsr.cli.progress import Progress
from medsr.cli.safety import (
    add_safety_arguments,
    consistency_options,
    refuse_in_batch,
    summary_notes,
)
from medsr.cli.selfsup import (
    add_self_supervised_arguments,
    reporter,
    self_supervised_method,
    summary_line,
)
from medsr.errors import ConfigError
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
from medsr.infer.pipeline import (
    Job,
    Outcome,
    SelfSupervised,
    UpscaleOptions,
    check_plan,
    is_series_folder,
    plan,
    runner,
)
from medsr.infer.pipeline import run as run_job
from medsr.io import WRITABLE

if TYPE_CHECKING:
    from medsr.infer.batch import BatchItem, ItemResult
    from medsr.infer.model_source import SRModel
    from medsr.infer.upscale import UpscaleResult

logger = logging.getLogger(__name__)


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
        help="torch, onnxruntime or openvino (default: automatic: on the CPU, openvino if "
        "installed, else onnxruntime, for shipped models and large jobs; onnxruntime for .onnx "
        "models; else torch)",
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


# -- running -----------------------------------------------------------------------------------
def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _spacing(spacing: tuple[float, ...]) -> str:
    return "x".join(f"{s:.3g}" for s in spacing)


def _fidelity(value: float) -> str:
    return "inf dB" if math.isinf(value) else f"{value:.1f} dB"


def _describe_model(model: SRModel) -> str:
    kind = "trained" if model.trained else "interpolation"
    return f"{model.name} x{model.scale} ({kind})"


def progress_bar(quiet: bool = False, self_supervised: bool = False) -> Progress:
    """The per-input progress of ``medsr upscale`` on stderr: a bar on a terminal, plain
    periodic lines otherwise (:mod:`medsr.cli.progress`)."""
    return Progress(
        "medsr upscale" + (" --self-supervised" if self_supervised else ""), quiet=quiet
    )


def upscale_options(args: argparse.Namespace) -> UpscaleOptions:
    """The pipeline options ``args`` ask for (the de-identification state is added once the
    outputs are checked)."""
    return UpscaleOptions(
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
        consistency=consistency_options(args),
        format=args.format,
        overwrite=args.overwrite,
        save_maps=getattr(args, "save_maps", False),
    )


def failure_text(outcome: Outcome, args: argparse.Namespace) -> str:
    """A failed input's message; with ``--debug`` an unexpected error (a bug) is raised
    instead, with its traceback."""
    assert outcome.error is not None
    if outcome.bug and getattr(args, "debug", False):
        assert outcome.exception is not None
        raise outcome.exception
    return f"{outcome.error}; --debug shows where" if outcome.bug else outcome.error


def run(args: argparse.Namespace) -> int:
    if uses_dicomweb(args):  # URL inputs fetched to a folder, --to stored after (docs/pacs.md)
        return with_dicomweb(args, run)
    options = upscale_options(args)
    if args.self_supervised:
        # a folder tree is fine (one model per volume, one process); sharding and manifests
        # are batch-mode features the self-supervised path does not have
        if args.list or args.manifest or os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
            raise ConfigError(
                "--self-supervised runs in one process over INPUT files and folders: "
                "--list, --manifest and torchrun are not supported with it"
            )
        return run_inputs(args, options, self_supervised_method(args))
    if args.model is None:  # the shipped model for this scale (batch and single runs alike)
        args.model = default_model(args.scale)
    if batch_mode(args):
        return run_batch_command(args, options)
    if not args.inputs:
        raise ConfigError("no INPUT given (or --list FILE)")

    from medsr.infer.model_source import load_model

    model = load_model(args.model, scale=args.scale)
    engine = runner(model, options)
    return run_inputs(
        args, options, model, f"model: {_describe_model(model)}; {engine.description}"
    )


def run_inputs(
    args: argparse.Namespace,
    options: UpscaleOptions,
    method: SRModel | SelfSupervised,
    header: str | None = None,
) -> int:
    """Plan and check the INPUTs' outputs, then run them one by one (a model or
    ``--self-supervised``) with a progress bar and a line per input; 1 if any failed."""
    found = plan(args.inputs, args.output)
    if not found.jobs:
        raise ConfigError(f"no image inputs found in {', '.join(args.inputs)}")
    check_plan(found, options, [Path(p) for p in args.inputs])
    ledger = OutputLedger(found.root)
    options = replace(options, deidentify=deidentification_state(args))
    if header is not None:
        print(header)
    for path in found.skipped:
        print(f"skipped {path} (not an image)")

    selfsup = isinstance(method, SelfSupervised)
    progress = progress_bar(quiet=args.quiet, self_supervised=selfsup)
    outcomes: list[Outcome] = []
    with progress:
        overall = progress.add_task("inputs", total=len(found.jobs))
        for job in found.jobs:
            if selfsup:
                task = progress.add_task(f"{job.path.name}: training", total=None)
                report: Callable[..., None] = reporter(job, progress, task, quiet=args.quiet)
            else:
                task = progress.add_task(job.path.name, total=None)
                report = functools.partial(_update, progress, task)
            outcome = run_job(job, method, options, ledger=ledger, progress=report)
            progress.remove_task(task)
            progress.advance(overall)
            outcomes.append(outcome)
            if not outcome.ok:
                print(f"FAILED {job.label}: {failure_text(outcome, args)}", file=sys.stderr)
            elif selfsup:
                print(summary_line(outcome))
            else:
                print(_summary_line(outcome, method))
                for note in summary_notes(_sr(outcome), outcome.maps, outcome.warnings):
                    print(f"  {note}")
    if len(outcomes) > 1 and not selfsup:  # one input: its ok line says it all
        _print_table(outcomes, method)
    failed = sum(not o.ok for o in outcomes)
    print(
        f"{len(outcomes) - failed} of {len(outcomes)} inputs upscaled"
        + (f", {failed} failed" if failed else "")
    )
    return 1 if failed else 0


def _update(progress: Progress, task: Any, done: int, total: int) -> None:
    progress.update(task, completed=done, total=total)


def _sr(outcome: Outcome) -> UpscaleResult:
    """The result of a model run (not a self-supervised one)."""
    from medsr.infer.upscale import UpscaleResult

    assert isinstance(outcome.result, UpscaleResult)
    return outcome.result


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
    if getattr(args, "list", None) or getattr(args, "manifest", None):
        return True
    if os.environ.get("WORLD_SIZE", "1") not in ("", "1"):
        return True
    return any(Path(p).is_dir() and not is_series_folder(Path(p)) for p in args.inputs)


def _batch_items(args: argparse.Namespace, options: UpscaleOptions) -> list[BatchItem]:
    from medsr.infer.batch import BatchItem, read_list_file

    listed = read_list_file(args.list) if args.list else []
    found = plan(args.inputs, args.output, listed=listed, single=False)
    for path in found.skipped:
        print(f"skipped {path} (not an image)")
    if not found.jobs:
        raise ConfigError(f"no image inputs found in {', '.join(args.inputs) or args.list}")
    check_plan(found, options, [Path(p) for p in args.inputs] + listed)
    return [BatchItem(j.path, j.stem, j.series_uid) for j in found.jobs]


def _settings(args: argparse.Namespace, options: UpscaleOptions, model: SRModel) -> str:
    """What changes the outputs: a resumed run must use the same."""
    return (
        f"{model.name} x{model.scale}; axis {options.axis}; format {options.format or 'auto'}; "
        f"tile {'auto' if options.tile is None else options.tile}; overlap {options.overlap}; "
        f"{options.precision}"
        + ("; self-ensemble" if options.self_ensemble else "")
        + ("; consistency" if options.consistency is not None else "")
        + ("; deidentified" if getattr(args, "deidentify", False) else "")
    )


def run_batch_command(args: argparse.Namespace, options: UpscaleOptions) -> int:
    import secrets

    from medsr import distributed as ddp
    from medsr.infer.batch import DIST_TIMEOUT, ItemResult, has_previous_run, run_batch
    from medsr.infer.model_source import load_model
    from medsr.io.deidentify import DeidentificationState

    out = Path(args.output)
    refuse_in_batch(args)
    info = ddp.setup(args.device, timeout=DIST_TIMEOUT)
    try:
        threads = options.threads
        if threads is None and info.distributed and info.device.type == "cpu":
            # torchrun sets OMP_NUM_THREADS=1; the cores are better shared out between the
            # processes of this node
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            local = int(os.environ.get("LOCAL_WORLD_SIZE") or info.world_size)
            threads = max(1, (cores or os.cpu_count() or 1) // local)
        options = replace(options, device=str(info.device), threads=threads)
        model = load_model(args.model, scale=args.scale)
        engine = runner(model, options)
        state = deidentification_state(args)
        keyed = state is not None and state.keyed
        if state is not None and not keyed:
            # one random key for all the processes of this run (a resumed run needs --deid-key)
            key = ddp.broadcast_object(secrets.token_bytes(32) if info.is_main else None, info)
            state = DeidentificationState(key=key)
        options = replace(options, deidentify=state)
        prefix = f"[rank {info.rank}] " if info.distributed else ""
        if info.is_main:
            print(f"model: {_describe_model(model)}; {engine.description}")

        def items() -> list[BatchItem]:
            resuming = not args.overwrite and has_previous_run(out, args.manifest)
            if state is not None and not keyed and resuming:
                raise ConfigError(
                    "resuming a --deidentify run needs the same --deid-key as the first "
                    "run (else UIDs would differ between the runs); or pass --overwrite"
                )
            return _batch_items(args, options)

        def process(item: BatchItem, staging: Path) -> ItemResult:
            job = Job(item.path, item.stem, staging, item.series_uid)
            o = run_job(job, model, options)
            if not o.ok or o.image is None or o.result is None:
                return ItemResult(error=failure_text(o, args) if not o.ok else "no result")
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
            settings=_settings(args, options, model),
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
