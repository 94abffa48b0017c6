"""Upload checks that run before any image is decoded."""

from __future__ import annotations

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medsr.web.limits import (
    Limits,
    UploadRejected,
    check_nifti_header,
    classify_upload,
    copy_limited,
    extract_zip,
)
from tests.web.conftest import zip_bytes


def _png(path):
    PILImage.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("name", "writer", "kind"),
    [
        ("x.png", lambda p: _png(p), "png"),
        ("x.jpg", lambda p: PILImage.new("L", (8, 8)).save(p, format="JPEG"), "jpeg"),
        ("x.tif", lambda p: PILImage.new("L", (8, 8)).save(p, format="TIFF"), "tiff"),
        ("x.zip", lambda p: p.write_bytes(zip_bytes({"a.dcm": b"x"})), "dicom-zip"),
        (
            "x.nii.gz",
            lambda p: nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), p),
            "nifti",
        ),
    ],
)
def test_known_kinds_by_content(tmp_path, name, writer, kind):
    path = tmp_path / name
    writer(path)
    assert classify_upload(name, path) == kind


def test_dicom_by_content(ct_file):
    assert classify_upload("CT.DCM", ct_file) == "dicom"
    assert classify_upload("no-suffix", ct_file) == "dicom"


def test_unknown_empty_and_mismatched_are_refused(tmp_path, ct_file):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(UploadRejected, match="not a file type") as info:
        classify_upload("notes.txt", text)
    assert info.value.status == 415
    empty = tmp_path / "e.png"
    empty.write_bytes(b"")
    with pytest.raises(UploadRejected, match="empty") as info:
        classify_upload("e.png", empty)
    assert info.value.status == 400
    with pytest.raises(UploadRejected, match="named like a PNG") as info:
        classify_upload("scan.png", ct_file)
    assert info.value.status == 415
    npy = tmp_path / "a.npy"
    np.save(npy, np.zeros((4, 4)))
    with pytest.raises(UploadRejected, match="not a file type"):
        classify_upload("a.npy", npy)


def test_names_in_messages_are_tamed(tmp_path):
    path = tmp_path / "x"
    path.write_text("hello")
    with pytest.raises(UploadRejected) as info:
        classify_upload("../../secret\x1b[31m" + "y" * 200, path)
    message = str(info.value)
    assert "\x1b" not in message and "../" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.dcm", "unsafe path"),
        ("a/../../evil.dcm", "unsafe path"),
        ("/etc/evil.dcm", "unsafe path"),
        ("C:/evil.dcm", "unsafe path"),
        ("\\windows\\evil.dcm", "unsafe path"),
    ],
)
def test_zip_paths_that_leave_the_archive_are_refused(tmp_path, member, reason):
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes({"ok.dcm": b"x", member: b"y"}))
    with pytest.raises(UploadRejected, match=reason) as info:
        extract_zip(path, tmp_path / "out", Limits())
    assert info.value.status == 400
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_zip_member_count_size_and_ratio_caps(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes({f"{k}.dcm": b"x" for k in range(11)}))
    with pytest.raises(UploadRejected, match="11 members") as info:
        extract_zip(path, tmp_path / "o1", Limits(max_zip_members=10))
    assert info.value.status == 413
    path.write_bytes(zip_bytes({"a.dcm": b"x" * 600, "b.dcm": b"y" * 600}))
    with pytest.raises(UploadRejected, match="more than 1000 bytes"):
        extract_zip(path, tmp_path / "o2", Limits(max_zip_bytes=1000))
    path.write_bytes(zip_bytes({"bomb.dcm": b"\0" * 2_000_000}))
    with pytest.raises(UploadRejected, match="zip bomb"):
        extract_zip(path, tmp_path / "o3", Limits())


def test_zip_symlinks_and_encryption_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link.dcm")
        info.external_attr = 0o120777 << 16
        archive.writestr(info, "/etc/passwd")
    path = tmp_path / "a.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UploadRejected, match="symbolic link"):
        extract_zip(path, tmp_path / "o", Limits())


def test_zip_extracts_flat_with_neutral_names(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(
        zip_bytes(
            {
                "Doe^John/study/IM1": b"one",
                "Doe^John/study/IM2": b"two",
                "__MACOSX/._IM1": b"junk",
                ".DS_Store": b"junk",
            }
        )
    )
    files = extract_zip(path, tmp_path / "out", Limits())
    assert [f.name for f in files] == ["00001.dcm", "00002.dcm"]
    assert [f.read_bytes() for f in files] == [b"one", b"two"]
    with pytest.raises(UploadRejected, match="damaged"):
        bad = tmp_path / "bad.zip"
        bad.write_bytes(b"PK\x03\x04 not really")
        extract_zip(bad, tmp_path / "o2", Limits())


def test_nifti_header_checked_before_reading(tmp_path):
    path = tmp_path / "v.nii"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), path)
    assert check_nifti_header(path, Limits()) == (8, 8, 4)
    with pytest.raises(UploadRejected, match="256 voxels, over the limit of 100") as info:
        check_nifti_header(path, Limits(max_pixels=100))
    assert info.value.status == 413
    # a header that declares a huge volume in a tiny (gzipped) file: refused from the header
    header = bytearray(path.read_bytes()[:352])
    header[42:48] = np.array([30000, 30000, 30000], "<i2").tobytes()
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(gzip.compress(bytes(header)))
    with pytest.raises(UploadRejected, match="over the limit"):
        check_nifti_header(bomb, Limits())
    truncated = tmp_path / "t.nii"
    truncated.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UploadRejected, match="truncated"):
        check_nifti_header(truncated, Limits())
    junk = tmp_path / "j.nii"
    junk.write_bytes(b"\0" * 400)
    with pytest.raises(UploadRejected, match="not a NIfTI"):
        check_nifti_header(junk, Limits())


def test_copy_limited(tmp_path):
    assert copy_limited(io.BytesIO(b"x" * 100), tmp_path / "a", 100) == 100
    with pytest.raises(UploadRejected, match="larger than the limit") as info:
        copy_limited(io.BytesIO(b"x" * 101), tmp_path / "b", 100)
    assert info.value.status == 413


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_pixels"):
        Limits(max_pixels=0)


_BOMB_SCRIPT = r"""
import json, resource, sys
from pathlib import Path

from fastapi.testclient import TestClient

from medsr.io import read
from medsr.web.app import ServeSettings, create_app
from medsr.web.jobs import ModelChoice

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

data, *bombs = sys.argv[1:]
models = {"nearest": ModelChoice(name="nearest", spec="nearest", scales=(2,))}
answers, base = [], None
for deid in (False, True):
    settings = ServeSettings(data_dir=Path(data) / str(deid), models=models, deidentify=deid)
    with TestClient(create_app(settings)) as client:
        client.post("/api/jobs", files={"file": ("x.png", b"junk")})  # warm up the imports
        base = base or rss_mb()
        for bomb in bombs:
            r = client.post(
                "/api/jobs", files={"file": (Path(bomb).name, Path(bomb).read_bytes())}
            )
            answers.append([Path(bomb).name, deid, r.status_code, r.json()["detail"]])
for bomb in bombs:  # the CLI readers (medsr info, upscale), default caps
    if not bomb.endswith(".zip"):
        try:
            read(bomb)
        except Exception as error:
            answers.append([Path(bomb).name, "read", type(error).__name__, str(error)])
print(json.dumps({"base": base, "peak": rss_mb(), "answers": answers}))
"""


def test_bombs_stay_under_the_memory_bound(tmp_path):
    """docs/web.md: a bomb upload costs at most 300 MB over the server's own memory."""
    import json
    import subprocess
    import sys

    from tests.bombs import deflate_bomb, nifti_gz_bomb
    from tests.web.conftest import zip_bytes

    dcm = deflate_bomb(tmp_path / "deflated.dcm", zeros_mib=512)
    archive = tmp_path / "series.zip"
    archive.write_bytes(zip_bytes({"a/1.dcm": dcm.read_bytes()}))
    nii = nifti_gz_bomb(tmp_path / "vol.nii.gz", 400)  # 512 MB of float64, at the voxel cap
    out = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, str(tmp_path / "d"), str(dcm), str(archive), str(nii)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.splitlines()[-1])
    answers = {(name, str(mode)): (status, text) for name, mode, status, text in facts["answers"]}
    for deid in ("False", "True"):
        assert answers["deflated.dcm", deid][0] == 413
        assert "64 MiB outside the pixel data" in answers["deflated.dcm", deid][1]
        assert answers["series.zip", deid][0] == 413
        assert answers["vol.nii.gz", deid][0] == 400
        assert "header declares 512000000 (truncated)" in answers["vol.nii.gz", deid][1]
    assert answers["deflated.dcm", "read"][0] == "ImageTooLargeError"
    assert answers["vol.nii.gz", "read"][0] == "CorruptFileError"
    assert facts["peak"] - facts["base"] < 300, facts
