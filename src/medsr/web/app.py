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

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from medsr import __version__
from medsr.io.image import Image
from medsr.web.jobs import DEFAULT_SELFSUP_BUDGET, JobManager, JobRecord, ModelChoice
from medsr.web.jobs_api import JobsInfo, jobs_router
from medsr.web.limits import Limits
from medsr.web.pages import STATIC, pages_router
from medsr.web.security import SecurityPolicy, install_security, login_router
from medsr.web.study_api import study_router
from medsr.web.uploads import UploadReader

if TYPE_CHECKING:
    from medsr.infer.selfsup import SelfSupConfig

log = logging.getLogger(__name__)

__all__ = ["ServeSettings", "create_app", "default_models"]


@dataclass
class ServeSettings:
    """Everything ``medsr serve`` configures.

    ``token``: required on every request except the study pages (which use reader tokens)
    when set; ``medsr serve`` refuses a non-loopback host without one. ``allowed_hosts``:
    the Host header names accepted (None: any); ``medsr serve`` sets the loopback names
    when it runs without a token, so that a page of another site cannot reach the app
    through DNS rebinding. ``deidentify``: apply
    the DICOM Basic Confidentiality Profile to DICOM uploads as they arrive, before anything
    else reads them (``deid_key`` makes the UID mapping reproducible). ``selfsup``: the
    training settings of self-supervised jobs (None: a time budget of
    ``DEFAULT_SELFSUP_BUDGET`` seconds; ``threads`` bounds the CPU threads of every job).
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
    selfsup: SelfSupConfig | None = None


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


def create_app(settings: ServeSettings) -> FastAPI:
    """The app for ``settings``; its job workers start and stop with the app's lifespan.

    It only assembles the parts, each usable on its own: the security middleware and login
    (:mod:`medsr.web.security`), the pages (:mod:`medsr.web.pages`), the upscaling API
    (:mod:`medsr.web.jobs_api`) and the study API (:mod:`medsr.web.study_api`).
    """
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
    uploads = UploadReader(limits, deid_state)

    def read_upload(upload: Path, record: JobRecord) -> Image:
        return uploads.read_stored(upload, record.kind)

    jobs = JobManager(
        data_dir,
        models=models,
        read_upload=read_upload,
        workers=settings.workers,
        retention_hours=settings.retention_hours,
        max_jobs=settings.max_jobs,
        threads=settings.threads,
        selfsup=settings.selfsup,
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
    install_security(
        app,
        SecurityPolicy(
            token=settings.token,
            allowed_hosts=settings.allowed_hosts,
            # The multipart envelope adds a little to the file; the file itself is capped
            # exactly while it is stored (copy_limited).
            max_body_bytes=limits.max_upload_bytes + 64 * 1024,
        ),
    )
    app.state.jobs = jobs
    app.state.study = study
    app.state.settings = settings

    app.include_router(login_router(settings.token))
    app.include_router(pages_router(study=study is not None))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(
        jobs_router(
            jobs,
            uploads,
            models=models,
            default_model=default_model,
            about=JobsInfo(
                retention_hours=settings.retention_hours,
                study=study is not None,
                selfsup_budget_s=(
                    DEFAULT_SELFSUP_BUDGET
                    if settings.selfsup is None
                    else settings.selfsup.time_limit
                ),
            ),
        )
    )
    app.include_router(study_router(study))
    return app
