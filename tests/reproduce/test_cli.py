"""``medsr reproduce`` is registered and checks its arguments."""

from __future__ import annotations

import pytest

from medsr.cli import COMMANDS, main


def test_registered_with_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert "reproduce" in COMMANDS
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--profile" in out and "smoke" in out and "--resume" in out


def test_unknown_work_is_an_error_naming_the_valid_ones(
    capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    code = main(["reproduce", "7", "--profile", "smoke", "--work-dir", str(tmp_path / "w")])
    assert code == 2
    assert "unknown work 7" in capsys.readouterr().err


def test_importing_the_package_imports_no_torch() -> None:
    import subprocess
    import sys

    # (medsr.cli as a whole imports torch through other commands; this package must not)
    code = "import sys, medsr.reproduce, medsr.reproduce.report; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
