"""Process groups live in ``medsr.distributed``, shared by training and inference: nothing outside
training imports ``medsr.train`` (inference would otherwise load the training stack)."""

from __future__ import annotations

import ast

import pytest

from medsr import distributed
from medsr.errors import ConfigError
from tests.conftest import REPO

SRC = REPO / "src" / "medsr"
# the only modules outside medsr/train that may import it: the command that trains, and the
# reproductions of the source works (they train every model a paper compares)
MAY_IMPORT_TRAIN = {SRC / "cli" / "train.py"}
MAY_IMPORT_TRAIN_UNDER = (SRC / "reproduce",)


def imported_modules(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_training_imports_medsr_train():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if (SRC / "train") in path.parents or path in MAY_IMPORT_TRAIN:
            continue
        if any(folder in path.parents for folder in MAY_IMPORT_TRAIN_UNDER):
            continue
        if any(n == "medsr.train" or n.startswith("medsr.train.") for n in imported_modules(path)):
            offenders.append(str(path.relative_to(SRC)))
    assert not offenders, f"import medsr.train outside training: {offenders}"


def test_a_single_process_needs_no_process_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.setup("cpu")
    assert (info.rank, info.world_size, info.distributed, info.is_main) == (0, 1, False, True)
    assert info.device.type == "cpu" and not info.owns_group
    assert distributed.broadcast_object({"a": 1}, info) == {"a": 1}
    assert distributed.gather_objects(3, info) == [3]
    assert distributed.any_true(True, info) and not distributed.any_true(False, info)
    distributed.barrier(info)
    distributed.teardown(info)


def test_a_bad_rank_variable_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE='two'"):
        distributed.setup("cpu")
