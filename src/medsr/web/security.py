"""Security of the web app, on its own: request size cap, Host check, cross-site POST refusal,
the access token (cookie or ``Authorization: Bearer``), security headers, and the login page.

:func:`install_security` adds the middleware to any FastAPI app; :func:`login_router` serves
``/login``. Neither knows about jobs or studies beyond which paths the reader-study pages
use (:func:`is_study_path`: those authenticate with reader tokens instead).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "COOKIE",
    "BodySizeLimit",
    "SecurityPolicy",
    "bearer",
    "install_security",
    "is_study_path",
    "login_router",
]

STATIC = Path(__file__).parent / "static"
COOKIE = "medsr_token"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# What the reader-study pages need without the server token (they use reader tokens).
_STUDY_STATIC = ("/static/common.js", "/static/study.js", "/static/style.css", "/static/study.html")


@dataclass(frozen=True)
class SecurityPolicy:
    """``token``: needed on every request but the login and study paths (None: open, for a
    loopback server). ``allowed_hosts``: accepted Host names (None: any; ``medsr serve``
    sets the loopback names without a token, against DNS rebinding). ``max_body_bytes``:
    the request size cap (413 above)."""

    token: str | None = None
    allowed_hosts: list[str] | None = None
    max_body_bytes: int = 512 * 2**20


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


# ------------------------------------------------------------------ token and headers
def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None otherwise)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def is_study_path(path: str) -> bool:
    """Paths of the reader-study pages and API (reader tokens, not the server token)."""
    return path == "/study" or path.startswith("/api/study") or path in _STUDY_STATIC


def _token_ok(given: str | None, token: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())  # type: ignore[union-attr]


def install_security(app: FastAPI, policy: SecurityPolicy) -> None:
    """Add the middleware of ``policy`` to ``app`` (outermost first: the token and Origin
    guard with the security headers, the Host check, the size cap)."""
    app.add_middleware(BodySizeLimit, max_bytes=policy.max_body_bytes)
    if policy.allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=policy.allowed_hosts)
    token = policy.token

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
        open_paths = path in ("/login", "/favicon.ico") or is_study_path(path)
        if token is not None and not open_paths:
            given = request.cookies.get(COOKIE) or bearer(request.headers.get("authorization"))
            if not _token_ok(given, token):
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
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        if path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response


def login_router(token: str | None) -> APIRouter:
    """``GET /login`` (the form) and ``POST /login`` (sets the HttpOnly, SameSite=Strict
    cookie for a right token; back to the form with ``?failed=1`` otherwise)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    def login_page() -> Response:
        return FileResponse(STATIC / "login.html")

    @router.post("/login")
    def login(given: Annotated[str, Form(alias="token")]) -> Response:
        if token is None:
            return RedirectResponse("/", status_code=303)
        if not _token_ok(given.strip(), token):
            return RedirectResponse("/login?failed=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    return router
