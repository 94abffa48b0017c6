from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from medsr.errors import ConfigError
from medsr.schema import convert, parse_dataclass, type_name


@dataclass(frozen=True)
class Inner:
    lr: float
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    steps: int
    inner: Inner
    sizes: tuple[int, int] = (1, 2)
    names: list[str] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)
    maybe: int | None = None


def test_builds_nested_dataclasses_and_converts_numbers():
    value = {
        "steps": 3,
        "inner": {"lr": 1, "mode": "b"},
        "sizes": [4, 5],
        "names": ["x"],
        "extra": {"k": 2},
    }
    out = parse_dataclass(Outer, value, "")
    assert out == Outer(
        steps=3, inner=Inner(lr=1.0, mode="b"), sizes=(4, 5), names=["x"], extra={"k": 2.0}
    )
    assert isinstance(out.inner.lr, float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"steps": True, "inner": {"lr": 1}}, r"^steps: expected int, got True"),
        ({"steps": 1, "inner": {"lr": "fast"}}, r"^inner\.lr: expected float"),
        ({"steps": 1, "inner": {"lr": float("nan")}}, r"inner\.lr: must be a finite number"),
        (
            {"steps": 1, "inner": {"lr": 1, "mode": "c"}},
            r"inner\.mode: 'c' is not allowed; valid: 'a', 'b'",
        ),
        ({"steps": 1, "inner": {"lr": 1}, "sizes": [1, 2, 3]}, r"^sizes: expected a list of 2"),
        ({"steps": 1, "inner": {"lr": 1}, "names": ["a", 2]}, r"^names\.1: expected str"),
        ({"steps": 1, "inner": {"lr": 1}, "extra": {1: 2.0}}, r"keys must be strings"),
        ({"steps": 1, "inner": {"lr": 1}, "maybe": "x"}, r"^maybe: expected int or null"),
        ({"inner": {"lr": 1}}, r"^steps is required; keys of config: steps, inner"),
        ({"steps": 1, "inner": {"lr": 1}, "stpes": 2}, r"unknown key\(s\) stpes; valid keys"),
        (
            {"steps": 1, "inner": {"lr": 1, "lf": 2}},
            r"unknown key\(s\) inner\.lf; valid keys of inner: lr, mode",
        ),
        ({"steps": 1, "inner": 3}, r"inner: expected a mapping with keys lr, mode"),
    ],
)
def test_errors_name_the_path_and_the_valid_values(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_dataclass(Outer, value, "")


def test_variable_tuples_and_unions():
    assert convert([1, 2, 3], tuple[int, ...], "t") == (1, 2, 3)
    assert convert(2, float | tuple[float, float], "s") == 2.0
    assert convert([1, 2], float | tuple[float, float], "s") == (1.0, 2.0)
    assert convert(None, int | None, "n") is None


def test_type_names_read_like_english():
    assert type_name(int | None) == "int or null"
    assert type_name(tuple[float, float]) == "a list of 2 numbers"
    assert type_name(Literal["x", "y"]) == "'x' or 'y'"
    assert type_name(Inner) == "a mapping (Inner)"


def test_unsupported_annotations_are_a_schema_bug_not_a_user_error():
    with pytest.raises(TypeError, match="unsupported annotation"):
        convert(1, set[int], "s")
