"""The on-disk spool and queue of ``medsr listen``: nothing acknowledged is ever lost.

Layout under the spool folder (every name below ``incoming``/``queue``/``failed`` is a keyed
hash, never a UID: UIDs are identifiers, PS3.15)::

    secret                      random key of the hashes (and of --deidentify without a key)
    incoming/<series>/input/    instances of a series still arriving, one file per SOP instance
    queue/<job>/input/          a series judged complete (quiet for the quiet period)
    queue/<job>/output/         its derived series, once written in full
    queue/<job>/state.json      attempts, next try, instances already sent
    failed/<job>/               jobs given up on, with error.txt

An instance is written to a temporary file, fsynced and renamed before the C-STORE is
answered with success, so an acknowledged instance survives a crash. A series moves from
``incoming`` to ``queue`` by one rename; its output is written to ``output.partial`` and
renamed to ``output`` when complete, so a restart either redoes the whole output or resends
the same files (the same SOP Instance UIDs: a receiver stores them once). ``state.json`` is
replaced atomically after every instance sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from medsr.errors import ConfigError

# five or more numeric components: a UID, not an IPv4 address
_UID_LIKE = re.compile(r"\b\d+(?:\.\d+){4,}\b")


def redact(text: str) -> str:
    """``text`` with anything that looks like a DICOM UID replaced by ``<uid>`` (for logs)."""
    return _UID_LIKE.sub("<uid>", text)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@dataclass
class JobState:
    """What ``state.json`` of a queued job holds."""

    attempts: int = 0
    next_try: float = 0.0
    sent: list[str] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "attempts": self.attempts,
                "next_try": self.next_try,
                "sent": self.sent,
                "error": self.error,
            },
            indent=1,
        ).encode()

    @classmethod
    def from_file(cls, path: Path) -> JobState:
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls(
            attempts=int(data.get("attempts", 0)),
            next_try=float(data.get("next_try", 0.0)),
            sent=[str(s) for s in data.get("sent", [])],
            error=str(data.get("error", "")),
        )


@dataclass(frozen=True)
class Job:
    """A queued series: its folder (``input/``, ``output/``, ``state.json``)."""

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def input(self) -> Path:
        return self.folder / "input"

    @property
    def output(self) -> Path:
        return self.folder / "output"

    @property
    def partial(self) -> Path:
        return self.folder / "output.partial"

    @property
    def state_path(self) -> Path:
        return self.folder / "state.json"

    def state(self) -> JobState:
        return JobState.from_file(self.state_path)

    def save(self, state: JobState) -> None:
        atomic_write(self.state_path, state.to_json())

    def instances(self) -> list[Path]:
        return sorted(p for p in self.input.iterdir() if p.is_file() and p.suffix == ".dcm")

    def outputs(self) -> list[Path]:
        return sorted(p for p in self.output.rglob("*") if p.is_file() and p.suffix == ".dcm")


class Spool:
    """Incoming instances grouped by series, and the queue of complete series.

    Thread-safe: the C-STORE handlers (one thread per association) store instances while the
    worker seals quiet series and runs jobs.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.queue = self.root / "queue"
        self.failed = self.root / "failed"
        for folder in (self.incoming, self.queue, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # patient data: the owner only
        self.secret = self._secret()
        self._lock = threading.Lock()
        self._last_seen: dict[str, float] = {}
        self._recover()

    def _secret(self) -> bytes:
        path = self.root / "secret"
        if path.is_file():
            secret = path.read_bytes()
            if len(secret) < 16:
                raise ConfigError(f"{path}: the spool's secret is too short ({len(secret)} bytes)")
            return secret
        secret = secrets.token_bytes(32)
        atomic_write(path, secret)
        os.chmod(path, 0o600)
        return secret

    def key(self, uid: str) -> str:
        """A stable pseudonym of ``uid`` for file names and logs (keyed by the spool secret)."""
        digest = hmac.new(self.secret, uid.strip().encode(), hashlib.sha256).hexdigest()
        return digest[:20]

    def _recover(self) -> None:
        """After a crash: drop half-written temporary files and outputs; incoming series get a
        full quiet period from now."""
        for series in self.incoming.iterdir():
            inputs = series / "input"
            if not inputs.is_dir():
                shutil.rmtree(series)
                continue
            for tmp in inputs.glob(".tmp-*"):
                tmp.unlink()
            if not any(inputs.iterdir()):
                shutil.rmtree(series)
                continue
            # the quiet period starts again now: while the node was down, the sender may have
            # been retrying the rest of the series, which would otherwise become a second job
            self._last_seen[series.name] = time.time()
        for job in self.jobs():
            if job.partial.exists():
                shutil.rmtree(job.partial)
            for tmp in job.folder.glob(".tmp-*"):
                tmp.unlink()

    # -- receiving ------------------------------------------------------------------------------
    def store(self, data: bytes, *, series_uid: str, sop_uid: str) -> str:
        """Keep one encoded instance (a DICOM file's bytes) durably; returns the series key.

        The same SOP instance sent twice is stored once (the later copy wins)."""
        series = self.key(series_uid)
        with self._lock:
            target = self.incoming / series / "input" / f"{self.key(sop_uid)}.dcm"
            atomic_write(target, data)
            self._last_seen[series] = time.time()
        return series

    def pending(self) -> dict[str, int]:
        """Series still arriving: key -> instances received so far."""
        with self._lock:
            return {
                key: sum(1 for _ in (self.incoming / key / "input").glob("*.dcm"))
                for key in self._last_seen
            }

    def seal_quiet(self, quiet_seconds: float, now: float | None = None) -> list[Job]:
        """Move every series that received nothing for ``quiet_seconds`` to the queue."""
        now = time.time() if now is None else now
        sealed = []
        with self._lock:
            for key, last in sorted(self._last_seen.items(), key=lambda kv: kv[1]):
                if now - last < quiet_seconds:
                    continue
                # time first, so jobs sort in arrival order; the key keeps names unique
                folder = self.queue / f"{time.time_ns():020d}-{key}"
                os.rename(self.incoming / key, folder)
                _fsync_dir(self.queue)
                del self._last_seen[key]
                sealed.append(Job(folder))
        return sealed

    # -- the queue ------------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """Queued jobs, oldest first."""
        return [Job(p) for p in sorted(self.queue.iterdir()) if p.is_dir()]

    def next_job(self, now: float | None = None) -> Job | None:
        """The oldest job whose next try is due, if any."""
        now = time.time() if now is None else now
        for job in self.jobs():
            if job.state().next_try <= now:
                return job
        return None

    def finish(self, job: Job) -> None:
        """A job fully sent: its data leaves the spool."""
        shutil.rmtree(job.folder)

    def give_up(self, job: Job, error: str) -> Path:
        """Move ``job`` to ``failed/`` with its error (kept for an operator to look at)."""
        target = self.failed / job.name
        os.rename(job.folder, target)
        atomic_write(target / "error.txt", (redact(error) + "\n").encode())
        return target
