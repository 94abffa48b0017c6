"""Volume methods of the web API (through-plane, self-supervised), MR window presets and the
high-resolution reference with region scores; tiny synthetic volumes made here."""

from __future__ import annotations

import gzip
import io
import time

import nibabel as nib
import numpy as np
import pytest

from medsr.web.app import ServeSettings, create_app
from medsr.web.jobs import ModelChoice

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TestClient = pytest.importorskip("fastapi.testclient").TestClient

MODELS = {
    "bicubic": ModelChoice(name="bicubic", spec="bicubic", scales=(2, 3)),
    "nearest": ModelChoice(name="nearest", spec="nearest", scales=(2,)),
}


def _phantom(shape=(6, 24, 24)) -> np.ndarray:
    """A smooth MR-like volume: a bright ellipsoid with darker inclusions on a zero
    background (so that it has a foreground for the MR presets)."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = (x**2 + y**2 + 0.5 * z**2 < 0.7).astype(np.float32) * 300
    lesion = ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.05) * 200.0
    return (body + lesion + 40 * np.sin(6 * x) * (body > 0)).astype(np.float32)


def _nifti(volume: np.ndarray, spacing=(3.0, 1.0, 1.0)) -> bytes:
    # NIfTI stores (X, Y, Z); medsr reads (Z, Y, X) with the spacing reversed
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    image = nib.Nifti1Image(volume.T.copy(), affine)
    return image.to_bytes()


@pytest.fixture
def client(tmp_path):
    from medsr.infer.selfsup import SelfSupConfig

    tiny = SelfSupConfig(
        steps=4,
        batch_size=2,
        patch=16,
        features=8,
        num_blocks=1,
        eval_every=2,
        heldout_patches=4,
        warmup=1,
    )
    app = create_app(
        ServeSettings(data_dir=tmp_path / "data", models=MODELS, threads=1, selfsup=tiny)
    )
    with TestClient(app) as client:
        yield client


def _submit(client, data: bytes, name="v.nii", **form):
    return client.post("/api/jobs", files={"file": (name, data)}, data=form)


def _wait(client, job_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        seen.add(job["progress_unit"])
        if job["status"] in ("done", "failed"):
            job["units_seen"] = seen
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_through_plane_job(client):
    volume = _phantom()
    r = _submit(client, _nifti(volume), model="bicubic", scale="2", method="through-plane")
    assert r.status_code == 202, r.text
    job = _wait(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["method"] == "through-plane"
    assert job["input_shape"] == [6, 24, 24] and job["output_shape"] == [12, 24, 24]
    assert job["output_spacing"] == [1.5, 1.0, 1.0]
    assert job["consistency"] is not None  # the maps work through-plane
    view = client.get(f"/api/jobs/{job['id']}/views/sr/5?plane=coronal")
    assert view.headers["x-shape"] == "12,24"
    # MR presets: percentiles of the foreground, display only
    windows = job["mr_windows"]
    assert set(windows) == {"brain", "spine", "soft-tissue"}
    assert all(low < high for low, high in windows.values())
    assert windows["soft-tissue"][0] > 0  # the zero background is not the foreground


def test_through_plane_needs_a_volume(client):
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, format="PNG")
    r = _submit(client, buffer.getvalue(), "a.png", model="bicubic", method="through-plane")
    assert r.status_code == 422 and "needs a volume" in r.json()["detail"]
    r = _submit(client, buffer.getvalue(), "a.png", method="self-supervised")
    assert r.status_code == 422 and "volume" in r.json()["detail"]
    r = _submit(client, _nifti(_phantom(), (1.0, 1.0, 1.0)), method="self-supervised")
    assert r.status_code == 422, r.text  # isotropic: nothing finer to learn from in-plane
    assert client.get("/api/jobs").json() == []


def test_self_supervised_job_with_progress(client):
    r = _submit(client, _nifti(_phantom()), method="self-supervised")
    assert r.status_code == 202, r.text
    assert r.json()["model"] == "self-supervised" and r.json()["scale"] == 3
    job = _wait(client, r.json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["output_shape"] == [18, 24, 24]
    assert job["selfsup"]["steps"] == 4 and job["selfsup"]["axis"] == 0
    assert job["consistency"] is None and job["warnings"] == []
    assert job["progress_fraction"] is None  # cleared when done
    bicubic = client.get(f"/api/jobs/{job['id']}/views/bicubic/0?plane=sagittal")
    assert bicubic.headers["x-shape"] == "18,24"
    assert client.get(f"/api/jobs/{job['id']}/views/consistency/0").status_code == 404
    download = client.get(f"/api/jobs/{job['id']}/download")
    out = nib.Nifti1Image.from_bytes(gzip.decompress(download.content))
    assert out.shape == (24, 24, 18)
    assert client.get("/api/info").json()["selfsup_budget_s"] is None  # steps, no budget


def test_reference_scores_and_region(client):
    hr = _phantom((12, 24, 24))
    lr = hr.reshape(6, 2, 24, 24).mean(axis=1)
    r = _submit(client, _nifti(lr), model="bicubic", scale="2", method="through-plane")
    job = _wait(client, r.json()["id"])
    url = f"/api/jobs/{job['id']}"
    # no reference yet
    region = {"plane": "axial", "index": 6, "points": [[4, 4], [20, 4], [20, 20], [4, 20]]}
    assert client.post(url + "/region", json=region).status_code == 422
    wrong = client.post(
        url + "/reference", files={"file": ("hr.nii", _nifti(hr[:10], (1.5, 1, 1)))}
    )
    assert wrong.status_code == 422
    assert "10x24x24" in wrong.json()["detail"] and "12x24x24" in wrong.json()["detail"]
    ok = client.post(url + "/reference", files={"file": ("hr.nii", _nifti(hr, (1.5, 1, 1)))})
    assert ok.status_code == 200, ok.text
    metrics = ok.json()["metrics"]
    assert set(metrics) == {"sr", "bicubic"}
    assert 10 < metrics["sr"]["psnr"] < 80 and 0 < metrics["sr"]["ssim"] <= 1
    assert client.get(url).json()["reference"]["metrics"] == metrics
    assert client.get(url + "/views/reference/6").headers["x-shape"] == "24,24"
    scored = client.post(url + "/region", json=region)
    assert scored.status_code == 200, scored.text
    body = scored.json()
    assert body["pixels"] == 16 * 16
    for name in ("sr", "bicubic"):
        for metric in ("psnr", "ssim"):
            assert set(body[name][metric]) == {"inside", "outside"}
    assert body["sr"]["psnr"]["inside"] is not None
    bad = client.post(url + "/region", json={**region, "points": [[1, 1], [2, 2]]})
    assert bad.status_code == 422 and "at least 3 points" in bad.json()["detail"]
