"""Reports: files written, numbers in them, self-contained HTML, escaped free text."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable

from PIL import Image as PILImage

from medsr.study import Preference, Rating, Study
from medsr.study.analysis import analyse_study
from medsr.study.report import write_report

SCORE = {"hr": 5, "edsr_x4": 4, "bicubic": 2}


def _answer_all(study: Study) -> None:
    """Every reader rates by method (quality = SCORE, usefulness one lower for reader-2)."""
    for reader in study.readers():
        for item in study.reader_items(reader):
            method = study.unblind(reader, item.item_id).methods[0]
            quality = SCORE[method]
            usefulness = quality - (reader.label == "reader-2")
            comment = "<script>alert(1)</script> | odd" if method == "bicubic" else ""
            study.submit(reader, item.item_id, Rating(quality, usefulness, comment=comment))


def test_rating_report_files_and_numbers(new_study: Callable[..., Study], tmp_path) -> None:
    study = new_study(readers=2, title="Knee MRI x4")
    _answer_all(study)
    files = write_report(study, tmp_path / "out", bootstrap=50)
    markdown = files.markdown.read_text()
    page = files.html.read_text()
    analysis = analyse_study(study)
    usefulness = analysis.mos_for("hr", "usefulness").mos
    assert usefulness == 4.5  # reader-1 gives 5, reader-2 gives 4 on every case
    for text in (markdown, page):
        assert "Knee MRI x4" in text
        assert "Answers" in text and "24 of 24" in text
        assert re.search(r"hr \| 5\.00 \|", markdown)
        assert "4.50" in text and "2.00" in text and "1.50" in text
        assert "ICC(2,1)" in text and "Kendall" in text
        assert "reader-2" in text
    assert "![MOS per method with confidence intervals](mos.png)" in markdown
    # Self-contained: the plot is inline, nothing is fetched, free text is escaped.
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in markdown
    assert not re.search(r"(src|href)=\"(?!data:)", page)
    png = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1))
    assert png == files.plot.read_bytes()
    assert PILImage.open(io.BytesIO(png)).size[0] > 300


def test_pairwise_report(new_study: Callable[..., Study], tmp_path) -> None:
    study = new_study(mode="pairwise", readers=2)
    for reader in study.readers():
        for item in study.reader_items(reader):
            left, right = study.unblind(reader, item.item_id).methods
            better = "left" if SCORE[left] > SCORE[right] else "right"
            study.submit(reader, item.item_id, Preference(better))
    files = write_report(study, tmp_path / "pair")
    markdown = files.markdown.read_text()
    # hr wins all 2 readers x 4 cases x 2 pairs = 16 comparisons
    assert re.search(r"\| hr \| 16 \| 0 \| 0 \| 1\.00 \|", markdown)
    assert re.search(r"\| bicubic \| 0 \| 16 \| 0 \| 0\.00 \|", markdown)
    assert "Holm" in markdown and "left / right / none" in markdown
    assert files.html.read_text().count("data:image/png;base64,") == 1


def test_report_of_a_study_without_answers(new_study: Callable[..., Study], tmp_path) -> None:
    files = write_report(new_study())
    assert files.markdown.parent == files.html.parent
    assert "0 of 36" in files.markdown.read_text()
    assert files.plot.stat().st_size > 0
