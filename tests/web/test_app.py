"""The web API through the httpx test client: jobs, views, downloads, limits, token, privacy."""

from __future__ import annotations

import io
import time
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image as PILImage

from medsr.io import read
from medsr.web.app import ServeSettings, create_app
from medsr.web.limits import Limits
from tests.test_privacy import SECRETS, assert_clean

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
TestClient = pytest.importorskip("fastapi.testclient").TestClient


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(**changes):
        changes.setdefault("data_dir", tmp_path / "data")
        client = TestClient(create_app(ServeSettings(**changes)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()


def upload(client, name, data, **form):
    return client.post("/api/jobs", files={"file": (name, data)}, data=form)


def wait(client, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_dicom_upload_runs_in_the_background(client, ct_file, tmp_path):
    response = upload(client, "ct.dcm", ct_file.read_bytes(), model="bicubic", scale="2")
    assert response.status_code == 202
    job = response.json()
    assert job["status"] in ("queued", "running", "done")
    assert job["input_shape"] == [128, 128] and job["modality"] == "CT"
    job = wait(client, job["id"])
    assert job["status"] == "done", job["error"]
    assert job["output_shape"] == [256, 256]
    assert job["output_spacing"] == pytest.approx([s / 2 for s in job["input_spacing"]])
    assert job["progress_done"] == job["progress_total"] > 0

    original = read(ct_file).array
    for view, shape in (("lr", (128, 128)), ("bicubic", (256, 256)), ("sr", (256, 256))):
        r = client.get(f"/api/jobs/{job['id']}/views/{view}/0")
        assert r.status_code == 200
        assert r.headers["x-shape"] == ",".join(map(str, shape))
        array = np.frombuffer(r.content, "<f4").reshape(shape)
        if view == "lr":
            np.testing.assert_array_equal(array, original)  # physical units (HU), untouched
        else:
            assert abs(array.mean() - original.mean()) < 0.02 * np.ptp(original)

    r = client.get(job["downloads"]["native"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    path = tmp_path / "out.dcm"
    path.write_bytes(r.content)
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (256, 256) and ds.ImageType[0] == "DERIVED"

    r = client.get(job["downloads"]["png"], params={"low": -160, "high": 240})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with PILImage.open(io.BytesIO(r.content)) as im:
        assert im.size == (256, 256) and im.mode == "L"
        pixels = np.asarray(im)
    assert pixels.min() == 0 and pixels.max() == 255  # the window clips both ends


def test_series_zip_gives_a_zipped_derived_series(client, series_zip, tmp_path):
    job = wait(client, upload(client, "series.zip", series_zip, model="nearest").json()["id"])
    assert job["status"] == "done", job["error"]
    assert job["slices"] == 3 and job["output_shape"] == [3, 256, 256]
    r = client.get(f"/api/jobs/{job['id']}/views/sr/2")
    assert r.headers["x-shape"] == "256,256"
    assert client.get(f"/api/jobs/{job['id']}/views/sr/3").status_code == 422
    sr = np.load(tmp_path / "data" / "jobs" / job["id"] / "views" / "sr.npy")
    for plane, index, shape, expected in (
        ("coronal", 100, (3, 256), sr[:, 100, :]),
        ("sagittal", 255, (3, 256), sr[:, :, 255]),
    ):
        r = client.get(f"/api/jobs/{job['id']}/views/sr/{index}", params={"plane": plane})
        assert r.headers["x-shape"] == ",".join(map(str, shape))
        np.testing.assert_array_equal(np.frombuffer(r.content, "<f4").reshape(shape), expected)
    r = client.get(f"/api/jobs/{job['id']}/views/lr/128", params={"plane": "coronal"})
    assert r.status_code == 422 and "0..127" in r.json()["detail"]
    r = client.get(f"/api/jobs/{job['id']}/png", params={"plane": "coronal"})
    with PILImage.open(io.BytesIO(r.content)) as im:  # 3 slices of 2 mm at 0.33 mm pixels
        assert im.size == (256, round(3 * 2.0 / job["output_spacing"][2]))
    r = client.get(job["downloads"]["native"])
    assert r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        archive.extractall(tmp_path / "x")
        names = archive.namelist()
    assert len(names) == 3
    volume = read(tmp_path / "x" / names[0].split("/")[0])
    assert volume.array.shape == (3, 256, 256)
    assert volume.spacing[0] == pytest.approx(2.0)
    lr = np.frombuffer(client.get(f"/api/jobs/{job['id']}/views/lr/1").content, "<f4")
    np.testing.assert_array_equal(volume.array[1, ::2, ::2].ravel(), lr)  # nearest x2


def test_nifti_png_jpeg_tiff_round_trip(client, tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (4, 16, 20)).astype(np.int16)
    nii = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(volume.T, np.diag([0.8, 0.8, 3.0, 1.0])), nii)
    png = tmp_path / "a.png"
    PILImage.fromarray(rng.integers(0, 255, (16, 20)).astype(np.uint8)).save(png)
    jpg = tmp_path / "a.jpg"
    PILImage.fromarray(rng.integers(0, 255, (16, 20, 3)).astype(np.uint8)).save(jpg)
    tif = tmp_path / "a.tif"
    PILImage.fromarray(rng.integers(0, 255, (16, 20)).astype(np.uint8)).save(tif)
    expected = {
        "v.nii.gz": ("nifti", ".nii.gz", [4, 32, 40]),
        "a.png": ("png", ".png", [32, 40]),
        "a.jpg": ("png", ".png", [32, 40, 3]),
        "a.tif": ("tiff", ".tif", [32, 40]),
    }
    for path in (nii, png, jpg, tif):
        fmt, suffix, shape = expected[path.name]
        job = wait(client, upload(client, path.name, path.read_bytes(), scale="2").json()["id"])
        assert job["status"] == "done", (path.name, job["error"])
        assert job["output_format"] == fmt and job["output_shape"] == shape
        r = client.get(job["downloads"]["native"])
        name = r.headers["content-disposition"].split('"')[1]
        assert name.endswith(suffix)
        out = tmp_path / ("out-" + name)
        out.write_bytes(r.content)
        assert list(read(out).array.shape) == shape
    png_job = client.get("/api/jobs").json()[1]  # the JPEG (colour) one
    assert png_job["color"] is True
    r = client.get(f"/api/jobs/{png_job['id']}/png")
    with PILImage.open(io.BytesIO(r.content)) as im:
        assert im.mode == "RGB"


def test_rejections_are_4xx_with_a_message(make_client, ct_file, tmp_path):
    client = make_client(limits=Limits(max_upload_bytes=200_000, max_pixels=10_000))
    cases = [
        (upload(client, "a.txt", b"hello"), 415, "not a file type"),
        (upload(client, "ct.dcm", ct_file.read_bytes(), model="edsr"), 422, "unknown model"),
        (upload(client, "ct.dcm", ct_file.read_bytes(), scale="5"), 422, "not 5"),
        (upload(client, "ct.dcm", b"\0" * 300_000), 413, "request is larger than the limit"),
        (upload(client, "ct.dcm", b"\0" * 210_000), 413, "upload is larger than the limit"),
        (upload(client, "ct.dcm", ct_file.read_bytes()), 413, "exceeds the cap"),
        (upload(client, "s.zip", _zip({"../x.dcm": b"x"})), 400, "unsafe path"),
        (upload(client, "s.zip", _zip({"a.txt": b"not dicom"})), 400, "no DICOM image"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and text in detail, detail
        assert str(tmp_path) not in detail  # no server paths in messages
    assert client.get("/api/jobs").json() == []
    assert list((tmp_path / "data" / "jobs").iterdir()) == []  # nothing kept of rejects
    big = make_client(data_dir=tmp_path / "d2", limits=Limits(max_output_pixels=50_000))
    r = upload(big, "ct.dcm", ct_file.read_bytes(), scale="2")
    assert r.status_code == 413 and "result would have 65536 pixels" in r.json()["detail"]


def _zip(members):
    from tests.web.conftest import zip_bytes

    return zip_bytes(members)


def test_chunked_body_over_the_cap_is_refused(make_client):
    client = make_client(limits=Limits(max_upload_bytes=1000))  # + 64 KiB for the envelope

    head = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.dcm"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )

    def chunks():  # no Content-Length: the cap must count the bytes as they come
        yield head
        for _ in range(200):
            yield b"x" * 500
        yield b"\r\n--b--\r\n"

    r = client.post(
        "/api/jobs", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert r.status_code == 413
    assert r.json()["detail"] == f"the request is larger than the limit of {1000 + 65536} bytes"


def test_unknown_jobs_and_views(client):
    assert client.get("/api/jobs/0123456789abcdef").status_code == 404
    assert client.get("/api/jobs/../../etc/passwd").status_code == 404
    assert client.get("/api/jobs/0123456789abcdef/download").status_code == 404
    assert client.get("/api/jobs/0123456789abcdef/views/xx/0").status_code == 422


def test_token_is_required_everywhere_but_the_study(make_client, ct_file):
    token = "a-long-random-token-0123456789"
    client = make_client(token=token)
    assert client.get("/api/info").status_code == 401
    assert upload(client, "ct.dcm", ct_file.read_bytes()).status_code == 401
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert client.get("/static/app.js", follow_redirects=False).status_code == 303
    r = client.get("/api/info", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    r = client.post("/login", data={"token": "wrong"}, follow_redirects=False)
    assert "failed" in r.headers["location"]
    r = client.post("/login", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert client.get("/api/info").status_code == 200  # the cookie now
    assert client.get("/study").status_code == 404  # no study here, but not locked


def test_security_headers_and_openapi(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    schema = client.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/study/items/{item_id}/answer"} <= set(
        schema["paths"]
    )
    html = r.text + client.get("/static/app.js").text + client.get("/static/study.html").text
    assert "http://" not in html and "https://" not in html  # nothing from a CDN


def test_deidentify_on_arrival_keeps_no_identifiers(make_client, ct_file, series_zip, tmp_path):
    data = tmp_path / "data"
    client = make_client(data_dir=data, deidentify=True, deid_key="k")
    assert client.get("/api/info").json()["deidentify"] is True
    ids = []
    for name, payload in (("ct.dcm", ct_file.read_bytes()), ("s.zip", series_zip)):
        job = wait(client, upload(client, name, payload, model="nearest").json()["id"])
        assert job["status"] == "done" and job["deidentified"] is True
        ids.append(job["id"])
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    downloads = b"".join(client.get(f"/api/jobs/{i}/download").content for i in ids)
    for blob in (stored, downloads):
        for value in SECRETS.values():
            assert value.encode() not in blob
    # zipped output: unpack and look inside too
    with zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{ids[1]}/download").content)) as z:
        inside = b"".join(z.read(n) for n in z.namelist())
    assert all(v.encode() not in inside for v in SECRETS.values())
    assert b"PatientIdentityRemoved" not in inside  # (keyword not stored, value is)
    ds = pydicom.dcmread(io.BytesIO(client.get(f"/api/jobs/{ids[0]}/download").content))
    assert ds.PatientIdentityRemoved == "YES"
    assert not any((data / "jobs" / i / "upload").exists() for i in ids)  # uploads gone


def test_without_deidentify_uploads_are_deleted_when_jobs_end(client, ct_file, tmp_path, caplog):
    caplog.set_level("DEBUG")
    job = wait(client, upload(client, "Zyxwv^Privacyprobe.dcm", ct_file.read_bytes()).json()["id"])
    folder = tmp_path / "data" / "jobs" / job["id"]
    assert not (folder / "upload").exists()
    record = (folder / "job.json").read_text()
    assert_clean(record + caplog.text + str(client.get("/api/jobs").json()))


def test_a_trained_checkpoint_is_offered_at_its_own_scale(make_client, ct_file, tmp_path):
    import torch

    from medsr import models
    from medsr.web.app import default_models

    torch.manual_seed(0)
    net = models.build_generator("edsr", {"scale": 3, "num_features": 8, "num_blocks": 1})
    folder = models.save(net, tmp_path / "tiny-edsr")
    client = make_client(models=default_models({"tiny": str(folder)}), default_model="tiny")
    info = client.get("/api/info").json()
    assert info["default_model"] == "tiny"
    assert {"name": "tiny", "scales": [3], "trained": True} in info["models"]
    r = upload(client, "ct.dcm", ct_file.read_bytes(), scale="2")
    assert r.status_code == 422 and "tiny upscales by 3, not 2" in r.json()["detail"]
    job = wait(client, upload(client, "ct.dcm", ct_file.read_bytes()).json()["id"])
    assert job["status"] == "done" and job["scale"] == 3
    assert job["output_shape"] == [384, 384] and job["model"] == "tiny"


def test_cross_site_posts_and_foreign_host_names_are_refused(make_client, ct_file, tmp_path):
    client = make_client()
    r = client.post(
        "/api/jobs",
        files={"file": ("ct.dcm", ct_file.read_bytes())},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = client.post(
        "/api/jobs",
        files={"file": ("ct.dcm", ct_file.read_bytes())},
        headers={"Origin": "http://testserver"},
    )
    assert r.status_code == 202
    local = make_client(data_dir=tmp_path / "d2", allowed_hosts=["127.0.0.1", "localhost"])
    assert local.get("/api/info").status_code == 400  # Host: testserver (a rebound name)
    assert local.get("/api/info", headers={"Host": "127.0.0.1:8000"}).status_code == 200


def test_a_zip_of_two_series_is_refused_without_naming_their_uids(client, ct_file, tmp_path):
    from tests.web.conftest import small_series, zip_bytes

    one = small_series(ct_file, tmp_path / "a", slices=2)
    two = small_series(ct_file, tmp_path / "b", slices=3)
    members = {f"a/{p.name}": p.read_bytes() for p in one}
    members.update({f"b/{p.name}": p.read_bytes() for p in two})
    r = upload(client, "two.zip", zip_bytes(members))
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "2 DICOM series" in detail and "zip one series at a time" in detail
    uid = str(pydicom.dcmread(one[0]).SeriesInstanceUID)
    assert uid not in detail


def _damaged_zips(payload: bytes) -> dict[str, bytes]:
    """A zip whose deflated member is garbage (zlib error) and one whose stored member
    does not match its CRC."""
    out = {}
    for kind, method in (("zlib", zipfile.ZIP_DEFLATED), ("crc", zipfile.ZIP_STORED)):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as archive:
            archive.writestr("a.dcm", payload)
        data = bytearray(buffer.getvalue())
        start = 30 + len("a.dcm")  # the member's data follows its local header
        if kind == "zlib":
            data[start : start + 16] = b"\xff" * 16  # an invalid deflate block type
        else:
            data[start + 200] ^= 0xFF
        out[kind] = bytes(data)
    return out


def test_damaged_zip_members_and_infinite_windows_are_400(client, ct_file):
    for kind, data in _damaged_zips(ct_file.read_bytes()).items():
        r = upload(client, "s.zip", data)
        assert r.status_code == 400, (kind, r.text)
        assert "member 1 of the zip archive is damaged" in r.json()["detail"]
    job = wait(client, upload(client, "ct.dcm", ct_file.read_bytes(), model="nearest").json()["id"])
    for query in ("low=-inf&high=inf", "low=0&high=inf", "low=nan&high=1"):
        r = client.get(f"/api/jobs/{job['id']}/png?{query}")
        assert r.status_code == 400, (query, r.text)
        assert "finite" in r.json()["detail"]
    assert client.get(f"/api/jobs/{job['id']}/png?low=-100&high=100").status_code == 200


def test_an_upload_with_nan_or_inf_is_refused_at_once(client, tmp_path):
    data = np.ones((4, 8, 8), np.float32)
    data[0, 1, 1], data[2, 3, 3] = np.nan, np.inf
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    r = upload(client, "v.nii.gz", path.read_bytes(), model="nearest")
    assert r.status_code == 400, r.text
    assert "2 NaN or infinite values (of 256)" in r.json()["detail"]
    assert client.get("/api/jobs").json() == []


_KILLED_WHILE_DEIDENTIFYING = r"""
import os, sys
from pathlib import Path

from fastapi.testclient import TestClient

import medsr.io.deidentify
from medsr.web.app import ServeSettings, create_app
from medsr.web.jobs import ModelChoice

def killed(*args, **kwargs):  # the server dies as the upload is about to be de-identified
    os._exit(9)

medsr.io.deidentify.deidentify_file = killed
data, upload = sys.argv[1:]
models = {"nearest": ModelChoice(name="nearest", spec="nearest", scales=(2,))}
client = TestClient(create_app(ServeSettings(data_dir=Path(data), models=models, deidentify=True)))
client.post("/api/jobs", files={"file": (Path(upload).name, Path(upload).read_bytes())})
"""


@pytest.mark.parametrize("name", ["ct.dcm", "series.zip"])
def test_deidentify_leaves_no_original_bytes_when_killed(name, ct_file, series_zip, tmp_path):
    import subprocess
    import sys

    upload_file = tmp_path / name
    upload_file.write_bytes(ct_file.read_bytes() if name == "ct.dcm" else series_zip)
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_DEIDENTIFYING, str(data), str(upload_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 9, out.stderr[-2000:]  # killed where the test meant it to be
    left = [p for p in (data / "jobs").rglob("*") if p.is_file()]
    stored = b"".join(p.read_bytes() for p in left)
    for value in SECRETS.values():  # nothing, even before a restart cleans up
        assert value.encode() not in stored, [p.name for p in left]
    client = TestClient(create_app(ServeSettings(data_dir=data, deidentify=True)))
    assert list((data / "jobs").iterdir()) == []  # the empty job folder went at start-up
    client.close()
