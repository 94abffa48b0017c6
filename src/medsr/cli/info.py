"""``medsr info PATH [--json]``: shape, spacing, modality, dtype, value range, orientation."""

from __future__ import annotations

import argparse
import json

from medsr.io import read


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe an image, volume or DICOM series",
        description="Print shape, spacing (mm), modality, stored dtype, value range (physical "
        "units) and orientation of an image file or a DICOM series folder. No patient data is "
        "printed.",
    )
    p.add_argument("path", help="image file or DICOM series folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--series-uid", help="the series to read when a folder holds several")
    p.add_argument("--key", help="the array to read from an NPZ/MAT file holding several")


def run(args: argparse.Namespace) -> int:
    image = read(args.path, series_uid=args.series_uid, key=args.key)
    facts = image.describe()
    if args.json:
        print(json.dumps(facts))
        return 0
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        if isinstance(value, list):
            value = " x ".join(str(v) for v in value) if key in ("shape", "spacing") else value
        print(f"{key:<{width}}  {value}")
    return 0
