"""``medsr pair LR_SERIES HR_SERIES``: pair LR slices with HR slices by patient position."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pair",
        help="pair the slices of a real LR series with an HR series by position",
        description="Pair every slice of LR_SERIES with the nearest slice of HR_SERIES along "
        "the common slice normal (ImagePositionPatient projected on it). Both must share the "
        "FrameOfReferenceUID and the orientation. Prints the distance of each pair and the "
        "LR slices without an HR slice within the tolerance.",
    )
    p.add_argument("lr", metavar="LR_SERIES", help="DICOM series folder or multi-frame file")
    p.add_argument("hr", metavar="HR_SERIES", help="DICOM series folder or multi-frame file")
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="MM",
        help="largest distance of a pair along the normal (default: half the HR spacing)",
    )
    p.add_argument(
        "--angle-tolerance",
        type=float,
        default=0.5,
        metavar="DEG",
        help="largest angle between the orientations (default 0.5 degrees)",
    )
    p.add_argument("--out", metavar="CSV", help="write the pairs to this CSV file")
    p.add_argument("--lr-series-uid", help="the LR series, when its folder holds several")
    p.add_argument("--hr-series-uid", help="the HR series, when its folder holds several")


def run(args: argparse.Namespace) -> int:
    from medsr.data.pairing import pair_series, series_slices, write_pairs

    lr = series_slices(args.lr, series_uid=args.lr_series_uid)
    hr = series_slices(args.hr, series_uid=args.hr_series_uid)
    pairing = pair_series(lr, hr, tolerance=args.tolerance, angle_tolerance=args.angle_tolerance)
    print(f"{'lr':>4}  {'lr_position':>11}  {'hr':>4}  {'hr_position':>11}  {'distance':>8}")
    for p in pairing.pairs:
        flag = "" if p.matched else "  (no partner within tolerance)"
        print(
            f"{p.lr_index:>4}  {p.lr_position:>11.3f}  {p.hr_index:>4}  {p.hr_position:>11.3f}"
            f"  {p.distance:>8.3f}{flag}"
        )
    matched = len(pairing.pairs) - len(pairing.unmatched)
    worst = max((p.distance for p in pairing.pairs if p.matched), default=0.0)
    print(
        f"{matched} of {len(lr)} LR slices paired with {len(hr)} HR slices within "
        f"{pairing.tolerance:.3f} mm (largest distance {worst:.3f} mm)"
    )
    if pairing.unmatched:
        listed = ", ".join(str(p.lr_index) for p in pairing.unmatched)
        print(f"LR slices without a partner: {listed}")
    if args.out:
        print(f"wrote {write_pairs(pairing, args.out)}")
    return 0
