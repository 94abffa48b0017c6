"""The study store: one SQLite file (WAL mode) in the study directory, and ``Study``.

Layout of a study directory::

    STUDY/
      study.sqlite      (+ study.sqlite-wal / -shm while open)
      images/<image-id>.png

Concurrency: every thread (and every process) gets its own connection. Writes run in
``BEGIN IMMEDIATE`` transactions, so a writer takes the lock before reading anything and
never has to upgrade a read lock (the case where SQLite returns "busy" without waiting);
the connection waits up to ``busy_timeout_s`` for the lock, and a whole transaction is
retried with back-off if it still meets a busy database. WAL lets readers go on while one
writer commits. Each answer is committed before the call returns (synchronous=FULL), so a
reader can stop at any moment and resume at the next unanswered item.

Nothing about a reader is stored beyond the label chosen by the investigator: no names,
IP addresses or browser details. Tokens are stored as SHA-256 hashes only.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from medsr.errors import (
    AlreadyAnsweredError,
    ConfigError,
    FileError,
    InvalidAnswerError,
    InvalidTokenError,
    UnknownItemError,
)
from medsr.study.design import (
    ItemSpec,
    Preference,
    PreferenceRecord,
    Progress,
    Rating,
    RatingRecord,
    Reader,
    ReaderItem,
    ReaderProgress,
    Saved,
    check_name,
    hash_token,
    is_opaque_id,
    new_token,
    reader_order,
    swap_sides,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DB_NAME = "study.sqlite"
IMAGES_DIR = "images"
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED

T = TypeVar("T")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE cases (
    case_name   TEXT PRIMARY KEY,
    window_low  REAL NOT NULL,
    window_high REAL NOT NULL
);
CREATE TABLE images (
    image_id  TEXT PRIMARY KEY,
    case_name TEXT NOT NULL REFERENCES cases (case_name),
    method    TEXT NOT NULL,
    file_name TEXT NOT NULL UNIQUE,
    height    INTEGER NOT NULL,
    width     INTEGER NOT NULL,
    UNIQUE (case_name, method)
);
CREATE TABLE items (
    item_id         TEXT PRIMARY KEY,
    canonical_index INTEGER NOT NULL UNIQUE,
    case_name       TEXT NOT NULL REFERENCES cases (case_name),
    image_a         TEXT NOT NULL REFERENCES images (image_id),
    image_b         TEXT REFERENCES images (image_id)
);
CREATE TABLE readers (
    reader_index INTEGER PRIMARY KEY,
    label        TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL
);
CREATE TABLE assignments (
    reader_index INTEGER NOT NULL REFERENCES readers (reader_index),
    position     INTEGER NOT NULL,
    item_id      TEXT NOT NULL REFERENCES items (item_id),
    swapped      INTEGER NOT NULL CHECK (swapped IN (0, 1)),
    PRIMARY KEY (reader_index, position),
    UNIQUE (reader_index, item_id)
);
CREATE TABLE ratings (
    reader_index      INTEGER NOT NULL,
    item_id           TEXT NOT NULL,
    quality           INTEGER NOT NULL CHECK (quality BETWEEN 1 AND 5),
    usefulness        INTEGER NOT NULL CHECK (usefulness BETWEEN 1 AND 5),
    flags             TEXT NOT NULL,
    comment           TEXT NOT NULL,
    elapsed_s         REAL,
    first_answered_at TEXT NOT NULL,
    answered_at       TEXT NOT NULL,
    revision          INTEGER NOT NULL,
    PRIMARY KEY (reader_index, item_id),
    FOREIGN KEY (reader_index, item_id) REFERENCES assignments (reader_index, item_id)
);
CREATE TABLE preferences (
    reader_index      INTEGER NOT NULL,
    item_id           TEXT NOT NULL,
    choice            TEXT NOT NULL CHECK (choice IN ('left', 'right', 'none')),
    comment           TEXT NOT NULL,
    elapsed_s         REAL,
    first_answered_at TEXT NOT NULL,
    answered_at       TEXT NOT NULL,
    revision          INTEGER NOT NULL,
    PRIMARY KEY (reader_index, item_id),
    FOREIGN KEY (reader_index, item_id) REFERENCES assignments (reader_index, item_id)
);
CREATE TABLE answer_log (
    log_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    reader_index INTEGER NOT NULL,
    item_id      TEXT NOT NULL,
    answer       TEXT NOT NULL,
    answered_at  TEXT NOT NULL
);
"""


def utc_now() -> str:
    """Current UTC time as ISO 8601 with milliseconds, e.g. ``2026-11-21T09:30:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _BUSY_CODES
    message = str(error).lower()
    return "locked" in message or "busy" in message


class Store:
    """SQLite access with one connection per thread and process, and retried writes.

    ``busy_timeout_s`` is how long one attempt waits for the write lock; ``retry_s`` is
    how long a write keeps retrying in total before the busy error is raised.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, retry_s: float = 60.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.retry_s = retry_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,  # only so that close() may close every connection
        )
        conn.row_factory = sqlite3.Row
        # the first statements read the schema: under load a new connection can meet a busy
        # database there too (seen with a short busy timeout), so they are retried like writes
        try:
            self._until_not_busy(lambda: _configure(conn))
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    def _until_not_busy(self, action: Callable[[], T]) -> T:
        """``action()``, retried with jittered back-off while SQLite reports the database busy
        (for ``retry_s`` in all)."""
        deadline = time.monotonic() + self.retry_s
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                if not _is_busy(error) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))  # jitter, not reproducibility
                delay = min(delay * 2, 0.5)

    def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried while busy."""
        conn = self.connection()
        return self._until_not_busy(lambda: _transaction(conn, work))

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this store opened (call when no thread uses it)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def _configure(conn: sqlite3.Connection) -> None:
    """A new connection's settings (both are idempotent, so a busy retry may repeat them)."""
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """``work(conn)`` in one ``BEGIN IMMEDIATE`` transaction, rolled back if anything fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def initialise(conn: sqlite3.Connection, meta: Mapping[str, str]) -> None:
    """Create the schema in an empty database and switch it to WAL."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("SQLite refused WAL mode (journal_mode=%s); concurrent readers will wait", mode)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("schema_version", str(SCHEMA_VERSION)), *meta.items()],
    )


def insert_reader(
    conn: sqlite3.Connection, *, items: list[ItemSpec], item_ids: list[str], seed: int, label: str
) -> tuple[Reader, str]:
    """Add a reader (next index), its token hash and its assignments; return it and its token.

    ``items``/``item_ids`` are the canonical item list and their ids, index by index.
    """
    row = conn.execute("SELECT COALESCE(MAX(reader_index) + 1, 0) FROM readers").fetchone()
    index = int(row[0])
    token = new_token()
    conn.execute(
        "INSERT INTO readers (reader_index, label, token_sha256, created_at) VALUES (?, ?, ?, ?)",
        (index, label, hash_token(token), utc_now()),
    )
    id_of = {item: item_id for item, item_id in zip(items, item_ids, strict=True)}
    ordered = reader_order(items, seed=seed, reader_index=index)
    conn.executemany(
        "INSERT INTO assignments (reader_index, position, item_id, swapped) VALUES (?, ?, ?, ?)",
        [
            (
                index,
                position,
                id_of[item],
                int(len(item.methods) == 2 and swap_sides(item, seed=seed, reader_index=index)),
            )
            for position, item in enumerate(ordered, start=1)
        ],
    )
    return Reader(index, label), token


@dataclass(frozen=True)
class StudyInfo:
    """What the investigator knows about a study (unblinded)."""

    title: str
    mode: str
    seed: int
    allow_changes: bool
    created_at: str
    schema_version: int
    cases: tuple[str, ...]
    methods: tuple[str, ...]
    n_items: int
    windows: Mapping[str, tuple[float, float]]


class Study:
    """An open reader study. Safe to share between threads; open one per process.

    Reader-facing methods take a ``Reader`` from ``authenticate(token)`` and return only
    opaque ids. Investigator methods (``info``, ``reader_progress``, ``rating_records``,
    ``preference_records``) are unblinded.
    """

    def __init__(self, directory: Path, store: Store, info: StudyInfo) -> None:
        self.directory = directory
        self.store = store
        self.info = info
        self._issued: dict[str, str] = {}

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls, directory: str | Path, *, busy_timeout_s: float = 10.0, retry_s: float = 60.0
    ) -> Study:
        """Open the study in ``directory`` (made by ``create_study``)."""
        directory = Path(directory)
        path = directory / DB_NAME
        if not path.is_file():
            raise FileError(directory, f"not a reader study (no {DB_NAME} in it)")
        store = Store(path, busy_timeout_s=busy_timeout_s, retry_s=retry_s)
        try:
            info = _read_info(store, path)
        except BaseException:
            store.close()
            raise
        return cls(directory, store, info)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def mode(self) -> str:
        return self.info.mode

    @property
    def title(self) -> str:
        return self.info.title

    @property
    def issued_tokens(self) -> Mapping[str, str]:
        """Reader label -> token for the tokens issued through *this* object (by
        ``create_study``, ``add_reader`` or ``reissue_token``). Tokens are not stored in
        clear, so a study opened later has none: hand them out now."""
        return MappingProxyType(self._issued)

    # ---------------------------------------------------------------- readers

    def authenticate(self, token: str) -> Reader:
        """The reader whose personal token this is; ``InvalidTokenError`` otherwise."""
        if not isinstance(token, str) or not token.strip():
            raise InvalidTokenError("no reader token given")
        with self.store.snapshot() as conn:
            row = conn.execute(
                "SELECT reader_index, label FROM readers WHERE token_sha256 = ?",
                (hash_token(token.strip()),),
            ).fetchone()
        if row is None:
            raise InvalidTokenError("this reader token is not valid for this study")
        return Reader(int(row["reader_index"]), str(row["label"]))

    def readers(self) -> list[Reader]:
        with self.store.snapshot() as conn:
            rows = conn.execute("SELECT reader_index, label FROM readers ORDER BY reader_index")
            return [Reader(int(r[0]), str(r[1])) for r in rows]

    def add_reader(self, label: str | None = None) -> tuple[Reader, str]:
        """Add a reader (label defaults to ``reader-<n>``); returns it and its new token.

        The new reader's order is seeded by its index like every other reader's.
        """
        items, item_ids = self._canonical_items()

        def work(conn: sqlite3.Connection) -> tuple[Reader, str]:
            name = label
            if name is None:
                count = conn.execute("SELECT COUNT(*) FROM readers").fetchone()[0]
                name = f"reader-{count + 1}"
            check_name("reader", name)
            if conn.execute("SELECT 1 FROM readers WHERE label = ?", (name,)).fetchone():
                raise ConfigError(f"a reader labelled {name!r} exists already")
            return insert_reader(
                conn, items=items, item_ids=item_ids, seed=self.info.seed, label=name
            )

        reader, token = self.store.write(work)
        self._issued[reader.label] = token
        return reader, token

    def reissue_token(self, label: str) -> str:
        """Replace a reader's token (the old one stops working); answers are kept."""
        token = new_token()

        def work(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE readers SET token_sha256 = ? WHERE label = ?", (hash_token(token), label)
            ).rowcount

        if self.store.write(work) != 1:
            labels = [r.label for r in self.readers()]
            raise ConfigError(f"no reader labelled {label!r}; readers: {', '.join(labels)}")
        self._issued[label] = token
        return token

    def reader_progress(self) -> list[ReaderProgress]:
        """Answered items, total and first/last answer time for every reader."""
        table = "ratings" if self.mode == "rating" else "preferences"
        with self.store.snapshot() as conn:
            rows = conn.execute(
                f"""
                SELECT r.reader_index, r.label,
                       (SELECT COUNT(*) FROM assignments a
                         WHERE a.reader_index = r.reader_index) AS total,
                       COUNT(x.item_id) AS answered,
                       MIN(x.first_answered_at) AS first_at, MAX(x.answered_at) AS last_at
                  FROM readers r LEFT JOIN {table} x ON x.reader_index = r.reader_index
                 GROUP BY r.reader_index ORDER BY r.reader_index
                """
            ).fetchall()
        return [
            ReaderProgress(
                index=int(r["reader_index"]),
                label=str(r["label"]),
                answered=int(r["answered"]),
                total=int(r["total"]),
                first_answer_at=r["first_at"],
                last_answer_at=r["last_at"],
            )
            for r in rows
        ]

    # ---------------------------------------------------------------- reader-facing

    def reader_items(self, reader: Reader) -> list[ReaderItem]:
        """All items of ``reader`` in their order, with whether each is answered."""
        with self.store.snapshot() as conn:
            rows = self._item_rows(conn, reader, where="", params=())
        total = len(rows)
        return [self._view(row, total) for row in rows]

    def next_item(self, reader: Reader) -> ReaderItem | None:
        """The first unanswered item in ``reader``'s order, or ``None`` when all are done."""
        for item in self.reader_items(reader):
            if not item.answered:
                return item
        return None

    def get_item(self, reader: Reader, item_id: str) -> ReaderItem:
        """One of ``reader``'s items; ``UnknownItemError`` for any other id."""
        self._check_item_id(item_id)
        with self.store.snapshot() as conn:
            rows = self._item_rows(conn, reader, where="AND a.item_id = ?", params=(item_id,))
            total = conn.execute(
                "SELECT COUNT(*) FROM assignments WHERE reader_index = ?", (reader.index,)
            ).fetchone()[0]
        if not rows:
            raise UnknownItemError(f"item {item_id!r} is not one of {reader.label}'s items")
        return self._view(rows[0], int(total))

    def progress(self, reader: Reader) -> Progress:
        items = self.reader_items(reader)
        return Progress(answered=sum(item.answered for item in items), total=len(items))

    def get_answer(self, reader: Reader, item_id: str) -> Rating | Preference | None:
        """``reader``'s current answer to ``item_id`` (to pre-fill a form), or ``None``."""
        self.get_item(reader, item_id)
        with self.store.snapshot() as conn:
            if self.mode == "rating":
                row = conn.execute(
                    "SELECT quality, usefulness, comment, flags FROM ratings"
                    " WHERE reader_index = ? AND item_id = ?",
                    (reader.index, item_id),
                ).fetchone()
                if row is None:
                    return None
                return Rating(
                    quality=row["quality"],
                    usefulness=row["usefulness"],
                    comment=row["comment"],
                    flags=_split_flags(row["flags"]),
                )
            row = conn.execute(
                "SELECT choice, comment FROM preferences WHERE reader_index = ? AND item_id = ?",
                (reader.index, item_id),
            ).fetchone()
            return None if row is None else Preference(row["choice"], row["comment"])

    def submit(
        self,
        reader: Reader,
        item_id: str,
        answer: Rating | Preference,
        *,
        elapsed_s: float | None = None,
    ) -> Saved:
        """Store ``reader``'s answer to ``item_id`` (committed before this returns).

        Answering an item again replaces the earlier answer and counts up its revision
        (every submission is also appended to ``answer_log``), unless the study was
        created with ``allow_changes=False``: then it raises ``AlreadyAnsweredError``.
        ``elapsed_s`` is the optional time the reader spent on the item.
        """
        if self.mode == "rating" and not isinstance(answer, Rating):
            raise InvalidAnswerError(
                f"this study asks for ratings (Rating), not {type(answer).__name__}"
            )
        if self.mode == "pairwise" and not isinstance(answer, Preference):
            raise InvalidAnswerError(
                "this study asks for pairwise preferences (Preference), "
                f"not {type(answer).__name__}"
            )
        if elapsed_s is not None and not (0 <= float(elapsed_s) < 1e7):
            raise InvalidAnswerError(f"elapsed_s must be a non-negative number, got {elapsed_s!r}")
        self._check_item_id(item_id)

        def work(conn: sqlite3.Connection) -> Saved:
            assigned = conn.execute(
                "SELECT 1 FROM assignments WHERE reader_index = ? AND item_id = ?",
                (reader.index, item_id),
            ).fetchone()
            if assigned is None:
                raise UnknownItemError(f"item {item_id!r} is not one of {reader.label}'s items")
            table = "ratings" if isinstance(answer, Rating) else "preferences"
            previous = conn.execute(
                f"SELECT revision FROM {table} WHERE reader_index = ? AND item_id = ?",
                (reader.index, item_id),
            ).fetchone()
            if previous is not None and not self.info.allow_changes:
                raise AlreadyAnsweredError(
                    f"item {item_id!r} is answered already and this study does not allow "
                    "changing answers"
                )
            revision = 1 if previous is None else int(previous[0]) + 1
            now = utc_now()
            elapsed = None if elapsed_s is None else float(elapsed_s)
            if isinstance(answer, Rating):
                conn.execute(
                    """
                    INSERT INTO ratings (reader_index, item_id, quality, usefulness, flags,
                                         comment, elapsed_s, first_answered_at, answered_at,
                                         revision)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)
                    ON CONFLICT (reader_index, item_id) DO UPDATE SET
                        quality = excluded.quality, usefulness = excluded.usefulness,
                        flags = excluded.flags, comment = excluded.comment,
                        elapsed_s = excluded.elapsed_s, answered_at = excluded.answered_at,
                        revision = revision + 1
                    """,
                    (
                        reader.index,
                        item_id,
                        answer.quality,
                        answer.usefulness,
                        ",".join(answer.flags),
                        answer.comment,
                        elapsed,
                        now,
                        now,
                    ),
                )
                payload = {
                    "quality": answer.quality,
                    "usefulness": answer.usefulness,
                    "flags": list(answer.flags),
                    "comment": answer.comment,
                }
            else:
                conn.execute(
                    """
                    INSERT INTO preferences (reader_index, item_id, choice, comment, elapsed_s,
                                             first_answered_at, answered_at, revision)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 1)
                    ON CONFLICT (reader_index, item_id) DO UPDATE SET
                        choice = excluded.choice, comment = excluded.comment,
                        elapsed_s = excluded.elapsed_s, answered_at = excluded.answered_at,
                        revision = revision + 1
                    """,
                    (reader.index, item_id, answer.choice, answer.comment, elapsed, now, now),
                )
                payload = {"choice": answer.choice, "comment": answer.comment}
            payload["elapsed_s"] = elapsed
            conn.execute(
                "INSERT INTO answer_log (reader_index, item_id, answer, answered_at)"
                " VALUES (?, ?, ?, ?)",
                (reader.index, item_id, json.dumps(payload, sort_keys=True), now),
            )
            return Saved(item_id=item_id, revision=revision)

        return self.store.write(work)

    def image_path(self, image_id: str) -> Path:
        """The rendered PNG of ``image_id`` (for serving); ``UnknownItemError`` otherwise.

        The path comes from the store, never from the id itself, so no id can reach a
        file outside the study's image folder.
        """
        if not is_opaque_id(image_id):
            raise UnknownItemError(f"no image {image_id!r} in this study")
        with self.store.snapshot() as conn:
            row = conn.execute(
                "SELECT file_name FROM images WHERE image_id = ?", (image_id,)
            ).fetchone()
        if row is None:
            raise UnknownItemError(f"no image {image_id!r} in this study")
        return self.directory / IMAGES_DIR / str(row["file_name"])

    # ---------------------------------------------------------------- investigator

    def rating_records(self) -> list[RatingRecord]:
        """Every stored rating with its case and method (latest revision of each)."""
        with self.store.snapshot() as conn:
            rows = conn.execute(
                """
                SELECT rd.label, it.case_name, im.method, r.quality, r.usefulness, r.flags,
                       r.comment, r.answered_at, r.revision, r.elapsed_s
                  FROM ratings r
                  JOIN readers rd ON rd.reader_index = r.reader_index
                  JOIN items it ON it.item_id = r.item_id
                  JOIN images im ON im.image_id = it.image_a
                 ORDER BY r.reader_index, it.canonical_index
                """
            ).fetchall()
        return [
            RatingRecord(
                reader=row[0],
                case=row[1],
                method=row[2],
                quality=int(row[3]),
                usefulness=int(row[4]),
                flags=_split_flags(row[5]),
                comment=row[6],
                answered_at=row[7],
                revision=int(row[8]),
                elapsed_s=row[9],
            )
            for row in rows
        ]

    def preference_records(self) -> list[PreferenceRecord]:
        """Every stored pairwise answer, resolved to the methods as that reader saw them."""
        with self.store.snapshot() as conn:
            rows = conn.execute(
                """
                SELECT rd.label, it.case_name, ia.method, ib.method, a.swapped, p.choice,
                       p.comment, p.answered_at, p.revision, p.elapsed_s
                  FROM preferences p
                  JOIN readers rd ON rd.reader_index = p.reader_index
                  JOIN assignments a ON a.reader_index = p.reader_index
                                    AND a.item_id = p.item_id
                  JOIN items it ON it.item_id = p.item_id
                  JOIN images ia ON ia.image_id = it.image_a
                  JOIN images ib ON ib.image_id = it.image_b
                 ORDER BY p.reader_index, it.canonical_index
                """
            ).fetchall()
        records = []
        for row in rows:
            left, right = (row[3], row[2]) if row[4] else (row[2], row[3])
            records.append(
                PreferenceRecord(
                    reader=row[0],
                    case=row[1],
                    left=left,
                    right=right,
                    choice=row[5],
                    comment=row[6],
                    answered_at=row[7],
                    revision=int(row[8]),
                    elapsed_s=row[9],
                )
            )
        return records

    def unblind(self, reader: Reader, item_id: str) -> ItemSpec:
        """Investigator only (never in reader-facing code): the case and methods behind
        ``item_id``, the methods in the order ``reader`` sees them (left, right)."""
        self._check_item_id(item_id)
        with self.store.snapshot() as conn:
            row = conn.execute(
                """
                SELECT it.case_name, ia.method, ib.method, a.swapped
                  FROM assignments a
                  JOIN items it ON it.item_id = a.item_id
                  JOIN images ia ON ia.image_id = it.image_a
                  LEFT JOIN images ib ON ib.image_id = it.image_b
                 WHERE a.reader_index = ? AND a.item_id = ?
                """,
                (reader.index, item_id),
            ).fetchone()
        if row is None:
            raise UnknownItemError(f"item {item_id!r} is not one of {reader.label}'s items")
        if row[2] is None:
            return ItemSpec(row[0], (row[1],))
        return ItemSpec(row[0], (row[2], row[1]) if row[3] else (row[1], row[2]))

    def answer_log_count(self) -> int:
        """How many submissions were stored in total (first answers and changes)."""
        with self.store.snapshot() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM answer_log").fetchone()[0])

    # ---------------------------------------------------------------- internals

    @staticmethod
    def _check_item_id(item_id: object) -> None:
        if not is_opaque_id(item_id):
            raise UnknownItemError(f"no item {item_id!r} in this study")

    def _item_rows(
        self, conn: sqlite3.Connection, reader: Reader, *, where: str, params: tuple[object, ...]
    ) -> list[sqlite3.Row]:
        table = "ratings" if self.mode == "rating" else "preferences"
        return conn.execute(
            f"""
            SELECT a.item_id, a.position, a.swapped, it.image_a, it.image_b,
                   x.item_id IS NOT NULL AS answered
              FROM assignments a
              JOIN items it ON it.item_id = a.item_id
              LEFT JOIN {table} x ON x.reader_index = a.reader_index AND x.item_id = a.item_id
             WHERE a.reader_index = ? {where}
             ORDER BY a.position
            """,
            (reader.index, *params),
        ).fetchall()

    @staticmethod
    def _view(row: sqlite3.Row, total: int) -> ReaderItem:
        if row["image_b"] is None:
            images: tuple[str, ...] = (row["image_a"],)
        elif row["swapped"]:
            images = (row["image_b"], row["image_a"])
        else:
            images = (row["image_a"], row["image_b"])
        return ReaderItem(
            item_id=row["item_id"],
            position=int(row["position"]),
            total=total,
            images=images,
            answered=bool(row["answered"]),
        )

    def _canonical_items(self) -> tuple[list[ItemSpec], list[str]]:
        with self.store.snapshot() as conn:
            rows = conn.execute(
                """
                SELECT it.item_id, it.case_name, ia.method, ib.method
                  FROM items it
                  JOIN images ia ON ia.image_id = it.image_a
                  LEFT JOIN images ib ON ib.image_id = it.image_b
                 ORDER BY it.canonical_index
                """
            ).fetchall()
        items = [
            ItemSpec(row[1], (row[2],) if row[3] is None else (row[2], row[3])) for row in rows
        ]
        return items, [row[0] for row in rows]


def _split_flags(text: str) -> tuple[str, ...]:
    return tuple(flag for flag in text.split(",") if flag)


def _read_info(store: Store, path: Path) -> StudyInfo:
    with store.snapshot() as conn:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version != SCHEMA_VERSION:
            raise FileError(
                path,
                f"study schema version {version}, this medsr reads version {SCHEMA_VERSION}"
                + (" (made by a newer medsr)" if version > SCHEMA_VERSION else ""),
            )
        meta = {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}
        cases = conn.execute(
            "SELECT case_name, window_low, window_high FROM cases ORDER BY case_name"
        ).fetchall()
        methods = conn.execute("SELECT DISTINCT method FROM images ORDER BY method").fetchall()
        n_items = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    return StudyInfo(
        title=meta["title"],
        mode=meta["mode"],
        seed=int(meta["seed"]),
        allow_changes=meta["allow_changes"] == "1",
        created_at=meta["created_at"],
        schema_version=version,
        cases=tuple(row[0] for row in cases),
        methods=tuple(row[0] for row in methods),
        n_items=int(n_items),
        windows=MappingProxyType({row[0]: (float(row[1]), float(row[2])) for row in cases}),
    )
