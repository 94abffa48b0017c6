"""``medsr serve``: refuses to expose itself without a token; settings from the options."""

from __future__ import annotations

import pytest

from medsr.cli import build_parser, main
from medsr.cli.serve import is_loopback, settings_from_args


def _args(*argv):
    return build_parser().parse_args(["serve", *argv])


def test_refuses_a_public_host_without_a_token(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEDSR_TOKEN", raising=False)
    code = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "d")])
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without an access token" in err
    assert not (tmp_path / "d").exists()
    assert main(["serve", "--host", "10.1.2.3", "--token", "short"]) == 2
    assert "too short" in capsys.readouterr().err


def test_token_from_the_environment_and_loopback(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSR_TOKEN", "x" * 20)
    settings = settings_from_args(_args("--host", "0.0.0.0", "--data-dir", str(tmp_path)))
    assert settings.token == "x" * 20 and settings.allowed_hosts is None
    monkeypatch.delenv("MEDSR_TOKEN")
    settings = settings_from_args(
        _args(
            "--data-dir",
            str(tmp_path),
            "--max-upload-mb",
            "1",
            "--max-megapixels",
            "2",
            "--retention-hours",
            "2",
            "--workers",
            "2",
            "--deidentify",
        )
    )
    assert settings.token is None
    assert settings.allowed_hosts == ["127.0.0.1", "localhost", "::1", "[::1]"]
    assert settings.limits.max_upload_bytes == 2**20
    assert settings.limits.max_pixels == 2_000_000
    assert settings.retention_hours == 2 and settings.workers == 2 and settings.deidentify
    assert "lanczos" in settings.models and settings.models["lanczos"].scales == (2, 3, 4)


LOOPBACK = [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True)]
PUBLIC = [("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("example.org", False)]


@pytest.mark.parametrize(("host", "loopback"), LOOPBACK + PUBLIC)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_bad_models_and_study(tmp_path, capsys):
    assert main(["serve", "--model", "nonsense"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main(["serve", "--default-model", "edsr"]) == 2
    assert "not offered" in capsys.readouterr().err
    assert main(["serve", "--study", str(tmp_path)]) == 2
    assert "not a reader study" in capsys.readouterr().err


def test_selfsup_budget(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MEDSR_TOKEN", raising=False)
    settings = settings_from_args(_args("--data-dir", str(tmp_path)))
    assert settings.selfsup.time_limit == 120.0  # 2 minutes by default
    settings = settings_from_args(_args("--data-dir", str(tmp_path), "--selfsup-budget", "0.5"))
    assert settings.selfsup.time_limit == 30.0
    assert main(["serve", "--data-dir", str(tmp_path), "--selfsup-budget", "0"]) == 2
    assert "--selfsup-budget must be a positive number of minutes" in capsys.readouterr().err
