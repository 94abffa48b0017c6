"""Background super-resolution jobs, kept on disk so that a restart loses no finished result.

Layout under the data directory::

    DATA/jobs/<job id>/
      job.json            the record (status, progress, shapes, window; no patient data)
      upload/             the upload (or the unpacked series) until the job ends
      views/lr.npy        the input pixels        (the comparison view reads slices from
      views/bicubic.npy   bicubic at the same scale  these with memory mapping)
      views/sr.npy        the model's output
      views/consistency.npy  |degrade(SR) - LR| on the output grid (medsr.infer.safety)
      views/difference.npy   SR - bicubic
      views/reference.npy    a high-resolution reference uploaded later (optional)
      result/             the output in the input's format (a DICOM series is zipped)

The upload folder is deleted as soon as a job ends (done or failed). Finished jobs are
deleted after ``retention_hours`` and when more than ``max_jobs`` are kept (oldest first).
A job that was queued or running when the server stopped is queued again at start-up.

At start-up, before the app answers any request, whatever a stopped server left half-done is
deleted: a job folder without ``job.json`` (an upload being received or checked), and in
every job folder ``upload/received``, ``upload/unpacked``, ``*.part``/``*.tmp`` files and
``tmp*`` folders; the upload of a finished job; the views and result of a job queued again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import secrets
import shutil
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsr.display import mr_windows
from medsr.errors import ConfigError, MedsrError
from medsr.io.image import Image

if TYPE_CHECKING:
    from medsr.infer.model_source import SRModel
    from medsr.infer.pipeline import Outcome, SelfSupervised, UpscaleOptions
    from medsr.infer.selfsup import SelfSupConfig

log = logging.getLogger(__name__)

__all__ = [
    "METHODS",
    "PLANES",
    "VIEWS",
    "JobManager",
    "JobRecord",
    "ModelChoice",
    "UnknownJobError",
]

VIEWS = ("lr", "bicubic", "sr", "consistency", "difference", "reference")
MAP_VIEWS = ("consistency", "difference")
"""Views that are maps (medsr.infer.safety, on the output grid, grey even for a colour
image): |degrade(SR) - LR| and SR - bicubic, in physical units."""
PLANES = ("axial", "coronal", "sagittal")
"""Volume planes by the array axis they cut: 0 (Z), 1 (Y), 2 (X). Named as for an axial
acquisition; for another one they are simply the three array axes."""
METHODS = ("in-plane", "through-plane", "self-supervised")
"""What a job does: every slice grows in-plane by the model's scale; the slice axis (the
coarsest one of a volume) grows through-plane, the 2D model running on the planes that
contain it (``medsr.infer.upscale_image(axis="through-plane")``); or the slice axis grows
by a network trained on the volume's own in-plane slices
(``medsr.infer.selfsup.self_supervised_upscale``, to the in-plane spacing)."""
STATUSES = ("queued", "running", "done", "failed")
_JOB_ID = re.compile(r"[0-9a-f]{16}")


class UnknownJobError(MedsrError, LookupError):
    """No job with this id (or it was removed by the retention limit)."""


@dataclass(frozen=True)
class ModelChoice:
    """A model the page offers: ``spec`` is what :func:`medsr.infer.load_model` takes;
    ``scales`` the scales it can do (one for a trained model)."""

    name: str
    spec: str
    scales: tuple[int, ...]
    trained: bool = False


@dataclass
class JobRecord:
    """What the app knows about a job (saved as ``job.json``). Holds no file names or header
    values of the upload: only its kind, shapes and display facts."""

    id: str
    kind: str
    model: str
    scale: int
    status: str = "queued"
    stage: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress_done: int = 0
    progress_total: int = 0
    error: str | None = None
    deidentified: bool = False
    modality: str = "OT"
    color: bool = False
    input_shape: list[int] = field(default_factory=list)
    output_shape: list[int] = field(default_factory=list)
    input_spacing: list[float] = field(default_factory=list)
    output_spacing: list[float] = field(default_factory=list)
    slices: int = 1
    window: list[float] = field(default_factory=list)
    value_range: list[float] = field(default_factory=list)
    fidelity_psnr: float | None = None
    warnings: list[str] = field(default_factory=list)  # out of distribution (medsr.infer.ood)
    # the consistency summary (medsr.infer.safety) and "display": a window per map view
    consistency: dict[str, Any] | None = None
    seconds: float | None = None
    result_file: str | None = None
    output_format: str | None = None
    method: str = "in-plane"  # one of METHODS
    # what progress_done/progress_total count ("tiles", "steps", "planes"); the fraction of
    # the stage done when the total is not known in advance (training under a time budget)
    progress_unit: str = "tiles"
    progress_fraction: float | None = None
    seconds_left: float | None = None
    # self-supervised: acquisition, steps, why training stopped, held-out PSNR, timings
    selfsup: dict[str, Any] | None = None
    # MR window presets for this image (medsr.display.mr_windows; display only)
    mr_windows: dict[str, list[float]] = field(default_factory=dict)
    # PSNR/SSIM of SR and bicubic against an uploaded reference (medsr.web.reference)
    reference: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("result_file")
        if data["fidelity_psnr"] is not None and math.isinf(data["fidelity_psnr"]):
            data["fidelity_psnr"] = None
        data["downloads"] = (
            {"native": f"/api/jobs/{self.id}/download", "png": f"/api/jobs/{self.id}/png"}
            if self.status == "done"
            else {}
        )
        return data


def default_window(image: Image) -> tuple[float, float]:
    """The display window: the DICOM header's (first) window when it has one, else the
    0.5-99.5 percentiles of the pixels."""
    centre = image.metadata.get("window_center")
    width = image.metadata.get("window_width")
    if centre is not None and width is not None and width > 0:
        return float(centre - width / 2), float(centre + width / 2)
    values = image.array[np.isfinite(image.array)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    return (low, high) if high > low else (low - 0.5, low + 0.5)


class JobManager:
    """Runs upscaling jobs in ``workers`` background threads and keeps them on disk.

    ``read_upload(job_dir, record) -> Image`` reads a job's upload (the app supplies it, so
    that limits and de-identification stay in one place).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        models: Mapping[str, ModelChoice],
        read_upload: Callable[[Path, JobRecord], Image],
        workers: int = 1,
        retention_hours: float = 24.0,
        max_jobs: int = 200,
        threads: int | None = None,
        selfsup: SelfSupConfig | None = None,
    ) -> None:
        """``selfsup``: the training settings of self-supervised jobs (its ``budget`` bounds
        the CPU time one job trains; default: 120 s)."""
        if workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        if not retention_hours > 0:
            raise ConfigError(f"retention must be positive hours, got {retention_hours}")
        self.root = Path(data_dir) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.models = dict(models)
        self.read_upload = read_upload
        self.workers = workers
        self.retention_s = retention_hours * 3600.0
        self.max_jobs = max_jobs
        self.threads = threads
        self.selfsup = selfsup
        self._records: dict[str, JobRecord] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._memory: dict[str, Image] = {}
        self._model_cache: dict[tuple[str, int], Any] = {}
        self._load()

    # -------------------------------------------------------------- state on disk
    def _load(self) -> None:
        requeue = []
        for folder in sorted(self.root.iterdir()):
            path = folder / "job.json"
            if not _JOB_ID.fullmatch(folder.name):
                continue
            if not path.is_file():
                # An upload the server stopped while receiving or checking it (the job is
                # recorded only once its upload is accepted): the client got no answer.
                log.warning("removed an upload left incomplete when the server stopped")
                _remove(folder)
                continue
            _remove_partial_files(folder)
            try:
                record = JobRecord(**json.loads(path.read_text()))
            except (ValueError, TypeError) as error:
                log.warning("job %s: unreadable record (%s); removed", folder.name, error)
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if record.status in ("done", "failed"):
                _remove(folder / "upload")  # (when it stopped between the end and the cleanup)
            if record.status in ("queued", "running"):
                _remove(folder / "views")  # made again when it runs
                _remove(folder / "result")
                if (folder / "upload").is_dir():
                    record.status, record.stage = "queued", "queued (after a restart)"
                    record.progress_done = record.progress_total = 0
                    requeue.append(record)
                else:
                    record.status, record.stage = "failed", "failed"
                    record.error = "the server stopped before this job finished; upload again"
                    record.finished_at = time.time()
                self._save(record)
            self._records[record.id] = record
        for record in sorted(requeue, key=lambda r: r.created_at):
            self._queue.put(record.id)
        if requeue:
            log.info("queued %d unfinished job(s) again after a restart", len(requeue))
        self.cleanup()

    def _save(self, record: JobRecord) -> None:
        folder = self.root / record.id
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "job.json.tmp"
        tmp.write_text(json.dumps(asdict(record), indent=1))
        os.replace(tmp, folder / "job.json")

    def job_dir(self, job_id: str) -> Path:
        self.get(job_id)
        return self.root / job_id

    # -------------------------------------------------------------- public
    def new_job_dir(self) -> tuple[str, Path]:
        """A fresh job id and its folder (with ``upload/``) to store an upload in."""
        job_id = secrets.token_hex(8)
        folder = self.root / job_id
        (folder / "upload").mkdir(parents=True)
        return job_id, folder

    def submit(
        self,
        job_id: str,
        *,
        kind: str,
        model: str,
        scale: int,
        image: Image | None = None,
        deidentified: bool = False,
        method: str = "in-plane",
    ) -> JobRecord:
        """Queue the job whose upload is in ``job_dir(job_id)/upload``. ``image`` is the upload
        already read (saves reading it again); ``method`` one of :data:`METHODS`."""
        if not _JOB_ID.fullmatch(job_id) or not (self.root / job_id / "upload").is_dir():
            raise UnknownJobError(f"no upload for job {job_id!r}")
        if method not in METHODS:
            raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        record = JobRecord(
            id=job_id,
            kind=kind,
            model=model,
            scale=scale,
            deidentified=deidentified,
            method=method,
        )
        if image is not None:
            self._describe_input(record, image)
        with self._lock:
            self._records[job_id] = record
            self._save(record)
            # Keep the image for the worker only when it is next: queued images would
            # add up in memory; those are read again from disk when their turn comes.
            if image is not None and self._queue.qsize() == 0:
                self._memory[job_id] = image
        self._queue.put(job_id)
        self.cleanup()
        return record

    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            record = self._records.get(job_id) if isinstance(job_id, str) else None
        if record is None:
            raise UnknownJobError(f"no job {job_id!r} (finished jobs are kept for a limited time)")
        return record

    def list(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._records.values(), key=lambda r: r.created_at, reverse=True)

    def queue_position(self, job_id: str) -> int:
        """How many queued jobs are ahead of this one (0 when running or done)."""
        record = self.get(job_id)
        if record.status != "queued":
            return 0
        with self._lock:
            return sum(
                1
                for r in self._records.values()
                if r.status in ("queued", "running") and r.created_at < record.created_at
            )

    def view_slice(self, job_id: str, view: str, index: int, plane: str = "axial") -> np.ndarray:
        """One slice ``(H, W)`` (or ``(H, W, 3)``) of a finished job's view, float32.

        ``plane`` picks the axis of a volume ``(Z, Y, X)``: ``axial`` slices along Z (the
        stored slices), ``coronal`` along Y (rows ``Z``, columns ``X``), ``sagittal`` along X
        (rows ``Z``, columns ``Y``). A 2D image has one slice, 0, in the axial plane.
        """
        record = self.get(job_id)
        if view not in VIEWS:
            raise ConfigError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
        if plane not in PLANES:
            raise ConfigError(f"unknown plane {plane!r}; choose one of {', '.join(PLANES)}")
        if record.status != "done":
            raise UnknownJobError(f"job {job_id} has no result yet (status: {record.status})")
        if view == "reference" and record.reference is None:
            raise UnknownJobError(f"job {job_id} has no reference (upload one first)")
        if view in MAP_VIEWS and record.consistency is None:
            raise UnknownJobError(f"job {job_id} has no {view} map")
        array = np.load(self.root / job_id / "views" / f"{view}.npy", mmap_mode="r")
        spatial = array.ndim - (1 if record.color and view not in MAP_VIEWS else 0)
        if spatial == 2:
            if index != 0 or plane != "axial":
                raise ConfigError(f"a 2D image has only axial slice 0, not {plane} {index}")
            return np.asarray(array, dtype=np.float32)
        axis = PLANES.index(plane)
        if not 0 <= index < array.shape[axis]:
            raise ConfigError(f"{plane} slice {index} is out of range 0..{array.shape[axis] - 1}")
        return np.asarray(np.take(array, index, axis=axis), dtype=np.float32)

    def result_path(self, job_id: str) -> Path:
        record = self.get(job_id)
        if record.status != "done" or record.result_file is None:
            raise UnknownJobError(f"job {job_id} has no result yet (status: {record.status})")
        return self.root / job_id / "result" / record.result_file

    def start(self) -> None:
        for k in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"medsr-job-{k}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Let running jobs finish, then stop the workers (queued jobs stay queued on disk)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Block until no job is queued or running (for tests and scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = any(r.status in ("queued", "running") for r in self._records.values())
            if not busy:
                return
            time.sleep(0.05)
        raise TimeoutError(f"jobs still running after {timeout} s")

    def cleanup(self, now: float | None = None) -> list[str]:
        """Delete finished jobs older than the retention limit, and the oldest finished ones
        beyond ``max_jobs``; returns the ids removed."""
        now = time.time() if now is None else now
        with self._lock:
            finished = sorted(
                (r for r in self._records.values() if r.status in ("done", "failed")),
                key=lambda r: r.finished_at or r.created_at,
            )
            expired = [
                r for r in finished if now - (r.finished_at or r.created_at) > self.retention_s
            ]
            keep = [r for r in finished if r not in expired]
            active = len(self._records) - len(finished)
            excess = max(0, len(keep) + active - self.max_jobs)
            doomed = expired + keep[:excess]
            for record in doomed:
                del self._records[record.id]
        for record in doomed:
            shutil.rmtree(self.root / record.id, ignore_errors=True)
        if doomed:
            log.info("retention: removed %d finished job(s)", len(doomed))
        return [r.id for r in doomed]

    # -------------------------------------------------------------- the worker
    def _work(self) -> None:
        while True:
            try:
                job_id = self._queue.get(timeout=60.0)
            except queue.Empty:
                self.cleanup()
                continue
            if job_id is None:
                return
            try:
                self._run(job_id)
            except Exception:  # a bug: keep the worker alive, fail the job visibly
                log.exception("job %s failed unexpectedly", job_id)
                self._fail(job_id, "an unexpected error happened (a bug in medsr; see the log)")
            self.cleanup()

    def _update(self, record: JobRecord, *, save: bool = True, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(record, key, value)
            if save and record.id in self._records:
                self._save(record)

    def _fail(self, job_id: str, message: str) -> None:
        with self._lock:
            record = self._records.get(job_id)
            self._memory.pop(job_id, None)
        if record is None:
            return
        shutil.rmtree(self.root / job_id / "upload", ignore_errors=True)  # (before "failed")
        self._update(
            record, status="failed", stage="failed", error=message, finished_at=time.time()
        )

    def _model(self, name: str, scale: int):
        from medsr.infer import load_model

        choice = self.models.get(name)
        if choice is None:
            raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(self.models)}")
        key = (choice.spec, scale)
        if key not in self._model_cache:
            self._model_cache[key] = load_model(choice.spec, scale=scale)
        return self._model_cache[key]

    def _run(self, job_id: str) -> None:
        """Run a job by its method (:meth:`_with_model` in-plane or through-plane, or
        :meth:`_self_supervised`), then store the views (input, bicubic, SR, maps) that the
        comparison page shows; the result file is written by :meth:`_write_result`."""
        with self._lock:
            record = self._records.get(job_id)
            image = self._memory.pop(job_id, None)
        if record is None:  # removed while queued
            return
        folder = self.root / job_id
        start = time.perf_counter()
        self._update(record, status="running", stage="reading", started_at=time.time())
        try:
            if image is None:
                image = self.read_upload(folder / "upload", record)
                self._describe_input(record, image)
            if record.method == "self-supervised":
                made = self._self_supervised(record, image)
            else:
                axis = "through-plane" if record.method == "through-plane" else "in-plane"
                made = self._with_model(record, image, axis)
            self._update(record, stage="writing the views", progress_fraction=None)
            views = folder / "views"
            views.mkdir(exist_ok=True)
            arrays = {"lr": image.array, "bicubic": made.baseline, "sr": made.image.array}
            if made.consistency is not None:
                arrays.update(made.consistency.pop("arrays"))
            for name, array in arrays.items():
                np.save(views / f"{name}.npy", np.ascontiguousarray(array, dtype=np.float32))
            fidelity = made.fidelity_psnr
            # The upload goes before the job says "done": a client that sees "done" must find
            # no upload left on disk (a stop in between fails the job with "upload again").
            shutil.rmtree(folder / "upload", ignore_errors=True)
            self._update(
                record,
                status="done",
                stage="done",
                finished_at=time.time(),
                seconds=round(time.perf_counter() - start, 3),
                fidelity_psnr=None if fidelity is None else float(fidelity),
                warnings=[w.text for w in made.warnings],
                consistency=made.consistency,
                output_shape=list(made.image.array.shape),
                output_spacing=[round(s, 6) for s in made.image.spacing],
                result_file=made.outcome.output.name,
                output_format=made.outcome.format,
                progress_done=record.progress_total,
                progress_fraction=None,
                seconds_left=None,
            )
            log.info("job %s (%s) done in %.1f s", job_id, record.method, record.seconds)
        except MedsrError as error:
            self._fail(job_id, _message(error))

    def _with_model(self, record: JobRecord, image: Image, axis: str) -> _Made:
        """The job's 2D model in-plane, or on the planes through the slice axis
        (``axis="through-plane"``); bicubic the same way, consistency maps and
        out-of-distribution checks (:func:`medsr.infer.pipeline.run`)."""
        from medsr.infer.pipeline import UpscaleOptions, upscale

        model = self._model(record.model, record.scale)
        options = UpscaleOptions(axis=axis, threads=self.threads, overwrite=True)
        how = "through-plane " if axis == "through-plane" else ""

        def progress(done: int, total: int) -> None:
            self._update(record, save=False, progress_done=done, progress_total=total)

        self._update(
            record,
            stage=f"upscaling {how}with {record.model} x{record.scale}",
            progress_unit="tiles",
        )
        outcome = self._write_result(self.root / record.id, record, image, model, progress, options)
        result = outcome.result
        self._update(record, stage="bicubic baseline")
        baseline = upscale(image, self._model("bicubic", record.scale), options)
        self._update(record, stage="consistency map")
        consistency = _consistency_views(result, image)
        return _Made(
            image=result.image,
            baseline=baseline.image.array,
            fidelity_psnr=result.fidelity_psnr,
            consistency=consistency,
            warnings=outcome.warnings,
            outcome=outcome,
        )

    def _self_supervised(self, record: JobRecord, image: Image) -> _Made:
        """Train on the volume's own in-plane slices and super-resolve its slice axis to the
        in-plane spacing (``self_supervised_upscale``), under this manager's training
        settings (time budget) and threads; reports training steps, then planes applied.
        The baseline is cubic interpolation onto the same grid. No consistency maps (the
        fidelity PSNR checks the output against the input with the acquisition model) and no
        out-of-distribution check (the network learned from this very image)."""
        from medsr.infer.pipeline import SelfSupervised, UpscaleOptions
        from medsr.infer.selfsup import SelfSupConfig, SelfSupProgress

        config = self.selfsup or SelfSupConfig(budget=DEFAULT_SELFSUP_BUDGET)

        def progress(status: SelfSupProgress) -> None:
            training = status.stage == "train"
            if training:
                stage = f"training on the volume's own slices: step {status.done}"
                if status.heldout_psnr is not None:
                    stage += f", held-out PSNR {status.heldout_psnr:.2f} dB"
                if status.ending:
                    stage += f" (ending: {status.ending})"
            else:
                stage = "applying the trained network to the volume"
            self._update(
                record,
                save=False,
                stage=stage,
                progress_unit="steps" if training else "planes",
                progress_done=status.done,
                progress_total=status.total or 0,
                progress_fraction=round(float(status.fraction), 4),
                seconds_left=None if status.seconds_left is None else round(status.seconds_left),
            )

        self._update(record, stage="training on the volume's own slices", progress_unit="steps")
        options = UpscaleOptions(axis="through-plane", threads=self.threads, overwrite=True)
        outcome = self._write_result(
            self.root / record.id, record, image, SelfSupervised(config=config), progress, options
        )
        result = outcome.result
        steps_out = result.image.array.shape[result.axis]
        scale = max(1, round(steps_out / image.array.shape[result.axis]))
        self._update(record, stage="cubic baseline", model="self-supervised", scale=scale)
        baseline = _cubic_along(image.array, result.axis, steps_out)
        summary = result.summary()
        self._update(
            record,
            selfsup={
                key: summary[key]
                for key in ("axis", "acquisition", "steps", "stop_reason", "heldout_psnr")
            }
            | {"timings": {k: round(v, 2) for k, v in result.timings.items()}},
        )
        fidelity = result.fidelity_psnr
        return _Made(
            image=result.image,
            baseline=baseline,
            fidelity_psnr=None if math.isinf(fidelity) else fidelity,
            consistency=None,
            warnings=[],
            outcome=outcome,
        )

    # -------------------------------------------------------------- reference and regions
    def set_reference(self, job_id: str, image: Image) -> dict[str, Any]:
        """Keep ``image`` as the high-resolution reference of a finished job and score SR and
        bicubic against it (:mod:`medsr.web.reference`); returns the job's ``reference``.
        :class:`ConfigError` when it is not on the output grid (both shapes named)."""
        from medsr.web.reference import check_reference, data_range, scores

        record = self.get(job_id)
        if record.status != "done":
            raise UnknownJobError(f"job {job_id} has no result yet (status: {record.status})")
        check_reference(image.array, record.output_shape, record.color or image.color)
        reference = np.ascontiguousarray(image.array, dtype=np.float32)
        width = data_range(reference)
        views = self.root / job_id / "views"
        summary: dict[str, Any] = {
            "shape": list(reference.shape),
            "data_range": width,
            "metrics": {
                name: scores(np.load(views / f"{name}.npy", mmap_mode="r"), reference, width)
                for name in ("sr", "bicubic")
            },
        }
        np.save(views / "reference.npy", reference)
        self._update(record, reference=summary)
        return summary

    def region_scores(
        self, job_id: str, plane: str, index: int, points: list[list[float]]
    ) -> dict[str, Any]:
        """PSNR/SSIM of SR and bicubic inside and outside the polygon ``points`` ((x, y) in
        output pixels of the slice ``index`` of ``plane``) against the reference."""
        from medsr.web.reference import polygon_mask, region_scores

        record = self.get(job_id)
        if record.reference is None:
            raise ConfigError("upload a high-resolution reference before scoring a region")
        reference = self.view_slice(job_id, "reference", index, plane)
        mask = polygon_mask(reference.shape, points)
        views = {name: self.view_slice(job_id, name, index, plane) for name in ("sr", "bicubic")}
        scored = region_scores(views, reference, mask, record.reference["data_range"])
        return {"plane": plane, "index": index, **scored}

    def _describe_input(self, record: JobRecord, image: Image) -> None:
        record.modality = image.modality
        record.color = image.color
        record.input_shape = list(image.array.shape)
        record.input_spacing = [round(s, 6) for s in image.spacing]
        record.slices = image.spatial_shape[0] if image.is_volume else 1
        record.window = list(default_window(image))
        finite = image.array[np.isfinite(image.array)]
        record.value_range = [float(finite.min()), float(finite.max())] if finite.size else [0, 1]
        record.mr_windows = {} if image.color else mr_windows(image.array)

    def _write_result(
        self,
        folder: Path,
        record: JobRecord,
        image: Image,
        model: SRModel | SelfSupervised,
        progress: Callable[..., None],
        options: UpscaleOptions,
    ) -> Outcome:
        """Super-resolve with ``model`` (a trained model, or the self-supervised method) and
        write the result in the input's format (:func:`medsr.infer.pipeline.run` with
        ``options``); a DICOM series (and any DICOM from a zip upload) is zipped. Raises
        the pipeline's error (an unexpected one to the worker, which logs it)."""
        from medsr.infer.pipeline import Job, SelfSupervised, run

        if isinstance(model, SelfSupervised):
            stem = f"medsr-{record.id}-self-supervised"
        else:
            label = re.sub(r"[^A-Za-z0-9_.+-]+", "-", record.model).strip("-.") or "model"
            stem = f"medsr-{record.id}-{label}-x{model.scale}"
        out_dir = folder / "result"
        job = Job(folder / "upload", Path(stem), out_dir)
        outcome = run(job, model, options, image=image, progress=progress)
        if outcome.exception is not None:
            raise outcome.exception
        assert outcome.output is not None
        if outcome.format == "dicom" and (outcome.output.is_dir() or record.kind != "dicom"):
            name = stem + ".zip"
            with zipfile.ZipFile(out_dir / name, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(outcome.written):
                    archive.write(path, f"{stem}/{path.name}")
            _remove(outcome.output)
            outcome.output = out_dir / name
        return outcome


DEFAULT_SELFSUP_BUDGET = 120.0
"""Seconds a self-supervised web job trains at most (``medsr serve --selfsup-budget``): the
CPU is shared with the other jobs and the page waits; the library's own default is longer."""


@dataclass
class _Made:
    """What a volume method made: the SR image, the baseline on the same grid, the fidelity
    PSNR (dB; None: exact), the consistency summary with its map arrays (or None), the
    out-of-distribution warnings and the pipeline's outcome (what was written)."""

    image: Image
    baseline: np.ndarray
    fidelity_psnr: float | None
    consistency: dict[str, Any] | None
    warnings: list
    outcome: Outcome


def _cubic_along(array: np.ndarray, axis: int, samples: int) -> np.ndarray:
    """``array`` resampled along ``axis`` to ``samples`` samples by cubic interpolation,
    edges aligned (the :meth:`Image.regrid` grid; as self-supervised SR's output)."""
    import torch

    from medsr.infer.selfsup import cubic_matrix

    n = array.shape[axis]
    positions = (torch.arange(samples, dtype=torch.float64) + 0.5) * n / samples - 0.5
    weights = cubic_matrix(n, positions).numpy().astype(np.float32)
    moved = np.moveaxis(np.asarray(array, np.float32), axis, 0)
    out = np.tensordot(weights, moved, axes=1)
    return np.ascontiguousarray(np.moveaxis(out, 0, axis), dtype=np.float32)


def _consistency_views(result: Any, image: Image) -> dict[str, Any]:
    """The map views of a job, its consistency summary, and a display window for each map
    (0..99.9th percentile of the error; +-99.9th percentile of |SR - bicubic|)."""
    from medsr.infer.safety import consistency_map

    maps = consistency_map(result, image)
    top = float(np.percentile(maps.error, 99.9))
    spread = float(np.percentile(np.abs(maps.sr_minus_bicubic), 99.9))
    summary = json.loads(json.dumps(maps.summary, default=float))
    if not math.isfinite(summary.get("fidelity_psnr", 0.0)):
        summary["fidelity_psnr"] = None  # JSON has no infinity
    summary["display"] = {
        "consistency": [0.0, max(top, 1e-6)],
        "difference": [-max(spread, 1e-6), max(spread, 1e-6)],
    }
    summary["arrays"] = {
        "consistency": maps.error_on_output,
        "difference": maps.sr_minus_bicubic,
    }
    return summary


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# What a job folder may hold only while a request or a job is being processed: the upload as
# received, a zip unpacked before its members were renamed or de-identified, files written
# through a temporary name (``*.part``, ``*.tmp``, ``tmp*`` folders of ``tempfile``).
_PARTIAL = re.compile(r"^(received|unpacked|.*\.part|.*\.tmp|tmp[a-z0-9_]{8})$")


def _remove_partial_files(folder: Path) -> None:
    """Delete what a stopped server left half-done in a job folder (see ``_PARTIAL``)."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if _PARTIAL.match(path.name) and (path.exists() or path.is_symlink()):
            _remove(path)


def _message(error: MedsrError) -> str:
    """An error for the page: file errors without their (server-side) path."""
    from medsr.errors import FileError

    return error.problem if isinstance(error, FileError) else str(error)
