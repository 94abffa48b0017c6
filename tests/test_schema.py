from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from medsr.errors import ConfigError
from medsr.schema import (
    at_least,
    check_keys,
    convert,
    describe,
    get,
    one_of,
    parse_dataclass,
    positive,
    read_yaml,
    type_name,
    yaml_load,
)


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


# -- the one YAML reader ------------------------------------------------------------------------
def test_read_yaml_reads_a_mapping_with_exponent_floats(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\nname: x\n")
    assert read_yaml(path) == {"lr": 1e-4, "name": "x"}
    assert yaml_load("1e-4") == 1e-4  # YAML 1.1 alone reads the string '1e-4'
    path.write_text("- name: bicubic\n")
    assert read_yaml(path, top=(list, dict)) == [{"name": "bicubic"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, r"c\.yaml: cannot read the config: the file does not exist"),
        ("", r"c\.yaml: the file is empty \(or only comments\); a recipe is a mapping"),
        ("# only a comment\n", r"c\.yaml: the file is empty"),
        ("- a\n- b\n", r"c\.yaml: a recipe is a mapping, got list"),
        ("a: 1\nb: [1, 2\n", r"c\.yaml: invalid YAML at line 3, column 1: .*"),
        ("a: 1\n  b: 2\n", r"c\.yaml: invalid YAML at line 2, column 4"),
        (b"a: \xff\n", r"c\.yaml: cannot read the config: not UTF-8 text"),
    ],
)
def test_read_yaml_errors_name_the_file_and_the_problem(
    tmp_path: Path, text: str | bytes | None, message: str
) -> None:
    path = tmp_path / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_yaml(path, what="recipe")


def test_read_yaml_names_the_allowed_top_levels_and_folders(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("3\n")
    with pytest.raises(ConfigError, match=r"a degradation is a list or a mapping, got int"):
        read_yaml(path, what="degradation", top=(list, dict))
    with pytest.raises(ConfigError, match=r"cannot read the config: Is a directory"):
        read_yaml(tmp_path)


# -- readers for sections written by hand -------------------------------------------------------
def test_check_keys_flat_and_dotted_forms() -> None:
    assert check_keys({"a": 1}, ("a", "b"), "s", required=("a",)) == {"a": 1}
    with pytest.raises(ConfigError, match=r"^s: unknown key\(s\) 'c', 'd'; valid keys: a, b$"):
        check_keys({"d": 1, "c": 2}, ("a", "b"), "s")
    with pytest.raises(ConfigError, match=r"^s: missing required key 'a'; valid keys: a, b$"):
        check_keys({}, ("a", "b"), "s", required=("a",))
    with pytest.raises(ConfigError, match=r"missing required keys 'a', 'b'"):
        check_keys({}, ("a", "b"), "s", required=("a", "b"))
    with pytest.raises(ConfigError, match=r"^s: expected a mapping with keys a, b, got \[1\]"):
        check_keys([1], ("a", "b"), "s")
    with pytest.raises(ConfigError, match=r"^unknown key\(s\) s\.t\.c; valid keys of s\.t: a"):
        check_keys({"c": 1}, ("a",), "s.t", dotted=True)
    with pytest.raises(ConfigError, match=r"^a, b are required; keys of config: a, b$"):
        check_keys({}, ("a", "b"), "", required=("a", "b"), dotted=True)


def test_get_reads_one_typed_field_with_its_default() -> None:
    data = {"n": 3, "x": 2, "names": ["a", "b"], "none": None, "s": "  "}
    assert get(data, "n", "w", int) == 3
    assert get(data, "x", "w", float) == 2.0 and isinstance(get(data, "x", "w", float), float)
    assert get(data, "names", "w", tuple[str, ...]) == ("a", "b")
    assert get(data, "none", "w", int | None, 5) is None
    assert get(data, "absent", "w", int, 7) == 7
    assert get(data, "s", "w", str) == "  "
    with pytest.raises(ConfigError, match=r"^w: missing required key 'absent'$"):
        get(data, "absent", "w", int)
    with pytest.raises(ConfigError, match=r"^w\.names must be an integer or null, got \['a'"):
        get(data, "names", "w", int | None)
    with pytest.raises(ConfigError, match=r"^w\.s must be a non-empty string, got '  '$"):
        get(data, "s", "w", str, nonempty=True)
    with pytest.raises(ConfigError, match=r"^w\.n must be a list of strings, none empty, got 3$"):
        get(data, "n", "w", tuple[str, ...], nonempty=True)
    with pytest.raises(ConfigError, match=r"^w\.n must be true or false, got 3$"):
        get(data, "n", "w", bool)


def test_describe_says_types_in_words() -> None:
    assert describe(int) == "an integer"
    assert describe(list[float] | None) == "a list of numbers or null"
    assert describe(tuple[int, int]) == "a list of 2 numbers"  # the terse form beyond words
    assert describe(Literal["a", "b"]) == "'a' or 'b'"


def test_ranges_and_choices() -> None:
    positive("lr", 1e-4)
    at_least("n", 0, 0)
    one_of("kind", "l1", ("l1", "mse"))
    for bad in (0, -1, float("nan")):
        with pytest.raises(ConfigError, match=r"^lr must be positive, got"):
            positive("lr", bad)
    with pytest.raises(ConfigError, match=r"^size must be >= 4, got 3$"):
        at_least("size", 3, 4)
    with pytest.raises(ConfigError, match=r"^size must be >= 4 pixels, got 3$"):
        at_least("size", 3, 4, unit="pixels")
    with pytest.raises(ConfigError, match=r"^unknown kind 'l3'; valid: l1, mse$"):
        one_of("kind", "l3", ("l1", "mse"))
