"""``medsr prepare SOURCE... --out DIR``: slice store, manifest, subject splits, cleaning report."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from medsr.data.scan import DEFAULT_SLICE_AXIS
from medsr.errors import ConfigError
from medsr.transforms.intensity import CT_WINDOWS, METHODS

if TYPE_CHECKING:
    from medsr.data.manifest import PrepareOptions

EPILOG = f"""\
slice axis (--slice-axis): the axis of the array as medsr reads it that is cut into 2D
  slices. Default {DEFAULT_SLICE_AXIS["npz"]} (the last) for npz and npy arrays, usually stored
  (H, W, S) like the spine MRI files; 0 for everything else (DICOM slice order, NIfTI third
  voxel axis, TIFF pages, MAT third dimension). DATASET=AXIS sets it for one dataset.

modality (--modality): DATASET=CODE forces it for one dataset; a bare CODE fills in for
  files that carry none (all but DICOM); otherwise it is guessed from the dataset folder
  name (words mri/mr -> MR, ct -> CT, xray/cxr/radiograph -> DX), else OT. It picks the
  normaliser: CT window, MR foreground percentiles, X-ray bit depth, else min-max.

subject ids: --subject-regex on the path under the source folder (group "subject", else
  group 1, else the match); else DICOM PatientID / MAT PID as a salted hash (id-...); else
  the first subfolder under the source (BraTS pat0003/), else the file stem (VB1_02.npz).

masks: files whose name contains mask, seg or label are masks, not images; one is attached
  to the image of the same name without the mask word (case1_mask.png -> case1.png), or, if
  it is the only mask of its folder, to every image of that folder (brainmask.nii.gz).

splits: by subject, stratified by dataset, seeded (see docs/data.md for the algorithm).
"""


def _keyed(values: list[str], convert, what: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for value in values or []:
        dataset, _, setting = value.rpartition("=")
        try:
            out[dataset] = convert(setting)
        except ValueError as error:
            raise ConfigError(f"--{what} {value!r}: {error}") from error
    return out


def _window(value: str) -> str | tuple[float, float]:
    if value in CT_WINDOWS:
        return value
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError as error:
        raise ConfigError(
            f"--ct-window {value!r}: a name ({', '.join(CT_WINDOWS)}) or LOW,HIGH in HU"
        ) from error
    return low, high


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="build a dataset: slice store, manifest, subject-level splits, cleaning report",
        description="Scan folders or files (DICOM series, NIfTI, NPY/NPZ, MAT, PNG, JPEG, TIFF), "
        "cut every volume into 2D slices, remove blank and duplicate slices, split by subject "
        "and write DIR/manifest.csv (one row per slice), DIR/report.json and a memory-mapped "
        "slice store DIR/store/*.npy.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder or file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        default="csv",
        help="also write manifest.parquet (needs pyarrow); the CSV is always written",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a dataset prepared in DIR")
    g = p.add_argument_group("slices and subjects")
    g.add_argument("--slice-axis", action="append", metavar="[DATASET=]AXIS", help="0, 1 or 2")
    g.add_argument("--modality", action="append", metavar="[DATASET=]CODE", help="e.g. MR, CT")
    g.add_argument("--subject-regex", metavar="REGEX", help="subject id from the relative path")
    g.add_argument(
        "--salt",
        help="salt of the hashed subject ids (default: $MEDSR_SUBJECT_SALT, else random per run)",
    )
    g = p.add_argument_group("splits")
    g.add_argument(
        "--split",
        nargs=3,
        type=float,
        default=[0.8, 0.1, 0.1],
        metavar=("TRAIN", "VAL", "TEST"),
        help="subject fractions (default 0.8 0.1 0.1)",
    )
    g.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    g = p.add_argument_group("cleaning")
    g.add_argument(
        "--foreground-threshold",
        type=float,
        default=0.05,
        help="normalised value above which a pixel is foreground (default 0.05)",
    )
    g.add_argument(
        "--min-foreground",
        type=float,
        default=0.01,
        help="slices with a smaller foreground fraction are blank (default 0.01)",
    )
    g.add_argument(
        "--min-std",
        type=float,
        default=1e-3,
        help="slices with a smaller normalised standard deviation are blank (default 0.001)",
    )
    g.add_argument("--keep-blank", action="store_true", help="do not remove blank slices")
    g.add_argument("--keep-duplicates", action="store_true", help="do not remove duplicates")
    g.add_argument(
        "--crop-border", action="store_true", help="crop each volume to its foreground box"
    )
    g.add_argument("--crop-margin", type=int, default=8, help="pixels kept around it (default 8)")
    pad = g.add_mutually_exclusive_group()
    pad.add_argument("--pad-to", type=int, metavar="N", help="pad (centred) to N x N at least")
    pad.add_argument("--pad-multiple", type=int, metavar="M", help="pad to a multiple of M")
    g.add_argument(
        "--resize",
        type=int,
        nargs="+",
        metavar="SIZE",
        help="resize to SIZE x SIZE or H W (antialiased bicubic), after crop and pad",
    )
    g = p.add_argument_group("intensity normalisation (stored per volume)")
    g.add_argument("--normaliser", choices=METHODS, default="auto", help="default: by modality")
    g.add_argument(
        "--ct-window",
        default="wide",
        help=f"CT window: {', '.join(CT_WINDOWS)} or LOW,HIGH in HU (default wide)",
    )
    g.add_argument(
        "--percentiles",
        nargs=2,
        type=float,
        default=[0.5, 99.5],
        metavar=("LOW", "HIGH"),
        help="MR percentiles (default 0.5 99.5)",
    )
    g.add_argument("--unclipped", action="store_true", help="exactly invertible, may leave [0, 1]")


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    from medsr.data.manifest import PrepareOptions

    resize = None
    if args.resize:
        if len(args.resize) not in (1, 2):
            raise ConfigError(f"--resize takes SIZE or H W, got {args.resize}")
        resize = (args.resize[0], args.resize[-1])
    return PrepareOptions(
        slice_axis=_keyed(args.slice_axis, int, "slice-axis"),  # type: ignore[arg-type]
        modality=_keyed(args.modality, str.upper, "modality"),  # type: ignore[arg-type]
        subject_regex=args.subject_regex,
        salt=args.salt or os.environ.get("MEDSR_SUBJECT_SALT") or None,
        fractions=tuple(args.split),  # type: ignore[arg-type]
        seed=args.seed,
        foreground_threshold=args.foreground_threshold,
        min_foreground=args.min_foreground,
        min_std=args.min_std,
        remove_blank=not args.keep_blank,
        remove_duplicates=not args.keep_duplicates,
        crop_border=args.crop_border,
        crop_margin=args.crop_margin,
        pad_to=args.pad_to,
        pad_multiple=args.pad_multiple,
        resize=resize,
        normaliser=args.normaliser,
        ct_window=_window(args.ct_window),
        percentiles=tuple(args.percentiles),  # type: ignore[arg-type]
        clip=not args.unclipped,
        format=args.format,
    )


def run(args: argparse.Namespace) -> int:
    from medsr.data.manifest import prepare

    result = prepare(args.sources, args.out, options_from_args(args), overwrite=args.overwrite)
    report = result.report
    heads = ("volumes", "slices", "blank_removed", "duplicate_removed", "kept", "subjects")
    width = max(len(name) for name in [*report["by_dataset"], "total"])
    print(f"{'dataset':<{width}}  " + "  ".join(f"{h:>{len(h)}}" for h in heads))
    rows = [*report["by_dataset"].items(), ("total", report["totals"])]
    for name, counts in rows:
        print(f"{name:<{width}}  " + "  ".join(f"{counts.get(h, 0):>{len(h)}}" for h in heads))
    print("split   subjects  volumes  slices")
    for name, counts in report["splits"].items():
        print(f"{name:<6}  {counts['subjects']:>8}  {counts['volumes']:>7}  {counts['slices']:>6}")
    transforms = {k: v for k, v in report["transforms"].items() if v}
    if transforms:
        print("volumes transformed: " + ", ".join(f"{k} {v}" for k, v in transforms.items()))
    for item in report["skipped"]:
        print(f"skipped: {item['path']}: {item['error']}")
    for mask in report["unattached_masks"]:
        print(f"unattached mask: {mask}")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"wrote {result.manifest} ({len(result.records)} slices) and {result.report_path}")
    return 0
