"""The durable spool of ``medsr listen``: grouping, quiet periods, crash recovery."""

from __future__ import annotations

import time

from medsr.net.spool import Job, JobState, Spool, redact

STUDY_A, SERIES_A = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"


def test_instances_group_by_series_and_a_resent_instance_is_kept_once(tmp_path):
    spool = Spool(tmp_path)
    spool.store(b"one", series_uid=SERIES_A, sop_uid="1.2.3.4.5.1")
    spool.store(b"two", series_uid=SERIES_A, sop_uid="1.2.3.4.5.2")
    spool.store(b"one again", series_uid=SERIES_A, sop_uid="1.2.3.4.5.1")
    spool.store(b"other", series_uid="1.2.3.4.6", sop_uid="1.2.3.4.6.1")
    assert sorted(spool.pending().values()) == [1, 2]
    names = [p.name for p in tmp_path.rglob("*")]
    assert not any("1.2." in name for name in names)  # keys, never UIDs


def test_a_series_is_queued_after_its_quiet_period(tmp_path):
    spool = Spool(tmp_path)
    spool.store(b"x", series_uid=SERIES_A, sop_uid="1.2.3.4.5.1")
    now = time.time()
    assert spool.seal_quiet(30, now=now) == []
    (job,) = spool.seal_quiet(30, now=now + 31)
    assert [p.read_bytes() for p in job.instances()] == [b"x"]
    assert spool.pending() == {} and spool.jobs() == [job]
    assert spool.next_job(now=now) == job


def test_keys_are_stable_per_spool_and_differ_between_spools(tmp_path):
    a, b = Spool(tmp_path / "a"), Spool(tmp_path / "b")
    assert Spool(tmp_path / "a").key(SERIES_A) == a.key(SERIES_A) != b.key(SERIES_A)
    assert (tmp_path / "a" / "secret").stat().st_mode & 0o077 == 0


def test_recovery_drops_half_written_files_and_outputs(tmp_path):
    spool = Spool(tmp_path)
    spool.store(b"x", series_uid=SERIES_A, sop_uid="1.2.3.4.5.1")
    (job,) = spool.seal_quiet(1, now=time.time() + 10)
    job.partial.mkdir()
    (job.partial / "half.dcm").write_bytes(b"half")
    spool.store(b"y", series_uid=STUDY_A, sop_uid="1.2.3.4.5.9")
    (series,) = spool.incoming.iterdir()
    (series / "input" / ".tmp-crash").write_bytes(b"")
    recovered = Spool(tmp_path)
    assert not job.partial.exists()
    assert not list(series.glob("input/.tmp-*"))
    assert list(recovered.pending().values()) == [1]


def test_job_state_round_trips_and_failed_jobs_keep_a_redacted_error(tmp_path):
    spool = Spool(tmp_path)
    spool.store(b"x", series_uid=SERIES_A, sop_uid="1.2.3.4.5.1")
    (job,) = spool.seal_quiet(1, now=time.time() + 10)
    job.save(JobState(attempts=2, next_try=5.0, sent=["a.dcm"], error="e"))
    assert job.state() == JobState(attempts=2, next_try=5.0, sent=["a.dcm"], error="e")
    failed = spool.give_up(job, f"series {SERIES_A} refused by 127.0.0.1")
    assert (failed / "error.txt").read_text() == "series <uid> refused by 127.0.0.1\n"
    assert spool.jobs() == [] and isinstance(Job(failed).state(), JobState)


def test_redact_keeps_addresses_and_numbers():
    assert redact("1.2.840.10008.5.1 at 10.0.0.1:104, 3.5 s") == "<uid> at 10.0.0.1:104, 3.5 s"
