"""DICOMweb input and output of ``medsr upscale``: a study or series URL as an INPUT (fetched
with QIDO-RS/WADO-RS into a private temporary folder) and ``--to URL`` (the derived DICOM
written under OUT is also stored there with STOW-RS). Credentials come from the environment
only (:mod:`medsr.net.dicomweb`)."""

from __future__ import annotations

import argparse
import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

from medsr.errors import ConfigError
from medsr.net.dicomweb import PASSWORD_ENV, TOKEN_ENV, USER_ENV, is_dicomweb_url


def add_dicomweb_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "DICOMweb",
        "an INPUT may be a DICOMweb study or series URL (.../studies/UID[/series/UID]); "
        f"credentials from ${TOKEN_ENV} (bearer) or ${USER_ENV}/${PASSWORD_ENV}, never "
        "from the command line",
    )
    g.add_argument(
        "--to",
        metavar="URL",
        default=None,
        help="also store the derived DICOM series with STOW-RS at this DICOMweb root",
    )


def uses_dicomweb(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "to", None)) or any(is_dicomweb_url(t) for t in args.inputs)


def _dicom_files(folder: Path) -> dict[Path, int]:
    if not folder.is_dir():
        return {}
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*.dcm") if p.is_file()}


def with_dicomweb(args: argparse.Namespace, run: Callable[[argparse.Namespace], int]) -> int:
    """Fetch the URL inputs, ``run`` on local copies, then STOW-RS the new DICOM outputs."""
    from medsr.net.dicomweb import DicomwebTarget, fetch, stow

    if args.to:
        DicomwebTarget.parse(args.to)  # a bad URL fails before any work
        if args.format not in (None, "dicom"):
            raise ConfigError(f"--to stores DICOM: --format {args.format} cannot be sent")
        if getattr(args, "self_supervised", False):
            raise ConfigError("--to is not supported with --self-supervised")
    out = Path(args.output)
    before = _dicom_files(out)
    # patient data: a private folder, removed at the end
    with tempfile.TemporaryDirectory(prefix="medsr-dicomweb-") as tmp:
        inputs = []
        for k, text in enumerate(args.inputs, start=1):
            if is_dicomweb_url(text):
                folder = Path(tmp) / f"dicomweb-{k}"
                count = len(fetch(text, folder))
                print(f"fetched {count} instance(s) from {DicomwebTarget.parse(text).base}")
                inputs.append(str(folder))
            else:
                inputs.append(text)
        local = copy.copy(args)
        local.inputs, local.to = inputs, None
        code = run(local)
    if args.to:
        written = sorted(p for p, t in _dicom_files(out).items() if before.get(p) != t)
        if not written:
            print("nothing to store with STOW-RS (no DICOM output written)")
            return code
        stow(written, args.to)
        base = DicomwebTarget.parse(args.to).base
        print(f"stored {len(written)} instance(s) with STOW-RS at {base}")
    return code
