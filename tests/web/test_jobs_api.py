"""The upscaling router on its own: a FastAPI app with only ``jobs_router`` (no pages, no
security middleware, no study)."""

from __future__ import annotations

import io

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image as PILImage

from medsr.web.jobs import JobManager, ModelChoice
from medsr.web.jobs_api import JobsInfo, jobs_router
from medsr.web.limits import Limits
from medsr.web.uploads import UploadReader

MODELS = {"bicubic": ModelChoice(name="bicubic", spec="bicubic", scales=(2, 3))}


def _png(shape=(32, 40)) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_router_alone_runs_a_job(tmp_path):
    uploads = UploadReader(Limits())
    jobs = JobManager(
        tmp_path, models=MODELS, read_upload=lambda u, r: uploads.read_stored(u, r.kind)
    )
    app = FastAPI()
    app.include_router(
        jobs_router(jobs, uploads, models=MODELS, default_model="bicubic", about=JobsInfo(2.0))
    )
    jobs.start()
    try:
        client = TestClient(app)
        info = client.get("/api/info").json()
        assert info["models"] == [{"name": "bicubic", "scales": [2, 3], "trained": False}]
        assert info["retention_hours"] == 2.0 and info["study"] is False
        assert client.get("/api/study").status_code == 404  # not part of this router
        created = client.post("/api/jobs", files={"file": ("a.png", _png())}, data={"scale": "3"})
        assert created.status_code == 202
        job_id = created.json()["id"]
        jobs.wait_idle(60)
        job = client.get(f"/api/jobs/{job_id}").json()
        assert job["status"] == "done" and job["output_shape"] == [96, 120]
        view = client.get(f"/api/jobs/{job_id}/views/sr/0")
        assert view.headers["x-shape"] == "96,120" and len(view.content) == 96 * 120 * 4
        png = client.get(f"/api/jobs/{job_id}/png")
        assert png.headers["content-type"] == "image/png"
        bad = client.post("/api/jobs", files={"file": ("a.png", b"not a png")})
        assert bad.status_code == 415
        assert (
            client.post(
                "/api/jobs", files={"file": ("a.png", _png())}, data={"scale": "4"}
            ).status_code
            == 422
        )
    finally:
        jobs.stop()
