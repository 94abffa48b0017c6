"""``medsr study``: report and manage reader studies (creation is wired elsewhere).

medsr study report STUDY [--out DIR] [--bootstrap N] [--seed S] [--confidence C]
medsr study readers STUDY [--add LABEL | --reissue LABEL]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "study",
        help="reader studies: report results, list readers",
        description="Blinded reader studies (mean opinion score). See docs/reader-study.md.",
    )
    sub = parser.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)

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
