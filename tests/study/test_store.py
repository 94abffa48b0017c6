"""The SQLite store: tokens, answers, resume, changes, errors and concurrent writers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from medsr.errors import (
    AlreadyAnsweredError,
    ConfigError,
    FileError,
    InvalidAnswerError,
    InvalidTokenError,
    UnknownItemError,
)
from medsr.study import Preference, Rating, Study


def test_authenticate(new_study: Callable[..., Study]) -> None:
    study = new_study()
    for index, (label, token) in enumerate(study.issued_tokens.items()):
        assert study.authenticate(token).label == label
        assert study.authenticate(f"  {token}\n").index == index
    for bad in ("", "   ", "nope", next(iter(study.issued_tokens.values())) + "x"):
        with pytest.raises(InvalidTokenError):
            study.authenticate(bad)


def test_tokens_are_not_stored_in_clear(new_study: Callable[..., Study]) -> None:
    study = new_study()
    tokens = list(study.issued_tokens.values())
    study.close()
    data = b"".join(p.read_bytes() for p in study.directory.glob("study.sqlite*"))
    assert data  # the store was written
    assert not any(token.encode() in data for token in tokens)
    with Study.open(study.directory) as reopened:
        assert dict(reopened.issued_tokens) == {}
        assert reopened.authenticate(tokens[1]).label == "reader-2"


def test_answers_are_saved_and_a_reader_resumes(new_study: Callable[..., Study]) -> None:
    study = new_study()
    token = study.issued_tokens["reader-2"]
    reader = study.authenticate(token)
    items = study.reader_items(reader)
    assert [item.position for item in items] == list(range(1, len(items) + 1))
    for item in items[:5]:
        assert study.next_item(reader) == item
        saved = study.submit(reader, item.item_id, Rating(3, 4), elapsed_s=2.5)
        assert saved.revision == 1
    study.close()  # the reader stops ...

    with Study.open(study.directory) as again:  # ... and comes back later
        reader = again.authenticate(token)
        nxt = again.next_item(reader)
        assert nxt is not None and nxt.item_id == items[5].item_id and not nxt.answered
        assert again.progress(reader).answered == 5
        # Answering out of order does not skip the earlier unanswered item.
        again.submit(reader, items[7].item_id, Rating(2, 2))
        assert again.next_item(reader).item_id == items[5].item_id
        for item in items:
            again.submit(reader, item.item_id, Rating(5, 5))
        assert again.next_item(reader) is None
        assert again.progress(reader).done
        assert again.progress(again.readers()[0]).answered == 0
        records = again.rating_records()
        assert len(records) == len(items)
        assert all(r.reader == "reader-2" and r.quality == 5 for r in records)


def test_changing_an_answer_updates_it(new_study: Callable[..., Study]) -> None:
    study = new_study()
    reader = study.authenticate(study.issued_tokens["reader-1"])
    item = study.next_item(reader)
    assert study.get_answer(reader, item.item_id) is None
    study.submit(reader, item.item_id, Rating(2, 3, comment="blurry", flags=["blur"]))
    saved = study.submit(reader, item.item_id, Rating(4, 3, comment="fine on second look"))
    assert saved.revision == 2
    assert study.get_answer(reader, item.item_id) == Rating(4, 3, comment="fine on second look")
    (record,) = study.rating_records()
    assert (record.quality, record.flags, record.revision) == (4, (), 2)
    assert study.answer_log_count() == 2
    assert study.get_item(reader, item.item_id).answered


def test_changing_an_answer_can_be_forbidden(new_study: Callable[..., Study]) -> None:
    study = new_study(allow_changes=False, mode="pairwise")
    reader = study.authenticate(study.issued_tokens["reader-1"])
    item = study.next_item(reader)
    study.submit(reader, item.item_id, Preference("left"))
    with pytest.raises(AlreadyAnsweredError, match="does not allow"):
        study.submit(reader, item.item_id, Preference("right"))
    assert study.get_answer(reader, item.item_id) == Preference("left")
    assert study.answer_log_count() == 1


def test_wrong_items_and_answers_are_rejected(new_study: Callable[..., Study]) -> None:
    study = new_study()
    reader = study.authenticate(study.issued_tokens["reader-1"])
    item = study.next_item(reader)
    for bad_id in ("0123456789abcdef", "../study.sqlite", "", item.item_id.upper()):
        with pytest.raises(UnknownItemError):
            study.submit(reader, bad_id, Rating(3, 3))
        with pytest.raises(UnknownItemError):
            study.get_item(reader, bad_id)
    with pytest.raises(InvalidAnswerError, match="asks for ratings"):
        study.submit(reader, item.item_id, Preference("left"))
    with pytest.raises(InvalidAnswerError, match="elapsed_s"):
        study.submit(reader, item.item_id, Rating(3, 3), elapsed_s=-1)
    assert study.answer_log_count() == 0
    with pytest.raises(UnknownItemError):
        study.image_path(item.item_id)  # an item id is not an image id
    with pytest.raises(UnknownItemError):
        study.image_path("../study")
    assert study.image_path(item.images[0]).is_file()


def test_add_reader_and_reissue_token(new_study: Callable[..., Study]) -> None:
    study = new_study(readers=1)
    reader = study.authenticate(study.issued_tokens["reader-1"])
    study.submit(reader, study.next_item(reader).item_id, Rating(1, 1))
    old = study.issued_tokens["reader-1"]
    new = study.reissue_token("reader-1")
    with pytest.raises(InvalidTokenError):
        study.authenticate(old)
    assert study.progress(study.authenticate(new)).answered == 1
    added, token = study.add_reader()
    assert added.label == "reader-2" and study.authenticate(token) == added
    assert len(study.reader_items(added)) == study.info.n_items
    with pytest.raises(ConfigError, match="exists already"):
        study.add_reader("reader-2")
    with pytest.raises(ConfigError, match="no reader labelled 'zoe'; readers: reader-1, reader-2"):
        study.reissue_token("zoe")
    assert [p.answered for p in study.reader_progress()] == [1, 0]


def test_open_refuses_non_studies_and_other_schema_versions(
    tmp_path: Path, new_study: Callable[..., Study]
) -> None:
    with pytest.raises(FileError, match="not a reader study"):
        Study.open(tmp_path)
    study = new_study()
    study.close()
    with sqlite3.connect(study.directory / "study.sqlite") as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(FileError, match=r"schema version 99.*newer medsr"):
        Study.open(study.directory)


def test_pairwise_records_resolve_left_and_right(new_study: Callable[..., Study]) -> None:
    study = new_study(mode="pairwise", readers=2)
    for reader in study.readers():
        for item in study.reader_items(reader):
            study.submit(reader, item.item_id, Preference("left"))
    records = study.preference_records()
    assert len(records) == 2 * study.info.n_items
    for record in records:
        assert record.preferred == record.left != record.right
    # Both sides were randomised, so "left" is not always the alphabetically first method.
    assert {r.left < r.right for r in records} == {True, False}


def _answer_all(study: Study, token: str, *, part: int, parts: int, start: threading.Barrier):
    reader = study.authenticate(token)
    items = study.reader_items(reader)[part::parts]
    start.wait()
    for position, item in enumerate(items):
        study.submit(reader, item.item_id, Rating(1 + position % 5, 1 + part % 5))


def test_concurrent_threads_lose_no_answers(
    new_study: Callable[..., Study], make_cases: Callable
) -> None:
    """4 readers x 2 threads each, all writing at once; a tiny busy timeout forces the
    retry path."""
    created = new_study(cases=make_cases(8), readers=4)
    tokens = list(created.issued_tokens.values())
    created.close()
    study = Study.open(created.directory, busy_timeout_s=0.001)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def target(token: str, part: int) -> None:
        try:
            _answer_all(study, token, part=part, parts=2, start=start)
        except BaseException as error:  # surfaced below
            errors.append(error)
            start.abort()

    threads = [
        threading.Thread(target=target, args=(token, part)) for token in tokens for part in (0, 1)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    expected = 4 * study.info.n_items
    assert len(study.rating_records()) == expected
    assert study.answer_log_count() == expected
    assert all(p.answered == p.total for p in study.reader_progress())
    study.close()


CHILD = """
import sys, time
from pathlib import Path
from medsr.study import Rating, Study
directory, token, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
with Study.open(directory, busy_timeout_s=0.001) as study:
    reader = study.authenticate(token)
    items = study.reader_items(reader)
    while not go.exists():
        time.sleep(0.005)
    for round_ in range(2):  # answer everything, then change every answer once
        for item in items:
            study.submit(reader, item.item_id, Rating(1 + round_, 2))
print(len(items))
"""


def test_concurrent_processes_lose_no_answers(
    tmp_path: Path, new_study: Callable[..., Study], make_cases: Callable
) -> None:
    created = new_study(cases=make_cases(6), readers=4)
    tokens = list(created.issued_tokens.values())
    created.close()
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(created.directory), token, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for token in tokens
    ]
    go.touch()
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert int(out) == created.info.n_items
    with Study.open(created.directory) as study:
        records = study.rating_records()
        assert len(records) == 4 * study.info.n_items
        assert {(r.quality, r.revision) for r in records} == {(2, 2)}
        assert study.answer_log_count() == 2 * 4 * study.info.n_items


def test_a_new_connection_waits_out_a_busy_database(tmp_path: Path, monkeypatch) -> None:
    """A new connection's first statements can meet a locked database under load (seen
    with a short busy timeout in the test above): they are retried like writes."""
    from medsr.study.store import Store

    real_connect = sqlite3.connect
    failures = {"left": 2}

    class Flaky:  # a connection whose first statements find the database locked
        def __init__(self, conn: sqlite3.Connection) -> None:
            object.__setattr__(self, "_conn", conn)

        def execute(self, *args):
            if failures["left"]:
                failures["left"] -= 1
                raise sqlite3.OperationalError("database is locked")
            return self._conn.execute(*args)

        def __getattr__(self, name):
            return getattr(self._conn, name)

        def __setattr__(self, name, value):
            setattr(self._conn, name, value)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: Flaky(real_connect(*a, **k)))
    store = Store(tmp_path / "db.sqlite", busy_timeout_s=0.001)
    conn = store.connection()
    assert failures["left"] == 0 and conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()

    failures["left"] = 10**6  # still locked after retry_s: the error goes to the caller
    store = Store(tmp_path / "db.sqlite", busy_timeout_s=0.001, retry_s=0.05)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.connection()
