"""The README's set-up commands are the ones CI runs, and every command it tours exists."""

from __future__ import annotations

import re

from medsr.cli import COMMANDS
from tests.conftest import REPO


def setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    python3 -m venv")]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    commands = setup_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "medsr demo" in demo and "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()


def test_tour_uses_existing_commands():
    text = (REPO / "README.md").read_text()
    used = set(re.findall(r"^medsr ([a-z-]+)", text, flags=re.MULTILINE))
    used |= set(re.findall(r"`medsr ([a-z-]+)", text))
    for command in setup_commands():
        used |= set(re.findall(r"&& medsr ([a-z-]+)", command))
    assert used, "the README tours no command"
    missing = used - set(COMMANDS)
    assert not missing, f"README mentions commands that do not exist: {missing}"
