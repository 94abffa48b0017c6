"""``medsr info PATH [--json]``: shape, spacing, modality, dtype, value range, orientation.

Axis order and conventions (docs/inference.md, "Axes and orientation"): medsr arrays are
``(Z, Y, X)`` for volumes (slice, row, column) and ``(Y, X)`` for images; spacing is in mm in
the same order; orientation letters name where each array axis points in DICOM patient
coordinates (LPS: x to the patient's left, y to posterior, z to superior). nibabel indexes
voxels ``(X, Y, Z)``, the reverse order: its ``aff2axcodes`` gives the same letters reversed.

A folder with several DICOM series lists them by index, SeriesNumber, modality, size and
file count (never a UID or the free-text description); ``--series N`` picks one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medsr.io.image import Image
    from medsr.io.series import SeriesInfo

AXES = {2: ("Y", "X"), 3: ("Z", "Y", "X")}
AXIS_WORDS = {"Z": "slice", "Y": "row", "X": "column"}
DIRECTIONS = {
    "L": "left",
    "R": "right",
    "P": "posterior",
    "A": "anterior",
    "S": "superior",
    "I": "inferior",
}
# formats that store no pixel spacing: medsr assumes 1 mm
NO_SPACING = ("png", "jpeg", "tiff", "npy")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe an image, volume or DICOM series",
        description="Print shape (array order Z, Y, X), spacing (mm), modality, stored dtype, "
        "value range (physical units) and orientation (LPS letters; nibabel's X, Y, Z order is "
        "the reverse) of an image file or a DICOM series folder. A folder with several series "
        "lists them by index, number, modality, size and file count; --series N picks one. No "
        "patient data, UID or header free text is printed.",
    )
    p.add_argument("path", help="image file or DICOM series folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_series_arguments(p)
    p.add_argument("--key", help="the array to read from an NPZ/MAT file holding several")


def add_series_arguments(p: argparse.ArgumentParser) -> None:
    """``--series N`` (and ``--series-uid``) for commands that read a DICOM folder."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--series",
        type=int,
        metavar="N",
        help="the series to read when a folder holds several: its index as `medsr info` "
        "lists them (1, 2, ...)",
    )
    group.add_argument(
        "--series-uid", metavar="UID", help="the same by SeriesInstanceUID (never printed)"
    )


def run(args: argparse.Namespace) -> int:
    from medsr.errors import MixedSeriesError
    from medsr.io import read

    try:
        image = read(args.path, series=args.series, series_uid=args.series_uid, key=args.key)
    except MixedSeriesError:
        path = Path(args.path)
        if not path.is_dir() or args.series is not None or args.series_uid is not None:
            raise
        from medsr.io.series import list_folder

        infos = list_folder(path)
        if len(infos) < 2:
            raise  # one series that is itself inconsistent: the error says why
        print_series(infos, as_json=args.json)
        return 0
    facts = facts_of(image)
    if args.json:
        print(json.dumps(facts))
        return 0
    for key, value in lines_of(image, facts):
        print(f"{key:<12}  {value}")
    return 0


def print_series(infos: list[SeriesInfo], *, as_json: bool) -> None:
    """The series of a folder: index, number, modality, size, files (no UID, no text)."""
    if as_json:
        print(json.dumps({"series": [info.as_dict() for info in infos]}))
        return
    print(f"the folder holds {len(infos)} DICOM series; pick one with --series N:")
    header = ("N", "number", "modality", "size", "files")
    rows = [
        (
            str(i.index),
            "-" if i.number is None else str(i.number),
            i.modality,
            i.size,
            str(i.files) + (f" ({i.frames} frames)" if i.frames > i.files else ""),
        )
        for i in infos
    ]
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def axes_of(image: Image) -> tuple[str, ...]:
    names = AXES[image.ndim]
    return (*names, "C") if image.color else names


def facts_of(image: Image) -> dict[str, Any]:
    """``Image.describe()`` plus the conventions, for ``--json``."""
    facts = image.describe()
    axes = axes_of(image)
    facts["axes"] = list(axes)
    facts["spacing_unit"] = "mm"
    facts["spacing_assumed"] = facts["format"] in NO_SPACING
    facts["orientation_convention"] = "LPS: letters name where each spatial array axis points"
    facts["nibabel_axcodes"] = list(reversed(facts["orientation"]))
    facts["value_unit"] = value_unit(image)
    return facts


def value_unit(image: Image) -> str:
    if image.modality == "CT":
        return "HU"
    if image.source is not None and image.source.format == "dicom":
        return "scanner units (after RescaleSlope/Intercept)"
    return "as stored"


def _number(value: float) -> str:
    return f"{value:.6g}"


def lines_of(image: Image, facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The human-readable report: rounded numbers, units, axis order and conventions."""
    axes = axes_of(image)
    spatial = AXES[image.ndim]
    words = ", ".join(AXIS_WORDS.get(a, "channel") for a in axes)
    shape = " x ".join(str(n) for n in image.array.shape)
    spacing = " x ".join(f"{s:.4g}" for s in image.spacing)
    if facts["spacing_assumed"]:
        spacing += f" mm (assumed: {facts['format'].upper()} stores no spacing)"
    else:
        spacing += f" mm ({', '.join(spatial)})"
    origin = ", ".join(f"{v:.2f}" for v in image.origin)
    code = facts["orientation"]
    pointing = ", ".join(f"{a} to {DIRECTIONS[c]}" for a, c in zip(spatial, code, strict=True))
    spatial_shape = image.array.shape[: image.ndim]
    nibabel_shape = " x ".join(str(n) for n in reversed(spatial_shape))
    lines = [
        ("format", str(facts["format"] or "array")),
        ("modality", image.modality),
        ("shape", f"{shape} (axes {', '.join(axes)}: {words})"),
        ("spacing", spacing),
    ]
    if facts["spacing_assumed"]:  # no geometry in the file: say what medsr assumes
        lines.append(("orientation", f"{code} assumed: {pointing} (none stored)"))
    else:
        lines += [
            ("orientation", f"{code}: {pointing} (DICOM patient coordinates, LPS)"),
            (
                "nibabel",
                f"the reverse order: shape {nibabel_shape} ({', '.join('XYZ'[: image.ndim])}), "
                f"aff2axcodes {''.join(reversed(code))}",
            ),
            ("origin", f"({origin}) mm, centre of the first pixel, LPS"),
        ]
    stored = str(facts["dtype"])
    if facts["bits_stored"]:
        stored += f", {facts['bits_stored']} bits stored"
    lines.append(("stored as", stored))
    if facts["min"] is None:
        lines.append(("values", "no finite value"))
    else:
        unit = facts["value_unit"]
        lines.append(("values", f"{_number(facts['min'])} to {_number(facts['max'])} ({unit})"))
    nonfinite = facts.get("nonfinite", 0)
    if nonfinite:
        lines.append(("nonfinite", f"{nonfinite} NaN or infinite values (upscale refuses them)"))
    lines.append(("colour", "yes (RGB, last axis)" if image.color else "no"))
    lines.append(("mask", "yes" if facts["has_mask"] else "no"))
    return lines
