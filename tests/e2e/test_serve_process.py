"""``medsr serve`` as a real process: it starts, answers, and stops on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from medsr.infer import DEFAULT_MODEL

pytestmark = pytest.mark.e2e


def test_medsr_serve_starts_and_answers(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, MEDSR_TOKEN="")
    process = subprocess.Popen(
        [sys.executable, "-m", "medsr", "serve", "--port", str(port),
         "--data-dir", str(tmp_path / "data"), "--retention-hours", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as r:
                    info = json.load(r)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.communicate()[0]) from None
                time.sleep(0.2)
        assert info["retention_hours"] == 1 and info["default_model"] == DEFAULT_MODEL
        assert (tmp_path / "data" / "jobs").is_dir()
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
