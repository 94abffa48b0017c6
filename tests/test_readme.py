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


def tour_lines() -> list[list[str]]:
    """The words of each `medsr ...` line of the quick tour, without its comment."""
    text = (REPO / "README.md").read_text()
    tour = text.split("## A quick tour of the CLI", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in tour.splitlines() if line.startswith("medsr ")]
    return [line.split("#", 1)[0].split() for line in lines]


def test_every_benchmark_in_the_tour_has_its_data_and_models_made_by_the_tour():
    """A fresh clone can follow the tour: the manifest and the trained models a toured
    benchmark config reads are made by `medsr prepare --out` / `medsr train` lines of the tour
    (paths under ../shared/data are the external data the README names)."""
    import yaml

    lines = tour_lines()
    prepared = {words[words.index("--out") + 1] for words in lines if words[1] == "prepare"}
    trained = set()
    for words in lines:
        if words[1] == "train" and words[2].endswith(".yaml"):
            config = yaml.safe_load((REPO / words[2]).read_text())
            trained.add(config.get("output_dir") or f"runs/{config['name']}")
    benchmarks = [words[2] for words in lines if words[1] == "benchmark"]
    assert benchmarks, "the tour shows no benchmark"
    for name in benchmarks:
        config = yaml.safe_load((REPO / name).read_text())
        models = [m["model"] for m in config["methods"]]
        needed = [config["manifest"], *(m for m in models if "/" in m and "shared" not in m)]
        for path in needed:
            made = path in prepared or any(path.startswith(f"{run}/") for run in trained)
            assert made, f"{name} reads {path}, which no command of the README's tour makes"


def test_every_file_the_readme_names_is_in_the_repository():
    text = (REPO / "README.md").read_text()
    linked = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    named = re.findall(r"`([\w./-]+\.(?:md|yaml))`", text)  # documents and configs
    missing = [p for p in linked + named if not (REPO / p).exists()]
    assert not missing, f"the README names files that are not in the repository: {missing}"
