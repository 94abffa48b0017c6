"""The on-disk job queue: restarts, retention, workers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from medsr.errors import ConfigError
from medsr.io import Image, read
from medsr.web.jobs import JobManager, ModelChoice, UnknownJobError

MODELS = {
    name: ModelChoice(name=name, spec=name, scales=(2, 3, 4)) for name in ("nearest", "bicubic")
}


def _reader(folder, record):
    return read(next(folder.iterdir()))


def _manager(tmp_path, **options):
    options.setdefault("read_upload", _reader)
    return JobManager(tmp_path / "data", models=MODELS, **options)


def _submit(manager, ct_file, *, model="nearest", image=None):
    job_id, folder = manager.new_job_dir()
    (folder / "upload" / "input.dcm").write_bytes(ct_file.read_bytes())
    return manager.submit(job_id, kind="dicom", model=model, scale=2, image=image)


def test_finished_results_survive_a_restart(tmp_path, ct_file):
    manager = _manager(tmp_path)
    manager.start()
    record = _submit(manager, ct_file)
    manager.wait_idle()
    manager.stop()
    done = manager.get(record.id)
    assert done.status == "done"
    sr = manager.view_slice(record.id, "sr", 0)

    again = _manager(tmp_path)  # a new server process on the same data directory
    restored = again.get(record.id)
    assert restored.status == "done" and restored.output_shape == [256, 256]
    np.testing.assert_array_equal(again.view_slice(record.id, "sr", 0), sr)
    assert again.result_path(record.id).is_file()


def test_unfinished_jobs_are_queued_again_after_a_restart(tmp_path, ct_file):
    manager = _manager(tmp_path)  # never started: the job stays queued, as if killed
    record = _submit(manager, ct_file)
    path = tmp_path / "data" / "jobs" / record.id / "job.json"
    data = json.loads(path.read_text())
    data["status"] = "running"  # killed mid-run
    path.write_text(json.dumps(data))
    lost = _submit(manager, ct_file)
    (tmp_path / "data" / "jobs" / lost.id / "upload" / "input.dcm").unlink()
    (tmp_path / "data" / "jobs" / lost.id / "upload").rmdir()

    again = _manager(tmp_path)
    assert again.get(record.id).status == "queued"
    assert again.get(lost.id).status == "failed"
    assert "upload again" in again.get(lost.id).error
    again.start()
    again.wait_idle()
    again.stop()
    assert again.get(record.id).status == "done"
    assert not (tmp_path / "data" / "jobs" / record.id / "upload").exists()


def test_retention_by_age_and_count(tmp_path, ct_file):
    image = read(ct_file)
    manager = _manager(tmp_path, retention_hours=1.0, max_jobs=3)
    manager.start()
    ids = []
    for _ in range(4):
        ids.append(_submit(manager, ct_file, image=image).id)
        manager.wait_idle()
    manager.stop()
    kept = [r.id for r in manager.list()]
    assert sorted(kept) == sorted(ids[1:])  # the oldest beyond max_jobs went
    assert not (tmp_path / "data" / "jobs" / ids[0]).exists()
    with pytest.raises(UnknownJobError):
        manager.get(ids[0])
    assert manager.cleanup(now=time.time() + 1800) == []
    removed = manager.cleanup(now=time.time() + 3601)
    assert sorted(removed) == sorted(ids[1:])
    assert list((tmp_path / "data" / "jobs").iterdir()) == []


def test_a_failing_job_reports_its_error_and_the_worker_goes_on(tmp_path, ct_file):
    broken_ids = set()

    def broken(folder, record):
        from medsr.errors import CorruptFileError

        if record.id in broken_ids:
            raise CorruptFileError(folder / "input.dcm", "pixel data is truncated")
        return _reader(folder, record)

    manager = _manager(tmp_path, read_upload=broken)
    job_id, folder = manager.new_job_dir()
    broken_ids.add(job_id)
    (folder / "upload" / "input.dcm").write_bytes(ct_file.read_bytes())
    manager.start()
    bad = manager.submit(job_id, kind="dicom", model="nearest", scale=2)
    good = _submit(manager, ct_file)
    manager.wait_idle()
    manager.stop()
    assert manager.get(bad.id).status == "failed"
    assert manager.get(bad.id).error == "pixel data is truncated"  # no server path
    assert manager.get(good.id).status == "done"


def test_no_upload_is_left_when_a_job_is_reported_finished(tmp_path, ct_file, monkeypatch):
    """A client polling for "done" or "failed" must never find the upload still on disk
    (the worker used to mark the job first and delete the upload after: a race)."""
    seen = []
    update = JobManager._update

    def spy(self, record, *, save=True, **changes):
        if changes.get("status") in ("done", "failed"):
            seen.append((changes["status"], (self.root / record.id / "upload").exists()))
        update(self, record, save=save, **changes)

    def broken(folder, record):
        from medsr.errors import CorruptFileError

        if record.id == bad_id:
            raise CorruptFileError(folder / "input.dcm", "pixel data is truncated")
        return _reader(folder, record)

    monkeypatch.setattr(JobManager, "_update", spy)
    manager = _manager(tmp_path, read_upload=broken)
    bad_id, folder = manager.new_job_dir()
    (folder / "upload" / "input.dcm").write_bytes(ct_file.read_bytes())
    manager.start()
    manager.submit(bad_id, kind="dicom", model="nearest", scale=2)
    _submit(manager, ct_file)
    manager.wait_idle()
    manager.stop()
    assert sorted(status for status, _ in seen) == ["done", "failed"]
    assert not any(left for _, left in seen)


def test_two_workers_run_jobs_at_once(tmp_path, ct_file):
    image = Image(array=np.zeros((64, 64), np.float32), spacing=(1.0, 1.0))
    manager = _manager(tmp_path, workers=2)
    manager.start()
    records = [_submit(manager, ct_file, image=image) for _ in range(4)]
    manager.wait_idle()
    manager.stop()
    assert all(manager.get(r.id).status == "done" for r in records)
    assert len({r.id for r in records}) == 4


def test_bad_options():
    with pytest.raises(ConfigError, match="workers"):
        JobManager("x", models=MODELS, read_upload=_reader, workers=0)
    with pytest.raises(ConfigError, match="retention"):
        JobManager("x", models=MODELS, read_upload=_reader, retention_hours=0)


def test_start_up_removes_what_a_killed_server_left_half_done(tmp_path, ct_file):
    from tests.test_privacy import SECRETS

    manager = _manager(tmp_path)  # never started, as if killed
    done = _submit(manager, ct_file)
    queued = _submit(manager, ct_file)
    jobs = tmp_path / "data" / "jobs"
    record = json.loads((jobs / done.id / "job.json").read_text())
    record.update(status="done", finished_at=time.time())  # killed before the upload went
    (jobs / done.id / "job.json").write_text(json.dumps(record))
    original = ct_file.read_bytes()
    assert SECRETS["PatientName"].encode() in original
    # uploads being received or checked when it was killed (no job.json yet)
    receiving = jobs / "0123456789abcdef"
    (receiving / "upload").mkdir(parents=True)
    (receiving / "upload" / "received").write_bytes(original)
    unpacking = jobs / "fedcba9876543210"
    (unpacking / "upload" / "unpacked").mkdir(parents=True)
    (unpacking / "upload" / "unpacked" / "00001.dcm").write_bytes(original)
    (unpacking / "upload" / "series").mkdir()
    (unpacking / "upload" / "series" / ".00002.dcm.k2j4h1x0.part").write_bytes(original)
    # half-written files inside recorded jobs
    (jobs / queued.id / "upload" / ".input.dcm.abcd1234.part").write_bytes(original)
    (jobs / queued.id / "views").mkdir()
    (jobs / queued.id / "views" / "sr.npy").write_bytes(b"half")
    (jobs / queued.id / "job.json.tmp").write_text("{")
    (jobs / "not-a-job").mkdir()  # not ours to judge: kept

    again = _manager(tmp_path)
    assert sorted(p.name for p in jobs.iterdir()) == sorted([done.id, queued.id, "not-a-job"])
    assert not (jobs / done.id / "upload").exists()
    assert again.get(queued.id).status == "queued"
    assert sorted(p.name for p in (jobs / queued.id).rglob("*")) == [
        "input.dcm",
        "job.json",
        "upload",
    ]
    kept = b"".join(p.read_bytes() for p in jobs.rglob("*") if p.is_file())
    assert kept.count(SECRETS["PatientName"].encode()) == 1  # the queued job's own input
    again.start()
    again.wait_idle()
    again.stop()
    assert again.get(queued.id).status == "done"


def test_a_job_summary_carries_out_of_distribution_warnings(tmp_path, ct_file):
    import pydicom

    ds = pydicom.dcmread(ct_file)
    ds.Modality = "PT"
    pet = tmp_path / "pet.dcm"
    ds.save_as(pet)
    trained = {
        **MODELS,  # the job's bicubic baseline
        "tiny": ModelChoice(name="tiny", spec="medsr-edsr-tiny-x2", scales=(2,)),
    }
    manager = JobManager(tmp_path / "data", models=trained, read_upload=_reader)
    manager.start()
    flagged = _submit(manager, pet, model="tiny")
    plain = _submit(manager, ct_file, model="tiny")
    manager.wait_idle()
    manager.stop()
    done = manager.get(flagged.id)
    assert done.status == "done", done.error
    assert len(done.warnings) == 1 and done.warnings[0].startswith("modality PT was never seen")
    assert done.public()["warnings"] == done.warnings
    result = pydicom.dcmread(manager.result_path(flagged.id))
    assert "OOD: modality PT" in result.SeriesDescription
    assert manager.get(plain.id).warnings == []
    assert "OOD" not in pydicom.dcmread(manager.result_path(plain.id)).SeriesDescription
