"""``medsr convert IN OUT``: any readable format to any writable one, geometry kept."""

from __future__ import annotations

import argparse

from medsr.cli.deidentify import add_deidentify_arguments, deidentification_state
from medsr.cli.info import add_series_arguments
from medsr.io import READABLE, WRITABLE


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert between image formats, keeping geometry",
        description=f"Read any of {', '.join(READABLE)} (or a DICOM series folder) and write "
        f"{', '.join(WRITABLE)}. The output format comes from OUT's suffix (.dcm, .nii, .nii.gz, "
        ".png, .tif, .npy, .npz) or --format; an OUT without a suffix is a DICOM series folder. "
        "DICOM output derives from the input's header when the input is DICOM (a new series of "
        "the same study), else it is a Secondary Capture.",
    )
    p.add_argument("input", help="image file or DICOM series folder")
    p.add_argument("output", help="output file, or folder for a DICOM series")
    p.add_argument("--format", choices=WRITABLE, help="output format (default: from the suffix)")
    add_series_arguments(p)
    p.add_argument("--key", help="the array to read from an NPZ/MAT file holding several")
    p.add_argument("--overwrite", action="store_true", help="replace existing output")
    add_deidentify_arguments(p)


def run(args: argparse.Namespace) -> int:
    from medsr.io import read, write

    image = read(args.input, series=args.series, series_uid=args.series_uid, key=args.key)
    written = write(
        image,
        args.output,
        format=args.format,
        overwrite=args.overwrite,
        deidentify=deidentification_state(args),
    )
    shape = " x ".join(str(n) for n in image.array.shape)
    where = written[0] if len(written) == 1 else f"{len(written)} files in {written[0].parent}"
    print(f"wrote {where} ({shape}, spacing {' x '.join(f'{s:.4g}' for s in image.spacing)} mm)")
    return 0
