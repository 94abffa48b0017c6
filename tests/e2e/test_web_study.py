"""Two readers complete a short reader study in headless Chromium; then the report."""

from __future__ import annotations

import re
import shutil
import time

import pytest

from medsr.cli import main
from medsr.study import Study
from medsr.web.app import ServeSettings, create_app
from tests.e2e.conftest import screenshot

expect = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.e2e


@pytest.fixture
def study_dir(dicom_file, tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(dicom_file("CT_small.dcm"), cases / "ct-case.dcm")
    shutil.copy(dicom_file("MR_small.dcm"), cases / "mr-case.dcm")
    folder = tmp_path / "study"
    code = main(
        [
            "study", "create", str(folder), "--cases", str(cases),
            "--methods", "hr", "bicubic", "--readers", "2", "--title", "Browser study",
        ]
    )  # fmt: skip
    assert code == 0
    tokens = dict(re.findall(r"^  (reader-\d): (\S+)$", capsys.readouterr().out, re.M))
    assert sorted(tokens) == ["reader-1", "reader-2"]
    return folder, tokens


def _answer_all(page, scores, *, stop_after=None):
    answered = 0
    while page.locator("#item-panel").is_visible():
        position = page.inner_text("#position")
        page.wait_for_selector("#images img")
        assert page.locator("#images img").count() == 1
        quality, usefulness = scores(answered)
        page.check(f"#quality input[value='{quality}']")
        page.check(f"#usefulness input[value='{usefulness}']")
        if answered == 0:
            page.check("input[name=flag][value=artefact]")
            page.fill("#comment", "ringing at the edge")
        page.click("#save")
        answered += 1
        if answered == stop_after:
            return answered
        for _ in range(100):  # the next item, or the end
            if page.locator("#done-panel").is_visible() or page.inner_text("#position") != position:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"the page stayed at {position}")
    return answered


def test_two_readers_complete_a_study(browser, live_server, study_dir, tmp_path):
    folder, tokens = study_dir
    server = live_server(create_app(ServeSettings(data_dir=tmp_path / "data", study_dir=folder)))

    # reader 1: a wrong token first, then theirs; answers 2 of 4, leaves, comes back.
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.goto(server.url + "/study")
    page.fill("#token", "not-a-token")
    page.click("#login")
    expect(page.locator("#error")).to_contain_text("not valid")
    page.fill("#token", tokens["reader-1"])
    page.click("#login")
    expect(page.locator("#position")).to_have_text("Image 1 of 4")
    screenshot(page, "study-rating")
    # Blinded: nothing on the page names a method or case.
    text = page.inner_text("body").lower()
    assert "bicubic" not in text and "ct-case" not in text and "hr" not in text.split()
    # Missing a score is refused on the page.
    page.check("#quality input[value='3']")
    page.click("#save")
    expect(page.locator("#error")).to_contain_text("rate both")
    _answer_all(page, lambda k: (5 - k % 2, 4), stop_after=2)
    expect(page.locator("#position")).to_have_text("Image 3 of 4")
    page.close()
    page = context.new_page()  # resume: the token is remembered, the next item comes up
    page.goto(server.url + "/study")
    expect(page.locator("#position")).to_have_text("Image 3 of 4")
    page.click("#previous")
    expect(page.locator("#position")).to_have_text("Image 2 of 4")
    assert page.locator("#quality input[value='4']").is_checked()  # pre-filled answer
    page.click("#save")
    expect(page.locator("#position")).to_have_text("Image 3 of 4")
    _answer_all(page, lambda k: (2, 3))
    expect(page.locator("#done-panel")).to_be_visible()
    screenshot(page, "study-done")
    context.close()

    # reader 2 in another browser context
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/study")
    page.fill("#token", tokens["reader-2"])
    page.click("#login")
    expect(page.locator("#position")).to_have_text("Image 1 of 4")
    _answer_all(page, lambda k: (1 + k, 5 - k))
    expect(page.locator("#done-panel")).to_be_visible()
    context.close()

    with Study.open(folder) as study:
        records = study.rating_records()
        assert len(records) == 8
        assert {r.reader for r in records} == {"reader-1", "reader-2"}
        flagged = [r for r in records if r.flags]
        assert len(flagged) == 3 and flagged[0].comment == "ringing at the edge"
        changed = [r for r in records if r.revision == 2]
        assert len(changed) == 1 and changed[0].reader == "reader-1"
    assert main(["study", "report", str(folder)]) == 0
    report = (folder / "report" / "report.md").read_text()
    assert "bicubic" in report and "hr" in report
    assert (folder / "report" / "mos.png").stat().st_size > 1000


def test_pairwise_study_in_the_browser(browser, live_server, dicom_file, tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    shutil.copy(dicom_file("MR_small.dcm"), cases / "mr.dcm")
    folder = tmp_path / "pairs"
    args = ["study", "create", str(folder), "--cases", str(cases), "--mode", "pairwise"]
    assert main([*args, "--methods", "hr", "lr", "lanczos", "--readers", "1"]) == 0
    (token,) = re.findall(r"^  reader-1: (\S+)$", capsys.readouterr().out, re.M)
    server = live_server(create_app(ServeSettings(data_dir=tmp_path / "data", study_dir=folder)))
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(server.url + "/study")
    page.fill("#token", token)
    page.click("#login")
    expect(page.locator("#position")).to_have_text("Image 1 of 3")
    expect(page.locator("#images img")).to_have_count(2)
    assert page.locator("#rating-fields").is_hidden()
    screenshot(page, "study-pairwise")
    for choice in ("left", "none", "right"):
        position = page.inner_text("#position")
        page.check(f"input[name=choice][value={choice}]")
        page.click("#save")
        if choice != "right":
            expect(page.locator("#position")).not_to_have_text(position)
    expect(page.locator("#done-panel")).to_be_visible()
    context.close()
    with Study.open(folder) as study:
        records = study.preference_records()
    assert sorted(r.choice for r in records) == ["left", "none", "right"]
