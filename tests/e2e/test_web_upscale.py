"""Upload a real DICOM in headless Chromium, wait for the result, use the comparison view
(split divider, zoom, window/level, slices) and download the results."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pydicom
import pytest

from medsr.infer import DEFAULT_MODEL
from medsr.io import read
from medsr.web.app import ServeSettings, create_app
from medsr.web.limits import Limits
from tests.e2e.conftest import screenshot

expect = pytest.importorskip("playwright.sync_api").expect

pytestmark = pytest.mark.e2e


def _app(tmp_path, **changes):
    return create_app(ServeSettings(data_dir=tmp_path / "data", **changes))


def _wait_ready(page, timeout=60_000):
    page.wait_for_selector("#viewer[data-ready='1']", timeout=timeout)


def test_upload_dicom_compare_and_download(browser, page, live_server, ct_file, tmp_path):
    server = live_server(_app(tmp_path))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    assert page.input_value("#model") == DEFAULT_MODEL  # the shipped x2 model
    page.set_input_files("#file", str(ct_file))
    page.select_option("#scale", "2")
    page.click("#submit")
    _wait_ready(page)
    viewer = page.locator("#viewer")
    assert page.locator("#facts").inner_text().startswith("CT")
    assert "256×256" in page.locator("#facts").inner_text()
    assert page.locator("#tag-right").inner_text().startswith(f"SR ({DEFAULT_MODEL} x2)")
    screenshot(page, "upscale-split")

    # The divider follows a drag.
    box = page.locator("#split-canvas").bounding_box()
    handle = page.locator("#divider").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + 100, steps=5)
    page.mouse.up()
    assert float(viewer.get_attribute("data-split")) == pytest.approx(0.25, abs=0.02)

    # The wheel zooms; the side-by-side view shares the same zoom and pan.
    zoom = float(viewer.get_attribute("data-zoom"))
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -400)
    zoomed = float(viewer.get_attribute("data-zoom"))
    assert zoomed > zoom * 1.5

    # Window/level from a preset and from the inputs.
    page.select_option("#preset", "-600,1500")
    assert viewer.get_attribute("data-window") == "-1350.00,150.00"
    page.fill("#wl-center", "40")
    page.fill("#wl-width", "400")
    page.press("#wl-width", "Enter")
    assert viewer.get_attribute("data-window") == "-160.00,240.00"
    screenshot(page, "upscale-split-zoomed-soft-tissue")

    page.select_option("#mode", "side")
    assert page.locator("#side-view").is_visible()
    assert page.input_value("#preset") == "custom"
    # Zoom into one panel: all three follow (the same place, at the same magnification).
    sr_box = page.locator("#side-view canvas[data-view=sr]").bounding_box()
    page.mouse.move(sr_box["x"] + sr_box["width"] * 0.3, sr_box["y"] + sr_box["height"] * 0.4)
    page.mouse.wheel(0, -600)
    page.mouse.down()
    page.mouse.move(sr_box["x"] + sr_box["width"] * 0.5, sr_box["y"] + sr_box["height"] * 0.5)
    page.mouse.up()
    panels = page.evaluate(
        """() => [...document.querySelectorAll('#side-view canvas')].map(c => {
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const g = []; for (let i = 0; i < d.length; i += 4) g.push(d[i]); return g; })"""
    )
    lr, bicubic, sr, consistency = (np.asarray(p, dtype=float) for p in panels)
    assert consistency.max() > 0  # the fourth panel: the consistency map (its red channel)
    assert lr.std() > 10 and sr.std() > 10
    assert np.corrcoef(lr, sr)[0, 1] > 0.8 and np.corrcoef(bicubic, sr)[0, 1] > 0.9
    assert np.abs(lr - sr).mean() > 0.5  # the input's blocks differ from the SR pixels
    screenshot(page, "upscale-side-by-side")

    with page.expect_download() as info:
        page.click("#download-native")
    native = info.value
    path = tmp_path / native.suggested_filename
    native.save_as(path)
    assert path.suffix == ".dcm"
    out = read(path)
    assert out.array.shape == (256, 256)
    assert pydicom.dcmread(path).ImageType[0] == "DERIVED"

    with page.expect_download() as info:
        page.click("#download-png")
    png = tmp_path / info.value.suggested_filename
    info.value.save_as(png)
    assert read(png).array.shape == (256, 256)
    assert page.js_errors == []


def test_consistency_map_panel_and_summary(browser, page, live_server, ct_file, tmp_path):
    """The consistency map |degrade(SR) - LR| as a fourth side-by-side panel and as a split
    view, with its own colour scale, and the worst region named under the facts."""
    server = live_server(_app(tmp_path))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.set_input_files("#file", str(ct_file))
    page.select_option("#scale", "2")
    page.click("#submit")
    _wait_ready(page)
    facts = page.locator("#consistency-facts").inner_text()
    assert facts.startswith("consistency |degrade(SR) − LR|: 99th percentile")
    assert " HU, worst 8×8 mean " in facts and "row" in facts and "column" in facts
    job = page.evaluate("() => state.job")
    assert job["consistency"]["units"] == "HU" and job["consistency"]["p99"] > 0

    page.select_option("#right-view", "consistency")
    assert page.locator("#tag-right").inner_text().startswith("consistency |degrade(SR) − LR|")
    screenshot(page, "upscale-split-consistency")
    page.select_option("#mode", "side")
    panel = page.locator("#side-view canvas[data-view=consistency]")
    assert panel.is_visible()
    rgb = np.asarray(
        page.evaluate(
            """() => { const c = document.querySelector('#side-view canvas[data-view=consistency]');
            return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
        ),
        dtype=float,
    ).reshape(-1, 4)
    # a heat scale: red first, then green, then blue; never blue without red
    assert rgb[:, 0].max() == 255 and (rgb[:, 2] <= rgb[:, 0]).all()
    assert (rgb[:, 0] > 0).mean() > 0.01  # errors somewhere, not a black panel
    screenshot(page, "upscale-side-by-side-consistency")
    # the PNG of a map uses the map's window, not the CT window (which would show it black)
    response = page.request.get(server.url + f"/api/jobs/{job['id']}/png?view=consistency")
    assert response.ok and response.headers["content-type"] == "image/png"
    from PIL import Image as PILImage

    pixels = np.asarray(PILImage.open(io.BytesIO(response.body())))
    assert pixels.max() == 255 and (pixels > 0).mean() > 0.01
    assert page.js_errors == []


def test_series_zip_has_a_slice_slider_and_zipped_download(
    browser, page, live_server, series_zip, tmp_path
):
    server = live_server(_app(tmp_path))
    upload = tmp_path / "series.zip"
    upload.write_bytes(series_zip)
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#model", "bicubic")
    page.set_input_files("#file", str(upload))
    page.click("#submit")
    _wait_ready(page)
    assert page.locator("#slice-bar").is_visible()
    expect(page.locator("#jobs tbody tr")).to_have_count(1)
    assert "DICOM series 3×128×128" in page.inner_text("#jobs")
    viewer = page.locator("#viewer")
    assert viewer.get_attribute("data-slice") == "1"
    page.locator("#slice").fill("2")
    expect(viewer).to_have_attribute("data-slice", "2")
    assert page.locator("#slice-label").inner_text() == "3 / 3"
    screenshot(page, "upscale-series")
    page.select_option("#plane", "coronal")
    expect(viewer).to_have_attribute("data-plane", "coronal")
    assert viewer.get_attribute("data-slice") == "128"
    expect(page.locator("#slice-label")).to_have_text("129 / 256")
    page.locator("#split-canvas").click(
        position={"x": 40, "y": 40}
    )  # the keys move slices unless a control has focus
    page.keyboard.press("ArrowUp")
    expect(viewer).to_have_attribute("data-slice", "129")
    screenshot(page, "upscale-series-coronal")
    page.select_option("#plane", "axial")
    expect(page.locator("#slice-label")).to_have_text("2 / 3")
    with page.expect_download() as info:
        page.click("#download-native")
    path = tmp_path / info.value.suggested_filename
    info.value.save_as(path)
    assert path.suffix == ".zip"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "unzipped")
    assert len(names) == 3
    volume = read(tmp_path / "unzipped" / names[0].split("/")[0])
    assert volume.array.shape == (3, 256, 256)
    assert np.isfinite(volume.array).all()
    assert page.js_errors == []


def test_rejections_are_shown_on_the_page(browser, page, live_server, tmp_path):
    server = live_server(_app(tmp_path, limits=Limits(max_upload_bytes=4096)))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image at all")
    page.set_input_files("#file", str(bad))
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("not a file type this app accepts")
    screenshot(page, "upscale-rejected-type")
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 300_000)  # over the request cap
    page.set_input_files("#file", str(big))
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("larger than the limit")
    zip_bomb = tmp_path / "evil.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../etc/passwd.dcm", b"x")
    zip_bomb.write_bytes(buffer.getvalue())
    page.set_input_files("#file", str(zip_bomb))
    page.click("#submit")
    expect(page.locator("#error")).to_contain_text("unsafe path")
    screenshot(page, "upscale-rejected-zip")


def test_token_login(browser, page, live_server, tmp_path):
    token = "s3cret-token-for-the-test-0123456789"
    server = live_server(_app(tmp_path, token=token))
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#model option", state="attached")
    assert page.url == server.url + "/"
