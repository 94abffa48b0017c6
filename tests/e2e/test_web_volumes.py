"""Volumes in headless Chromium with real MR files from ../shared/data: self-supervised and
through-plane super-resolution with progress, MR window presets, a high-resolution reference
with PSNR/SSIM over the output and inside/outside drawn regions; zoom on the study page.

The volumes are cut from the real files here (a crop, or thick slices averaged from a 1 mm
volume, so that the 1 mm volume is the reference); nothing is committed. Skipped without
the data."""

from __future__ import annotations

import re
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsr.infer import DEFAULT_MODEL
from medsr.web.app import ServeSettings, create_app
from tests.e2e.conftest import SCREENSHOTS, screenshot
from tests.e2e.test_web_study import study_dir  # noqa: F401  (shared fixture)

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.e2e

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
BRAIN_THICK = DATA / "brain-mri-thick" / "pyrad-brain1_T1w-post.nii.gz"
SPINE = DATA / "spine-mri" / "IVD_11.npz"


def _need(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is missing (real data in ../shared/data)")


def _save_nifti(volume: np.ndarray, spacing, path: Path) -> Path:
    """``volume`` (Z, Y, X) with ``spacing`` (mm, same order) as NIfTI (stored X, Y, Z)."""
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.T), affine), path)
    return path


def _until(check, timeout=60.0, what="the page"):
    """Poll ``check()`` until true (the pages' CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not change within {timeout} s")


def _follow_progress(page, timeout=600):
    """The stage lines the page shows until the viewer is ready."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.get_attribute("#viewer", "data-ready") == "1":
            return seen
        if page.locator("#error").is_visible():
            raise AssertionError(page.inner_text("#error"))
        text = page.inner_text("#stage")
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        time.sleep(0.1)
    raise AssertionError(f"no result after {timeout} s; stages: {seen[-5:]}")


def test_self_supervised_thick_brain(browser, page, live_server, tmp_path):
    from medsr.infer.selfsup import SelfSupConfig

    _need(BRAIN_THICK)
    image = nib.load(BRAIN_THICK)
    # (X, Y, Z) 256x256x25 at 0.78x0.78x6.5 mm: keep the centre 128x128 (time on a CPU)
    crop = np.asarray(image.dataobj, dtype=np.float32)[64:192, 64:192, :]
    path = tmp_path / "brain-thick.nii.gz"
    nib.save(nib.Nifti1Image(crop, image.affine), path)
    # 60 small steps, each large enough that training lasts about a second: the page polls
    # every 300 ms, and a 0.3 s training stage could fall between two polls
    small = SelfSupConfig(
        steps=60, batch_size=16, patch=48, features=32, num_blocks=2, eval_every=20,
        heldout_patches=16, warmup=10,
    )  # fmt: skip
    app = create_app(ServeSettings(data_dir=tmp_path / "data", threads=1, selfsup=small))
    server = live_server(app)
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#method", "self-supervised")
    assert page.locator("#model").is_disabled()
    assert "trained on this volume" in page.inner_text("#method-hint")
    page.set_input_files("#file", str(path))
    page.click("#submit")
    stages = _follow_progress(page)
    assert any(re.search(r"training on the volume's own slices: step \d+", s) for s in stages)
    assert any("planes" in s for s in stages), stages
    facts = page.inner_text("#facts")
    assert "self-supervised" in facts and "trained 60 steps on this volume" in facts
    assert "25×128×128" in facts and "208×128×128" in facts  # 6.5 mm -> 0.78 mm
    # MR presets offered (not CT); brain from this image's foreground
    page.select_option("#preset", "mr:brain")
    window = page.get_attribute("#viewer", "data-window")
    job = page.evaluate("state.job")
    assert window == ",".join(f"{v:.2f}" for v in job["mr_windows"]["brain"])
    page.select_option("#plane", "coronal")
    _until(lambda: page.get_attribute("#viewer", "data-plane") == "coronal")
    page.select_option("#mode", "side")
    screenshot(page, "volume-selfsup-coronal")
    page.locator("#viewer-panel").screenshot(path=str(SCREENSHOTS / "web-volume-selfsup.png"))
    assert not page.js_errors, page.js_errors


def test_through_plane_spine_with_reference_and_regions(browser, page, live_server, tmp_path):
    _need(SPINE)
    volume = np.load(SPINE)["image"].astype(np.float32)  # (H, W, S), 1 mm isotropic
    hr = np.moveaxis(volume, 2, 0)[:64, 40:200, 40:200]  # (S, H, W) sagittal slices first
    lr = hr.reshape(32, 2, *hr.shape[1:]).mean(axis=1)  # 2 mm thick sagittal slices
    lr_path = _save_nifti(lr, (2.0, 1.0, 1.0), tmp_path / "spine-2mm.nii.gz")
    hr_path = _save_nifti(hr, (1.0, 1.0, 1.0), tmp_path / "spine-1mm.nii.gz")
    wrong_path = _save_nifti(hr[:60], (1.0, 1.0, 1.0), tmp_path / "spine-cut.nii.gz")
    server = live_server(create_app(ServeSettings(data_dir=tmp_path / "data", threads=1)))
    page.goto(server.url + "/")
    page.wait_for_selector("#model option", state="attached")
    page.select_option("#method", "through-plane")
    page.select_option("#model", DEFAULT_MODEL)
    page.set_input_files("#file", str(lr_path))
    page.click("#submit")
    stages = _follow_progress(page)
    assert any("through-plane" in s for s in stages), stages
    assert "64×160×160" in page.inner_text("#facts")
    # the maps work through-plane too
    assert page.locator("#consistency-facts").is_visible()

    # a reference on another grid: a clear error naming both shapes
    page.set_input_files("#reference-file", str(wrong_path))
    page.click("#reference-submit")
    page.wait_for_selector("#error:not([hidden])")
    error = page.inner_text("#error")
    assert "60x160x160" in error and "64x160x160" in error
    page.js_errors.clear()  # the browser logs the expected 422
    # the right one: whole-output PSNR/SSIM for SR and bicubic
    page.set_input_files("#reference-file", str(hr_path))
    page.click("#reference-submit")
    page.wait_for_selector("#metrics:not([hidden])")
    sr_psnr = float(page.inner_text("#metrics tr[data-view=sr] td:nth-child(2)"))
    bicubic_psnr = float(page.inner_text("#metrics tr[data-view=bicubic] td:nth-child(2)"))
    assert 20 < bicubic_psnr < 60 and 20 < sr_psnr < 60
    option = page.locator("#right-view option[value=reference]")
    assert option.evaluate("o => o.hidden") is False  # the reference can be shown now

    # a coronal cut shows the through-plane detail; MR spine preset
    page.select_option("#plane", "coronal")
    _until(lambda: page.get_attribute("#viewer", "data-plane") == "coronal")
    page.select_option("#preset", "mr:spine")
    page.select_option("#left-view", "bicubic")
    page.select_option("#right-view", "sr")

    # a rectangle drawn on the view (zoomed in): inside / outside for SR and bicubic
    page.click("#tool-rect")
    page.locator("#split-canvas").scroll_into_view_if_needed()
    box = page.locator("#split-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.45)
    page.mouse.wheel(0, -500)
    x0, y0 = box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.35
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + 220, y0 + 160, steps=6)
    page.mouse.up()
    page.wait_for_selector("#metrics th:has-text('PSNR inside')")
    caption = page.inner_text("#metrics caption")
    assert re.search(r"region of \d+ pixels on coronal slice \d+", caption)
    pixels = int(re.search(r"region of (\d+) pixels", caption).group(1))
    assert pixels > 30
    inside = page.inner_text("#metrics tr[data-view=sr] td:nth-child(4)")
    outside = page.inner_text("#metrics tr[data-view=sr] td:nth-child(5)")
    assert float(inside) > 0 and float(outside) > 0
    screenshot(page, "volume-reference-region")
    page.locator("#viewer-panel").screenshot(
        path=str(SCREENSHOTS / "web-volume-reference-region.png")
    )

    # a free shape replaces it
    page.click("#tool-lasso")
    page.locator("#split-canvas").scroll_into_view_if_needed()
    box = page.locator("#split-canvas").bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    page.mouse.move(cx + 60, cy)
    page.mouse.down()
    for k in range(1, 25):
        angle = 2 * np.pi * k / 24
        page.mouse.move(cx + 60 * np.cos(angle), cy + 40 * np.sin(angle))
    page.mouse.up()
    _until(lambda: f"{pixels} pixels" not in page.inner_text("#metrics caption"))
    assert "PSNR inside" in page.inner_text("#metrics")
    page.select_option("#mode", "side")
    screenshot(page, "volume-reference-lasso-side")
    assert not page.js_errors, page.js_errors


def test_study_page_zoom(browser, live_server, study_dir, tmp_path):  # noqa: F811
    folder, tokens = study_dir
    server = live_server(create_app(ServeSettings(data_dir=tmp_path / "data", study_dir=folder)))
    context = browser.new_context(viewport={"width": 1100, "height": 1000})
    page = context.new_page()
    page.goto(server.url + "/study")
    page.fill("#token", tokens["reader-1"])
    page.click("#login")
    page.wait_for_selector("#images img")
    frame = page.locator("#images .zoom-frame").bounding_box()
    page.mouse.move(frame["x"] + frame["width"] * 0.3, frame["y"] + frame["height"] * 0.4)
    page.mouse.wheel(0, -600)
    zoom = float(page.get_attribute("#images", "data-zoom"))
    assert zoom > 2
    before = page.locator("#images img").evaluate("img => img.style.transform")
    page.mouse.down()
    page.mouse.move(frame["x"] + frame["width"] * 0.5, frame["y"] + frame["height"] * 0.5)
    page.mouse.up()
    assert page.locator("#images img").evaluate("img => img.style.transform") != before
    assert page.inner_text("#zoom-level") == f"{round(zoom * 100)} %"
    screenshot(page, "study-zoomed")
    page.click("#zoom-reset")
    assert page.get_attribute("#images", "data-zoom") == "1.000"
    # the zoom starts over with the next image
    page.mouse.wheel(0, -300)
    page.check("#quality input[value='3']")
    page.check("#usefulness input[value='3']")
    page.click("#save")
    _until(lambda: page.inner_text("#position").startswith("Image 2"))
    assert page.get_attribute("#images", "data-zoom") == "1.000"
    context.close()
