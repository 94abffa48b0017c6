"""``medsr study``: create, report and manage reader studies.

medsr study create STUDY --cases DIR --methods hr bicubic NAME=MODEL... --readers N
medsr study report STUDY [--out DIR] [--bootstrap N] [--seed S] [--confidence C]
medsr study readers STUDY [--add LABEL | --reissue LABEL]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from medsr.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="reader studies: report results, list readers",
        description="Blinded reader studies (mean opinion score). See docs/reader-study.md.",
    )
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)

    create = sub.add_parser(
        "create",
        help="create a study from HR cases and methods (HR, interpolations, trained models)",
        description=(
            "Each image in --cases (a file medsr reads, or a folder holding one DICOM series; "
            "volumes give their middle slice) is one case and its high-resolution reference. "
            "Its LR input is the HR image downscaled by --scale (antialiased bicubic); every "
            "method then makes an image of the HR size: 'hr' is the reference itself, an "
            "interpolation name (bicubic, lanczos...) or NAME=PATH (a checkpoint folder or "
            ".onnx) upscales the LR image. All methods of a case are rendered with one window. "
            "The reader tokens are printed once."
        ),
    )
    create.add_argument("study", type=Path, metavar="STUDY", help="new study folder")
    create.add_argument("--cases", type=Path, required=True, metavar="DIR", help="HR cases")
    create.add_argument(
        "--methods",
        nargs="+",
        required=True,
        metavar="METHOD",
        help="hr, lr (nearest-neighbour blocks), an interpolation, or NAME=PATH",
    )
    create.add_argument("--readers", type=int, default=2, help="number of readers (default 2)")
    create.add_argument("--scale", type=int, default=2, help="downscaling factor (default 2)")
    create.add_argument("--mode", choices=("rating", "pairwise"), default="rating")
    create.add_argument("--seed", type=int, default=0, help="seed of the reading orders")
    create.add_argument("--title", default="Reader study", help="title shown to readers")
    create.add_argument(
        "--window",
        default=None,
        metavar="CENTRE,WIDTH",
        help="display window for every case (default: 0.5-99.5 percentiles of each HR image)",
    )
    create.add_argument(
        "--no-changes", action="store_true", help="readers may not change an answer once given"
    )

    report = sub.add_parser(
        "report",
        help="write the Markdown/HTML report (MOS with CIs, per reader, agreement)",
        description="Analyse the answers so far and write report.md, report.html and mos.png.",
    )
    report.add_argument("study", type=Path, metavar="STUDY", help="the study folder")
    report.add_argument(
        "--out", type=Path, default=None, help="output folder (default: STUDY/report)"
    )
    report.add_argument(
        "--confidence", type=float, default=0.95, help="confidence level (default 0.95)"
    )
    report.add_argument(
        "--bootstrap",
        type=int,
        default=0,
        metavar="N",
        help="add bootstrap intervals (resampling cases and readers) from N resamples",
    )
    report.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")

    readers = sub.add_parser(
        "readers",
        help="list readers and their progress; add a reader or replace a lost token",
        description="Tokens exist in clear only when issued: they are printed once, here.",
    )
    readers.add_argument("study", type=Path, metavar="STUDY", help="the study folder")
    group = readers.add_mutually_exclusive_group()
    group.add_argument("--add", metavar="LABEL", help="add a reader and print its token")
    group.add_argument(
        "--reissue", metavar="LABEL", help="replace this reader's token (the old one stops working)"
    )


def run(args: argparse.Namespace) -> int:
    from medsr.study.store import Study

    if args.study_command == "create":
        return _create(args)
    with Study.open(args.study) as study:
        if args.study_command == "report":
            from medsr.study.report import write_report

            files = write_report(
                study,
                args.out,
                confidence=args.confidence,
                bootstrap=args.bootstrap,
                seed=args.seed,
            )
            print(f"wrote {files.markdown}")
            print(f"wrote {files.html}")
            print(f"wrote {files.plot}")
            return 0
        if args.add is not None:
            reader, token = study.add_reader(args.add)
            print(f"added {reader.label}; token (shown only now): {token}")
        elif args.reissue is not None:
            token = study.reissue_token(args.reissue)
            print(f"new token for {args.reissue} (shown only now; the old one no longer works):")
            print(token)
        rows = study.reader_progress()
        width = max([len("reader")] + [len(r.label) for r in rows])
        print(f"{study.title} ({study.mode}, {len(study.info.cases)} cases)")
        print(f"{'reader':<{width}}  answered  last answer")
        for r in rows:
            print(f"{r.label:<{width}}  {r.answered:>4}/{r.total:<4}  {r.last_answer_at or '-'}")
        return 0


_CASE_NAME = re.compile(r"[^A-Za-z0-9_.+-]+")


def case_name(path: Path) -> str:
    """A study case name from a file or folder name (suffixes dropped, other characters
    replaced by '-', at most 64)."""
    from medsr.io.read import suffix_of

    name = path.name
    suffix = suffix_of(path) if path.is_file() else ""
    if suffix:
        name = name[: -len(suffix)]
    name = _CASE_NAME.sub("-", name).strip("-_.+")[:64]
    return name or "case"


def _hr_plane(path: Path):
    import numpy as np

    from medsr.io import read

    image = read(path)
    array = image.array
    if image.color:
        array = array.mean(axis=-1)
    if array.ndim == 3:
        array = array[array.shape[0] // 2]
    return np.asarray(array, dtype=np.float32), image


def method_images(hr, image, methods: list[str], scale: int) -> dict[str, object]:
    """``{method: (H, W) array}`` for one case: HR cropped to a multiple of ``scale``, and
    each method's image made from its bicubic-downscaled LR version."""
    import numpy as np
    import torch

    from medsr.infer import load_model, upscale_image
    from medsr.io.image import Image
    from medsr.transforms.degrade import bicubic

    h, w = (n - n % scale for n in hr.shape)
    if h < scale or w < scale:
        raise ConfigError(f"an image of {hr.shape} is too small for x{scale}")
    hr = hr[:h, :w]
    lr = bicubic(torch.from_numpy(hr)[None, None], scale, antialias=True, clip=False)[0, 0]
    lr_image = Image(array=lr.numpy(), spacing=(1.0, 1.0), modality=image.modality)
    out: dict[str, object] = {}
    for method in methods:
        name, sep, spec = method.partition("=")
        if not sep:
            spec = name
        if name == "hr":
            out[name] = hr
        elif name == "lr":
            out[name] = np.repeat(np.repeat(lr_image.array, scale, 0), scale, 1)
        else:
            result = upscale_image(lr_image, load_model(spec, scale=scale))
            out[name] = result.image.array
    return out


def _create(args: argparse.Namespace) -> int:
    from medsr.study import create_study, window_from_center_width

    folder: Path = args.cases
    if not folder.is_dir():
        raise ConfigError(f"--cases {folder}: not a folder")
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not entries:
        raise ConfigError(f"--cases {folder}: the folder is empty")
    names = [m.partition("=")[0] for m in args.methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods names a method twice: {names}")
    window = None
    if args.window is not None:
        try:
            centre, width = (float(v) for v in args.window.split(","))
        except ValueError:
            raise ConfigError(f"--window {args.window!r}: expected CENTRE,WIDTH") from None
        window = window_from_center_width(centre, width)
    cases = {}
    for path in entries:
        name = case_name(path)
        if name in cases:
            raise ConfigError(f"two cases are both named {name!r} in {folder}; rename one")
        hr, image = _hr_plane(path)
        cases[name] = method_images(hr, image, list(args.methods), args.scale)
        print(f"case {name}: {', '.join(cases[name])}")
    reference = "hr" if "hr" in names else names[0]
    with create_study(
        args.study,
        cases=cases,
        readers=args.readers,
        seed=args.seed,
        window=window,
        mode=args.mode,
        title=args.title,
        reference_method=reference,
        allow_changes=not args.no_changes,
    ) as study:
        print(
            f"created {study.mode} study {args.study}: {len(cases)} cases x "
            f"{len(names)} methods, {args.readers} readers"
        )
        print("reader tokens (shown only now; hand each reader theirs):")
        for label, token in study.issued_tokens.items():
            print(f"  {label}: {token}")
    return 0
