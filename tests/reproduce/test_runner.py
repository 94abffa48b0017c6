"""Each work's smoke profile end to end on the tiny stand-in data."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medsr.errors import ConfigError
from medsr.reproduce import ReproduceOptions, reproduce
from medsr.reproduce.papers import load_paper
from medsr.reproduce.report import display_digits


def _run(work: int, data: Path, tmp_path: Path, **kw) -> tuple[Path, str]:
    options = ReproduceOptions(
        work=work,
        profile="smoke",
        data=data,
        work_dir=tmp_path / "work",
        out=tmp_path / "out",
        **kw,
    )
    result = reproduce(options)
    text = (result.report / "report.md").read_text(encoding="utf-8")
    return result.report, text


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def _check_both_columns(work: int, text: str) -> None:
    paper = load_paper(work)
    table = paper.tables[0]
    for column in table.columns:
        assert f"{column.label} paper" in text
        assert f"{column.label} ours" in text
    for row in table.rows:
        line = next(line for line in _table_lines(text) if line.startswith(f"| {row.label} |"))
        for key, value in row.values.items():
            metric = next(c.metric for c in table.columns if c.key == key)
            assert f"| {value.text(display_digits(metric))} |" in line


def _ours_numbers(text: str, label: str) -> list[str]:
    line = next(line for line in _table_lines(text) if line.startswith(f"| {label} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _check_benchmark_report(work: int, report: Path, text: str) -> None:
    _check_both_columns(work, text)
    assert "## Which claims hold on our data" in text
    assert "**holds" in text or "**does not hold" in text or "**points the same way" in text
    assert "## Scaled down (profile `smoke`)" in text
    assert "optimiser steps:" in text
    with open(report / "results.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} >= {"bicubic"}
    assert list((report / "figures").glob("*.png"))
    # our numbers are filled in from the run, not left empty
    first = load_paper(work).tables[0].rows[0]
    cells = _ours_numbers(text, first.label)
    assert any("(n=" in c for c in cells)


@pytest.mark.parametrize("work", [3, 4])
def test_smoke_benchmark_works(work: int, fake_data: Path, tmp_path: Path, at_repo: Path) -> None:
    report, text = _run(work, fake_data, tmp_path)
    _check_benchmark_report(work, report, text)


def test_work_1_flags_and_study(fake_data: Path, tmp_path: Path, at_repo: Path) -> None:
    report, text = _run(1, fake_data, tmp_path)
    _check_benchmark_report(1, report, text)
    assert "**FLAG**" in text and "+4.45 dB PSNR over Bicubic" in text
    assert (tmp_path / "work" / "study").is_dir()
    tokens = (tmp_path / "work" / "study-tokens.txt").read_text().splitlines()
    assert len(tokens) == 3
    # resumable: a second run skips every stage
    again = reproduce(
        ReproduceOptions(
            work=1,
            profile="smoke",
            data=fake_data,
            work_dir=tmp_path / "work",
            out=tmp_path / "out",
            resume=True,
        )
    )
    assert again.ran == []
    assert "evaluate" in again.skipped
    assert "to be scored by readers" in text
    # once a reader has rated every image, the MOS column holds the readers' mean
    from medsr.study.design import Rating
    from medsr.study.store import Study

    token = tokens[0].split("\t")[1]
    with Study.open(tmp_path / "work" / "study") as study:
        reader = study.authenticate(token)
        while (item := study.next_item(reader)) is not None:
            study.submit(reader, item.item_id, Rating(quality=4, usefulness=2))
    text = (again.report / "report.md").read_text(encoding="utf-8")
    assert "to be scored by readers" in text  # the report is rebuilt by a run, not in place
    reproduce(
        ReproduceOptions(
            work=1,
            profile="smoke",
            data=fake_data,
            work_dir=tmp_path / "work",
            out=tmp_path / "out",
            resume=True,
        )
    )
    text = (again.report / "report.md").read_text(encoding="utf-8")
    mos = next(line for line in _table_lines(text) if line.startswith("| Ours | MedSRGAN | 2.880"))
    assert mos.endswith("| 4.000 ± 0.000 (2 ratings) |"), mos  # two smoke cases, one reader


def test_existing_folder_needs_resume(fake_data: Path, tmp_path: Path, at_repo: Path) -> None:
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "x").write_text("x")
    with pytest.raises(ConfigError, match="--resume"):
        _run(4, fake_data, tmp_path)


def test_smoke_work_2_withholds_research_only(
    fake_data: Path, tmp_path: Path, at_repo: Path
) -> None:
    report, text = _run(2, fake_data, tmp_path, study=False)
    _check_both_columns(2, text)
    made = [p.name for p in (tmp_path / "work" / "benchmark" / "figures").glob("*.png")]
    assert any(name.startswith("chest-xray-covid") for name in made)
    copied = [p.name for p in (report / "figures").glob("*.png")]
    assert copied and not any(name.startswith("chest-xray-covid") for name in copied)
    assert "research-only data (chest-xray-covid)" in text
    assert "Validation PSNR ours" in text and "Test SSIM ours" in text
    assert "Image Quality paper" in text


def test_smoke_work_5_pairs_and_thick_volumes(
    fake_data: Path, tmp_path: Path, at_repo: Path
) -> None:
    report, text = _run(5, fake_data, tmp_path)
    assert "Model 2 (2.5D) MSE paper" in text and "Model 2 (2.5D) MSE ours" in text
    assert "**FLAG**" in text and "largest squared error" in text
    assert "paired by position" in text
    assert "Real thick volumes" in text and "case1_T1w.nii.gz" in text
    pairs = list((tmp_path / "work" / "series").glob("*/Flair/pairs.csv"))
    assert len(pairs) == 3
    assert (report / "thick-case1_T1w.png").is_file()
