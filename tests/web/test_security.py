"""The security module on its own: middleware and login on a bare FastAPI app."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from medsr.web.security import (
    COOKIE,
    SecurityPolicy,
    bearer,
    install_security,
    is_study_path,
    login_router,
)

TOKEN = "a-long-enough-test-token"


def _client(**policy) -> TestClient:
    app = FastAPI()
    install_security(app, SecurityPolicy(**policy))
    app.include_router(login_router(policy.get("token")))

    @app.get("/api/ping")
    def ping() -> dict:
        return {"ok": True}

    @app.post("/api/echo")
    async def echo(body: dict) -> dict:
        return body

    @app.get("/page")
    def page() -> dict:
        return {"page": True}

    @app.get("/api/study")
    def study() -> dict:
        return {"study": True}

    return TestClient(app)


def test_headers_and_open_without_token():
    client = _client()
    response = client.get("/api/ping")
    assert response.json() == {"ok": True}
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "cache-control" not in client.get("/page").headers


def test_token_by_bearer_cookie_and_login():
    client = _client(token=TOKEN)
    assert client.get("/api/ping").status_code == 401
    assert client.get("/page", follow_redirects=False).headers["location"] == "/login"
    assert client.get("/api/study").status_code == 200  # reader tokens, not the server's
    assert client.get("/api/ping", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/ping", headers={"Authorization": "Bearer wrong"}).status_code == 401
    failed = client.post("/login", data={"token": "wrong"}, follow_redirects=False)
    assert failed.headers["location"] == "/login?failed=1"
    ok = client.post("/login", data={"token": f" {TOKEN} "}, follow_redirects=False)
    assert ok.status_code == 303 and COOKIE in ok.cookies
    assert "httponly" in ok.headers["set-cookie"].lower()
    assert client.get("/api/ping").status_code == 200  # the cookie now


def test_cross_site_post_refused_and_body_cap():
    client = _client(max_body_bytes=100)
    cross = client.post("/api/echo", json={"a": 1}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    same = client.post("/api/echo", json={"a": 1}, headers={"Origin": "http://testserver"})
    assert same.json() == {"a": 1}
    big = client.post("/api/echo", json={"a": "x" * 200})
    assert big.status_code == 413 and "100 bytes" in big.json()["detail"]


def test_allowed_hosts():
    client = _client(allowed_hosts=["127.0.0.1"])
    assert client.get("/api/ping").status_code == 400  # Host: testserver
    assert client.get("/api/ping", headers={"Host": "127.0.0.1"}).status_code == 200


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer  abc ", "abc"), ("bearer abc", "abc"), ("Basic x", None)],
)
def test_bearer(header, token):
    assert bearer(header) == token


def test_study_paths():
    assert is_study_path("/study") and is_study_path("/api/study/next")
    assert is_study_path("/static/study.js")
    assert not is_study_path("/static/app.js") and not is_study_path("/api/jobs")
