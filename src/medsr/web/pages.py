"""The HTML pages (``/``, ``/study``); their code and styles are the files under ``static/``
(plain HTML, CSS and JavaScript: no build step, nothing from a CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

__all__ = ["STATIC", "pages_router"]

STATIC = Path(__file__).parent / "static"


def pages_router(*, study: bool) -> APIRouter:
    """``/`` (upload and compare) and ``/study`` (the reader pages; 404 when ``study`` is
    False, i.e. the server runs without ``--study``)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def index() -> Response:
        return FileResponse(STATIC / "index.html")

    @router.get("/study")
    def study_page() -> Response:
        if not study:
            return HTMLResponse(
                "<!doctype html><title>medsr</title><p>No reader study is served here "
                "(start <code>medsr serve --study DIR</code>).</p>",
                status_code=404,
            )
        return FileResponse(STATIC / "study.html")

    return router
