"""The FastAPI app behind ``medsr serve``: upload, background upscaling, comparison, downloads,
and the reader-study pages.

``create_app(settings)`` builds it; nothing runs at import. The pages are plain HTML, CSS and
JavaScript under ``static/`` (no build step, nothing from a CDN). The JSON API is described
by the app's OpenAPI schema at ``/openapi.json`` (browsable at ``/docs`` only where a CDN is
reachable, so the pages never depend on it).

Errors: every rejected request answers ``{"detail": "<message for the person>"}`` with a
4xx status; the pages show ``detail``.
"""

from __future__ import annotations

import hmac
import io
import logging
import math
import shutil
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from medsr import __version__
from medsr.errors import (
    AlreadyAnsweredError,
    FileError,
    ImageTooLargeError,
    InvalidAnswerError,
    InvalidTokenError,
    MedsrError,
    MissingCodecError,
    StudyError,
    UnknownItemError,
    UnsupportedFormatError,
)
from medsr.io import read
from medsr.io.image import Image
from medsr.study.design import Reader
from medsr.web.jobs import JobManager, JobRecord, ModelChoice, UnknownJobError
from medsr.web.limits import (
    UPLOAD_KINDS,
    Limits,
    UploadRejected,
    check_nifti_header,
    classify_upload,
    copy_limited,
    extract_zip,
)

log = logging.getLogger(__name__)

__all__ = ["ServeSettings", "create_app", "default_models"]

STATIC = Path(__file__).parent / "static"
COOKIE = "medsr_token"
_UPLOAD_NAMES = {
    "dicom": "input.dcm",
    "png": "input.png",
    "jpeg": "input.jpg",
    "tiff": "input.tif",
}
_STUDY_STATUS = {
    InvalidAnswerError: 422,
    UnknownItemError: 404,
    InvalidTokenError: 401,
    AlreadyAnsweredError: 409,
}


@dataclass
class ServeSettings:
    """Everything ``medsr serve`` configures.

    ``token``: required on every request except the study pages (which use reader tokens)
    when set; ``medsr serve`` refuses a non-loopback host without one. ``allowed_hosts``:
    the Host header names accepted (None: any); ``medsr serve`` sets the loopback names
    when it runs without a token, so that a page of another site cannot reach the app
    through DNS rebinding. ``deidentify``: apply
    the DICOM Basic Confidentiality Profile to DICOM uploads as they arrive, before anything
    else reads them (``deid_key`` makes the UID mapping reproducible).
    """

    data_dir: Path
    token: str | None = None
    limits: Limits = field(default_factory=Limits)
    workers: int = 1
    retention_hours: float = 24.0
    max_jobs: int = 200
    deidentify: bool = False
    deid_key: str | None = None
    models: dict[str, ModelChoice] = field(default_factory=dict)
    default_model: str | None = None
    study_dir: Path | None = None
    threads: int | None = None
    allowed_hosts: list[str] | None = None


def default_models(extra: dict[str, str] | None = None) -> dict[str, ModelChoice]:
    """The shipped medsr models (``medsr.models.PRETRAINED``), the interpolation baselines
    (x2-x4), and ``extra`` (name -> checkpoint/ONNX path), whose scale is read from the model."""
    from medsr.infer import interpolation_names, load_model
    from medsr.models import PRETRAINED

    choices = {
        name: ModelChoice(name=name, spec=name, scales=(weights.scale,), trained=True)
        for name, weights in PRETRAINED.items()
    }
    for name in interpolation_names():
        choices[name] = ModelChoice(name=name, spec=name, scales=(2, 3, 4))
    for name, spec in (extra or {}).items():
        model = load_model(spec)
        choices[name] = ModelChoice(name=name, spec=spec, scales=(model.scale,), trained=True)
    return choices


# ------------------------------------------------------------------ request size cap
class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, by its Content-Length or, for a
    chunked body, as soon as the bytes received pass the cap (nothing more is read)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        message = f"the request is larger than the limit of {self.max_bytes} bytes"
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, message)
            return
        received = 0
        started = False
        too_big = False

        async def counting_receive():
            nonlocal received, too_big
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.max_bytes:
                    too_big = True
                    raise BodyTooLarge
            return event

        async def guarded_send(event):
            # The app may turn the exception into a response of its own (FastAPI answers
            # 400 for a body it could not parse); the 413 replaces whatever it sends.
            nonlocal started
            if too_big:
                if not started:
                    started = True
                    await _send_json(send, 413, message)
                return
            if event["type"] == "http.response.start":
                started = True
            await send(event)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, message)


async def _send_json(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------ API models
class ModelInfo(BaseModel):
    name: str
    scales: list[int]
    trained: bool


class ServerInfo(BaseModel):
    version: str
    models: list[ModelInfo]
    default_model: str
    upload_kinds: dict[str, str]
    max_upload_bytes: int
    max_pixels: int
    deidentify: bool
    retention_hours: float
    study: bool


class RatingIn(BaseModel):
    """A rating-mode answer: 1-5 scores (whole numbers), flags, comment."""

    model_config = ConfigDict(extra="forbid")
    quality: StrictInt
    usefulness: StrictInt
    flags: list[StrictStr] = Field(default_factory=list)
    comment: StrictStr = ""
    elapsed_s: float | None = None


class PreferenceIn(BaseModel):
    """A pairwise answer: ``left``, ``right`` or ``none``, and a comment."""

    model_config = ConfigDict(extra="forbid")
    choice: StrictStr
    comment: StrictStr = ""
    elapsed_s: float | None = None


class LoginIn(BaseModel):
    token: StrictStr


def _reader_dependency(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Reader:
    """The reader whose token is in ``Authorization: Bearer <token>`` (401 otherwise)."""
    study = request.app.state.study
    if study is None:
        raise _http(404, "no reader study is served here")
    try:
        return study.authenticate(_bearer(authorization) or "")
    except InvalidTokenError as error:
        raise _http(401, str(error)) from None


ReaderDep = Annotated[Reader, Depends(_reader_dependency)]


def _http(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def _problem(error: MedsrError) -> str:
    return error.problem if isinstance(error, FileError) else str(error)


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for ``settings``; its job workers start and stop with the app's lifespan."""
    from medsr.infer import DEFAULT_MODEL

    limits = settings.limits
    models = settings.models or default_models()
    default_model = settings.default_model or (
        DEFAULT_MODEL if DEFAULT_MODEL in models else next(iter(models))
    )
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    deid_state = None
    if settings.deidentify:
        from medsr.io.deidentify import DeidentificationState

        deid_state = DeidentificationState(key=settings.deid_key)

    def read_upload(upload: Path, record: JobRecord) -> Image:
        if record.kind == "dicom-zip":
            path = upload / "series"
        else:
            files = [p for p in upload.iterdir() if p.name.startswith("input")]
            if len(files) != 1:
                raise UploadRejected(400, "the upload is missing")
            path = files[0]
        if record.kind == "nifti":
            check_nifti_header(path, limits)
        return read(path, max_pixels=limits.max_pixels)

    jobs = JobManager(
        data_dir,
        models=models,
        read_upload=read_upload,
        workers=settings.workers,
        retention_hours=settings.retention_hours,
        max_jobs=settings.max_jobs,
        threads=settings.threads,
    )
    study = None
    if settings.study_dir is not None:
        from medsr.study import Study

        study = Study.open(settings.study_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        try:
            yield
        finally:
            jobs.stop()
            if study is not None:
                study.close()

    app = FastAPI(
        title="medsr",
        version=__version__,
        description="Medical image super-resolution: upload, upscale, compare, download; "
        "reader studies.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    # The multipart envelope adds a little to the file; the file itself is capped exactly
    # while it is stored (copy_limited).
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_upload_bytes + 64 * 1024)
    if settings.allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
    app.state.jobs = jobs
    app.state.study = study
    app.state.settings = settings

    # -------------------------------------------------------------- security
    @app.middleware("http")
    async def guard(request: Request, call_next):
        path = request.url.path
        origin = request.headers.get("origin")
        # A page of another site may send a form here (no preflight needed); refuse it.
        cross_site = origin is not None and origin.split("://", 1)[-1] != request.headers.get(
            "host", ""
        )
        if request.method not in ("GET", "HEAD", "OPTIONS") and cross_site:
            return JSONResponse(
                {"detail": "cross-site request refused (Origin does not match Host)"},
                status_code=403,
            )
        open_paths = path in ("/login", "/favicon.ico") or _is_study_path(path)
        if settings.token is not None and not open_paths:
            given = request.cookies.get(COOKIE) or _bearer(request.headers.get("authorization"))
            if not (given and hmac.compare_digest(given.encode(), settings.token.encode())):
                if path.startswith("/api/") or request.method != "GET":
                    return JSONResponse(
                        {"detail": "this server needs its access token (log in at /login)"},
                        status_code=401,
                    )
                return RedirectResponse("/login", status_code=303)
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        )
        if path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/login", include_in_schema=False)
    def login_page() -> Response:
        return FileResponse(STATIC / "login.html")

    @app.post("/login", include_in_schema=False)
    def login(token: Annotated[str, Form()]) -> Response:
        if settings.token is None:
            return RedirectResponse("/", status_code=303)
        if not hmac.compare_digest(token.strip().encode(), settings.token.encode()):
            return RedirectResponse("/login?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
        return response

    # -------------------------------------------------------------- pages
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(STATIC / "index.html")

    @app.get("/study", include_in_schema=False)
    def study_page() -> Response:
        if study is None:
            return HTMLResponse(
                "<!doctype html><title>medsr</title><p>No reader study is served here "
                "(start <code>medsr serve --study DIR</code>).</p>",
                status_code=404,
            )
        return FileResponse(STATIC / "study.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -------------------------------------------------------------- API: jobs
    @app.get("/api/info", response_model=ServerInfo, tags=["upscale"])
    def info() -> ServerInfo:
        """Models, accepted uploads and limits (what the upload page needs)."""
        return ServerInfo(
            version=__version__,
            models=[
                ModelInfo(name=m.name, scales=list(m.scales), trained=m.trained)
                for m in models.values()
            ],
            default_model=default_model,
            upload_kinds=UPLOAD_KINDS,
            max_upload_bytes=limits.max_upload_bytes,
            max_pixels=limits.max_pixels,
            deidentify=settings.deidentify,
            retention_hours=settings.retention_hours,
            study=study is not None,
        )

    @app.post("/api/jobs", status_code=202, tags=["upscale"])
    def create_job(
        file: Annotated[
            UploadFile, File(description="DICOM, zipped DICOM series, NIfTI, PNG, JPEG or TIFF")
        ],
        model: Annotated[str | None, Form()] = None,
        scale: Annotated[int | None, Form()] = None,
    ) -> dict[str, Any]:
        """Upload an image and queue its upscaling; answers the job (poll ``/api/jobs/{id}``).

        The file is checked (type, size, pixels, zip members, NIfTI header) and read before
        the job is queued, so a bad file is refused here with a 4xx and a message.
        """
        name = model or default_model
        choice = models.get(name)
        if choice is None:
            raise _http(422, f"unknown model {name!r}; choose one of {', '.join(models)}")
        s = scale if scale is not None else choice.scales[0]
        if s not in choice.scales:
            allowed = ", ".join(str(v) for v in choice.scales)
            raise _http(422, f"{name} upscales by {allowed}, not {s}")
        job_id, folder = jobs.new_job_dir()
        try:
            kind, image = _accept_upload(file, folder / "upload", s)
        except UploadRejected as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise _http(error.status, str(error)) from None
        except MedsrError as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise _http(_read_status(error), _problem(error)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        record = jobs.submit(
            job_id,
            kind=kind,
            model=name,
            scale=s,
            image=image,
            deidentified=deid_state is not None and kind.startswith("dicom"),
        )
        return record.public()

    def _accept_upload(file: UploadFile, upload: Path, scale: int) -> tuple[str, Image]:
        if deid_state is None:
            raw = upload / "received"
            copy_limited(file.file, raw, limits.max_upload_bytes)
            with open(raw, "rb") as received:
                path, kind = _store_upload(file.filename or "", received, upload)
            raw.unlink(missing_ok=True)
        else:
            # The original bytes (with the patient's identifiers) get no name on disk: an
            # anonymous temporary file vanishes when closed, or when the process dies.
            with tempfile.TemporaryFile(dir=upload) as received:
                copy_limited(file.file, received, limits.max_upload_bytes)
                path, kind = _store_upload(file.filename or "", received, upload)
        image = read(path, max_pixels=limits.max_pixels)
        bad = image.nonfinite_count()
        if bad:
            raise UploadRejected(
                400,
                f"the image has {bad} NaN or infinite values (of {image.array.size}); no model "
                "can upscale them: replace them with numbers and upload it again",
            )
        pixels = int(np.prod(image.spatial_shape)) * scale * scale
        if pixels > limits.max_output_pixels:
            raise UploadRejected(
                413,
                f"the result would have {pixels} pixels at x{scale}, over the limit of "
                f"{limits.max_output_pixels}; upload a smaller image or choose a lower scale",
            )
        return kind, image

    def _store_upload(name: str, received: BinaryIO, upload: Path) -> tuple[Path, str]:
        """Classify the received bytes and store them as the job's input (de-identified
        DICOM when the server de-identifies); returns (input path, kind)."""
        kind = classify_upload(name, received)
        if kind == "dicom-zip":
            series = upload / "series"
            if deid_state is None:
                extract_zip(received, series, limits)
            else:

                def deidentify_member(member: BinaryIO, target: Path, k: int) -> None:
                    _deidentify(member, target, f"file {k} of the zip archive")

                extract_zip(received, series, limits, convert=deidentify_member)
            _check_one_series(series, limits)
            return series, kind
        if kind == "dicom" and deid_state is not None:
            path = upload / _UPLOAD_NAMES["dicom"]
            _deidentify(received, path, "the DICOM file")
            return path, kind
        if kind == "nifti":
            gz = received.read(2) == b"\x1f\x8b"
            received.seek(0)
            path = upload / ("input.nii.gz" if gz else "input.nii")
        else:
            path = upload / _UPLOAD_NAMES[kind]
        with open(path, "wb") as out:
            shutil.copyfileobj(received, out, 1 << 20)
        if kind == "nifti":
            check_nifti_header(path, limits)
        return path, kind

    def _deidentify(src: BinaryIO, dst: Path, label: str) -> None:
        from medsr.io.deflate import check_deflated
        from medsr.io.deidentify import deidentify_file

        try:
            check_deflated(src, max_pixels=limits.max_pixels, label=label)  # before pydicom
            deidentify_file(src, dst, deid_state, label=label)
        except ImageTooLargeError as error:
            raise UploadRejected(413, f"{label}: {error.problem}") from None
        except FileError as error:
            raise UploadRejected(
                400, f"{label} could not be de-identified: {error.problem}"
            ) from None

    @app.get("/api/jobs", tags=["upscale"])
    def list_jobs() -> list[dict[str, Any]]:
        """All jobs kept (newest first)."""
        return [r.public() for r in jobs.list()]

    def _job(job_id: str) -> JobRecord:
        try:
            return jobs.get(job_id)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None

    @app.get("/api/jobs/{job_id}", tags=["upscale"])
    def get_job(job_id: str) -> dict[str, Any]:
        """A job's status, progress (``progress_done`` of ``progress_total`` tiles) and,
        when done, its shapes, window and download links."""
        record = _job(job_id)
        data = record.public()
        data["queue_position"] = jobs.queue_position(job_id)
        return data

    @app.get(
        "/api/jobs/{job_id}/views/{view}/{index}",
        tags=["upscale"],
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def get_view(
        job_id: str,
        view: Literal["lr", "bicubic", "sr", "consistency", "difference"],
        index: int,
        plane: Literal["axial", "coronal", "sagittal"] = "axial",
    ) -> Response:
        """One slice of a view as raw little-endian float32 (row-major ``H x W`` or
        ``H x W x 3``), in physical units; its shape is in the ``X-Shape`` header. ``plane``
        cuts a volume ``(Z, Y, X)`` along Z (axial), Y (coronal) or X (sagittal)."""
        _job(job_id)
        try:
            array = jobs.view_slice(job_id, view, index, plane)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        except MedsrError as error:
            raise _http(422, str(error)) from None
        body = np.ascontiguousarray(array, dtype="<f4").tobytes()
        return Response(
            body,
            media_type="application/octet-stream",
            headers={"X-Shape": ",".join(str(n) for n in array.shape)},
        )

    @app.get("/api/jobs/{job_id}/download", tags=["upscale"])
    def download(job_id: str) -> Response:
        """The result in the input's format (a DICOM series as a zip of the derived series)."""
        _job(job_id)
        try:
            path = jobs.result_path(job_id)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        return FileResponse(path, filename=path.name, media_type=_media_type(path))

    @app.get("/api/jobs/{job_id}/png", tags=["upscale"])
    def download_png(
        job_id: str,
        view: Literal["lr", "bicubic", "sr", "consistency", "difference"] = "sr",
        index: Annotated[int | None, Query(description="slice (default: the middle)")] = None,
        low: float | None = None,
        high: float | None = None,
        plane: Literal["axial", "coronal", "sagittal"] = "axial",
    ) -> Response:
        """One slice as an 8-bit PNG displayed with the window ``low..high`` (default: the
        job's window). Coronal and sagittal slices are resampled to square pixels."""
        from PIL import Image as PILImage

        from medsr.study.render import to_uint8

        record = _job(job_id)
        shape = record.input_shape if view == "lr" else record.output_shape
        spacing = record.input_spacing if view == "lr" else record.output_spacing
        axis = ("axial", "coronal", "sagittal").index(plane)
        z = index if index is not None else (shape[axis] // 2 if record.slices > 1 else 0)
        try:
            array = jobs.view_slice(job_id, view, z, plane)
        except UnknownJobError as error:
            raise _http(404, str(error)) from None
        except MedsrError as error:
            raise _http(422, str(error)) from None
        window = record.window
        if record.consistency is not None and view in record.consistency.get("display", {}):
            window = record.consistency["display"][view]  # a map has its own window
        lo = low if low is not None else window[0]
        hi = high if high is not None else window[1]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise _http(400, f"the window needs finite numbers for low and high, got {lo}..{hi}")
        if not hi > lo:
            raise _http(422, f"the window needs low < high, got {lo}..{hi}")
        if array.ndim == 3:
            pixels = np.stack([to_uint8(array[..., c], window=(lo, hi)) for c in range(3)], -1)
            im = PILImage.fromarray(pixels, mode="RGB")
        else:
            im = PILImage.fromarray(to_uint8(array, window=(lo, hi)), mode="L")
        if plane != "axial":  # rows are slices: stretch them to the in-plane pixel size
            rows = spacing[0] / spacing[2 if plane == "coronal" else 1]
            height = max(1, round(im.height * rows))
            im = im.resize((im.width, height), PILImage.Resampling.BILINEAR)
        buffer = io.BytesIO()
        im.save(buffer, format="PNG")
        where = f"-{plane}{z}" if record.slices > 1 else ""
        name = f"medsr-{job_id}-{view}{where}.png"
        return Response(
            buffer.getvalue(),
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -------------------------------------------------------------- API: study
    def _study():
        if study is None:
            raise _http(404, "no reader study is served here")
        return study

    def _study_error(error: StudyError) -> HTTPException:
        for cls, status in _STUDY_STATUS.items():
            if isinstance(error, cls):
                return _http(status, str(error))
        return _http(400, str(error))

    @app.get("/api/study", tags=["study"])
    def study_info() -> dict[str, Any]:
        """The study's title, mode and answer scales (no case or method names)."""
        from medsr.study import CHOICES, FLAGS, LIKERT_ANCHORS, SCALES

        s = _study()
        return {
            "title": s.title,
            "mode": s.mode,
            "scales": SCALES,
            "anchors": {str(k): v for k, v in LIKERT_ANCHORS.items()},
            "flags": FLAGS,
            "choices": CHOICES,
        }

    @app.post("/api/study/login", tags=["study"])
    def study_login(body: LoginIn) -> dict[str, Any]:
        """Check a reader token; answers the reader's label and progress."""
        s = _study()
        try:
            reader = s.authenticate(body.token)
        except InvalidTokenError as error:
            raise _http(401, str(error)) from None
        progress = s.progress(reader)
        return {"reader": reader.label, "answered": progress.answered, "total": progress.total}

    @app.get("/api/study/next", tags=["study"])
    def study_next(reader: ReaderDep) -> dict[str, Any]:
        """The reader's first unanswered item (``item`` null when all are answered)."""
        s = _study()
        item = s.next_item(reader)
        progress = s.progress(reader)
        return {
            "reader": reader.label,
            "answered": progress.answered,
            "total": progress.total,
            "item": None if item is None else _item_view(item),
        }

    @app.get("/api/study/items", tags=["study"])
    def study_items(reader: ReaderDep) -> list[dict[str, Any]]:
        """All of the reader's items in their order (opaque ids only)."""
        return [_item_view(item) for item in _study().reader_items(reader)]

    @app.get("/api/study/items/{item_id}", tags=["study"])
    def study_item(item_id: str, reader: ReaderDep) -> dict[str, Any]:
        """One of the reader's items with the reader's current answer (to change it)."""
        s = _study()
        try:
            item = s.get_item(reader, item_id)
            answer = s.get_answer(reader, item_id)
        except StudyError as error:
            raise _study_error(error) from None
        data = _item_view(item)
        data["answer"] = None if answer is None else _answer_json(answer)
        return data

    @app.post("/api/study/items/{item_id}/answer", tags=["study"])
    def study_answer(
        item_id: str, body: RatingIn | PreferenceIn, reader: ReaderDep
    ) -> dict[str, Any]:
        """Store an answer (rating mode: quality and usefulness 1-5; pairwise: choice).
        422 for an invalid answer, 404 for an item not the reader's, 409 when changing
        answers is not allowed."""
        from medsr.study import Preference, Rating

        s = _study()
        try:
            if s.mode == "rating":
                if not isinstance(body, RatingIn):
                    raise InvalidAnswerError("this study asks for quality and usefulness scores")
                answer = Rating(
                    quality=body.quality,
                    usefulness=body.usefulness,
                    comment=body.comment,
                    flags=tuple(body.flags),
                )
            else:
                if not isinstance(body, PreferenceIn):
                    raise InvalidAnswerError("this study asks for a choice: left, right or none")
                answer = Preference(choice=body.choice, comment=body.comment)
            saved = s.submit(reader, item_id, answer, elapsed_s=body.elapsed_s)
        except StudyError as error:
            raise _study_error(error) from None
        progress = s.progress(reader)
        return {
            "item_id": saved.item_id,
            "revision": saved.revision,
            "answered": progress.answered,
            "total": progress.total,
        }

    @app.get(
        "/api/study/images/{image_id}",
        tags=["study"],
        responses={200: {"content": {"image/png": {}}}},
    )
    def study_image(image_id: str, reader: ReaderDep) -> Response:
        """A study image (PNG, rendered once with the case's fixed window)."""
        try:
            path = _study().image_path(image_id)
        except StudyError as error:
            raise _study_error(error) from None
        return FileResponse(path, media_type="image/png")

    return app


def _item_view(item) -> dict[str, Any]:
    return {
        "item_id": item.item_id,
        "position": item.position,
        "total": item.total,
        "images": [f"/api/study/images/{i}" for i in item.images],
        "answered": item.answered,
    }


def _answer_json(answer) -> dict[str, Any]:
    from medsr.study import Rating

    if isinstance(answer, Rating):
        return {
            "quality": answer.quality,
            "usefulness": answer.usefulness,
            "flags": list(answer.flags),
            "comment": answer.comment,
        }
    return {"choice": answer.choice, "comment": answer.comment}


def _check_one_series(folder: Path, limits: Limits) -> None:
    """Refuse a zip of several series with a count (the reader's own message lists their
    UIDs, which are identifiers)."""
    from medsr.io.dicom import list_series

    groups = list_series(sorted(folder.iterdir()), max_pixels=limits.max_pixels)
    if len(groups) > 1:
        sizes = ", ".join(str(len(m)) for m in groups.values())
        raise UploadRejected(
            400,
            f"the zip archive holds {len(groups)} DICOM series ({sizes} files); "
            "zip one series at a time",
        )


def _is_study_path(path: str) -> bool:
    return (
        path == "/study"
        or path.startswith("/api/study")
        or path
        in ("/static/common.js", "/static/study.js", "/static/style.css", "/static/study.html")
    )


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _read_status(error: MedsrError) -> int:
    if isinstance(error, ImageTooLargeError):
        return 413
    if isinstance(error, UnsupportedFormatError | MissingCodecError):
        return 415
    return 400


def _media_type(path: Path) -> str:
    name = path.name.lower()
    for suffix, media in (
        (".zip", "application/zip"),
        (".dcm", "application/dicom"),
        (".nii.gz", "application/gzip"),
        (".png", "image/png"),
        (".tif", "image/tiff"),
    ):
        if name.endswith(suffix):
            return media
    return "application/octet-stream"
