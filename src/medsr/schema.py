"""Typed configuration: one YAML reader and one set of strict, typed value checks.

Every config medsr reads (training recipes, benchmark configs, degradation pipelines, the
published numbers of ``medsr reproduce``) and every model hyper-parameter goes through here:

- :func:`read_yaml` reads a YAML file into plain values; every failure (missing file, not
  UTF-8, a syntax error with its line and column, an empty file, the wrong kind of top level)
  is a :class:`~medsr.errors.ConfigError` that names the file. :func:`yaml_load` is its parser
  (``1e-4`` is a float, as every user expects and YAML 1.1 does not).
- :func:`convert` checks a value against an annotation (int, float, bool, str, Literal,
  unions, lists, tuples, dicts, nested dataclasses) and :func:`parse_dataclass` builds a
  dataclass from a mapping: the typed parser of sections declared as dataclasses.
- :func:`check_keys` (unknown keys rejected with the list of valid ones, missing required keys
  named) and :func:`get` (one typed field, with its default) serve the parsers written by hand,
  section by section; :func:`positive`, :func:`at_least` and :func:`one_of` check ranges and
  allowed values.

Errors are :class:`~medsr.errors.ConfigError` naming the dotted path of the value, what was
expected and what was found. PyYAML is imported only when a file is read, so
``import medsr.cli`` stays light.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from medsr.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

REQUIRED: Any = object()
"""The default of :func:`get` for a key that must be present."""


# ---------------------------------------------------------------------------------- reading
def _yaml_loader() -> type:
    """PyYAML's safe loader, reading ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4`` and
    would read a learning rate of ``1e-4`` as a string)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def yaml_load(text: str) -> Any:
    """Parse YAML text with the safe loader (``1e-4`` is a float). Raises ``yaml.YAMLError``;
    :func:`read_yaml` turns that into a ConfigError naming the file and the line."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())


_TOP_NAMES = {dict: "a mapping", list: "a list"}


def read_yaml(
    path: str | os.PathLike[str] | Traversable,
    *,
    what: str = "config",
    top: type | tuple[type, ...] = dict,
) -> Any:
    """The parsed contents of the YAML file ``path`` (a path, or a package resource).

    ``what`` names the file in messages (``training config``, ``degradation``); ``top``: the
    type(s) the top level must have (``dict``: a mapping; ``(list, dict)`` for a degradation,
    a list of stages or one stage). Raises ConfigError, naming the file, when it does not
    exist or cannot be read, is not UTF-8, is not valid YAML (with the line and column), is
    empty, or has another top level.
    """
    import yaml

    source: Any = Path(path) if isinstance(path, str | os.PathLike) else path
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: cannot read the config: the file does not exist") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: cannot read the config: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    try:
        data = yaml_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = ", ".join(p for p in (error.context, error.problem) if p)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from None
    kinds = top if isinstance(top, tuple) else (top,)
    expected = " or ".join(_TOP_NAMES.get(k, k.__name__) for k in kinds)
    if data is None:
        raise ConfigError(f"{path}: the file is empty (or only comments); a {what} is {expected}")
    if not isinstance(data, kinds):
        raise ConfigError(f"{path}: a {what} is {expected}, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------ typed values
def type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return f"a mapping ({hint.__name__})"
    if origin is list:
        return f"a list of {type_name(typing.get_args(hint)[0])}"
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {type_name(args[0])}"
        return f"a list of {len(args)} numbers"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return " or ".join(map(repr, typing.get_args(hint)))
    return getattr(hint, "__name__", str(hint))


def convert(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against (and converted to) the annotation ``hint``."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return copy.deepcopy(value)
    if origin in (types.UnionType, typing.Union):
        errors = []
        for option in typing.get_args(hint):
            try:
                return convert(value, option, where)
            except ConfigError as error:
                errors.append(error)
        # one structured option (a section) gives the most useful message
        sections = [
            e
            for e, o in zip(errors, typing.get_args(hint), strict=True)
            if dataclasses.is_dataclass(o) and isinstance(value, Mapping)
        ]
        if sections:
            raise sections[0]
        raise ConfigError(f"{where}: expected {type_name(hint)}, got {value!r}")
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if dataclasses.is_dataclass(hint):
        return parse_dataclass(hint, value, where)
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(hint):
            return value
        valid = ", ".join(map(repr, typing.get_args(hint)))
        raise ConfigError(f"{where}: {value!r} is not allowed; valid: {valid}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: must be a finite number, got {value!r}")
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(hint)
            return [convert(v, item, f"{where}.{i}") for i, v in enumerate(value)]
    elif origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, list | tuple):
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(convert(v, args[0], f"{where}.{i}") for i, v in enumerate(value))
            if len(value) == len(args):
                return tuple(
                    convert(v, a, f"{where}.{i}")
                    for i, (v, a) in enumerate(zip(value, args, strict=True))
                )
    elif origin is dict:
        if isinstance(value, Mapping):
            _, value_hint = typing.get_args(hint)
            out = {}
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ConfigError(f"{where}: keys must be strings, got {k!r}")
                out[k] = convert(v, value_hint, f"{where}.{k}")
            return out
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported annotation {hint!r} at {where}")
    raise ConfigError(f"{where}: expected {type_name(hint)}, got {value!r}")


def parse_dataclass(cls: type, value: Any, where: str) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``value``: unknown keys and
    missing required fields are errors, every value is :func:`convert`-ed to its field's
    annotation. ``where``: the dotted path of ``value`` ("" for the top level)."""
    label = where or "config"
    fields = [f.name for f in dataclasses.fields(cls)]
    data = check_keys(value, fields, where, required=required_fields(cls), dotted=True)
    hints = typing.get_type_hints(cls)
    kwargs = {name: convert(v, hints[name], _join(where, name)) for name, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from error


def required_fields(cls: type) -> list[str]:
    """The fields of the dataclass ``cls`` that have no default."""
    return [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


# ------------------------------------------------------------------------ sections by hand
def check_keys(
    data: Any,
    allowed: Sequence[str],
    where: str,
    *,
    required: Iterable[str] = (),
    dotted: bool = False,
) -> dict[str, Any]:
    """``data`` as a dict, after checking that it is a mapping with only ``allowed`` keys and
    every ``required`` one.

    Messages list the valid keys. ``where`` names the section; by default it leads the
    message and the keys are quoted (``benchmark config: unknown key(s) 'x'; valid keys: ...``);
    ``dotted`` names each key by its full dotted path instead, the form ``--set`` takes
    (``unknown key(s) stages.0.optimizer.lf; valid keys of stages.0.optimizer: ...``).
    """
    label = where or "config"
    keys = ", ".join(allowed)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label}: expected a mapping with keys {keys}, got {data!r}")
    unknown = [str(k) for k in data if k not in allowed]
    if unknown:
        if dotted:
            bad = ", ".join(_join(where, k) for k in unknown)
            raise ConfigError(f"unknown key(s) {bad}; valid keys of {label}: {keys}")
        bad = ", ".join(map(repr, sorted(unknown)))
        raise ConfigError(f"{label}: unknown key(s) {bad}; valid keys: {keys}")
    missing = [k for k in required if k not in data]
    if missing:
        if dotted:
            verb = "is" if len(missing) == 1 else "are"
            bad = ", ".join(_join(where, k) for k in missing)
            raise ConfigError(f"{bad} {verb} required; keys of {label}: {keys}")
        plural = "s" if len(missing) > 1 else ""
        bad = ", ".join(map(repr, missing))
        raise ConfigError(f"{label}: missing required key{plural} {bad}; valid keys: {keys}")
    return dict(data)


def get(
    data: Mapping[str, Any],
    key: str,
    where: str,
    hint: Any,
    default: Any = REQUIRED,
    *,
    nonempty: bool = False,
) -> Any:
    """``data[key]`` :func:`convert`-ed to the plain annotation ``hint`` (a scalar, a list or
    tuple of them, an optional one), or ``default`` when the key is absent (an error when
    :data:`REQUIRED`). ``nonempty``: strings (also in a list) must not be blank. A wrong
    value raises ``WHERE.KEY must be <what, in words>, got <value>``."""
    path = _join(where, key)
    if key not in data:
        if default is REQUIRED:
            raise ConfigError(f"{where or 'config'}: missing required key {key!r}")
        return default
    value = data[key]
    try:
        out = convert(value, hint, path)
    except ConfigError:
        out = _INVALID
    if out is _INVALID or (nonempty and _blank(out)):
        raise ConfigError(f"{path} must be {describe(hint, nonempty=nonempty)}, got {value!r}")
    return out


_INVALID = object()


def _blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple):
        return any(_blank(v) for v in value)
    return False


_WORDS: dict[Any, tuple[str, str]] = {
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true or false values"),
    str: ("a string", "strings"),
    type(None): ("null", "nulls"),
}


def describe(hint: Any, *, nonempty: bool = False, plural: bool = False) -> str:
    """The annotation ``hint`` in words, for messages (``an integer``, ``a list of strings``,
    ``a number or null``); :func:`type_name` is the terse form of the schema tables."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(
            describe(a, nonempty=nonempty, plural=plural) for a in typing.get_args(hint)
        )
    args = typing.get_args(hint)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return f"a list of {describe(args[0], nonempty=nonempty, plural=True)}"
    if hint is str and nonempty:
        return "strings, none empty" if plural else "a non-empty string"
    if hint in _WORDS:
        return _WORDS[hint][plural]
    return type_name(hint)


# ---------------------------------------------------------------------- ranges and choices
def positive(name: str, value: float) -> None:
    """Raise ConfigError unless ``value`` > 0 (NaN is not)."""
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")


def at_least(name: str, value: float, low: float, *, unit: str = "") -> None:
    """Raise ConfigError unless ``value`` >= ``low`` (NaN is not); ``unit`` follows ``low``
    in the message (``pixels``)."""
    if not value >= low:
        bound = f"{low} {unit}" if unit else f"{low}"
        raise ConfigError(f"{name} must be >= {bound}, got {value!r}")


def unit_range(name: str, value: Any) -> tuple[float, float]:
    """``value`` as ``(low, high)`` with ``0 < low <= high <= 1`` (a factor range), else
    ConfigError."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be two numbers [low, high], got {value!r}") from None
    if not 0 < low <= high <= 1:
        raise ConfigError(f"{name} must satisfy 0 < low <= high <= 1, got [{low}, {high}]")
    return low, high


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed``, listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"unknown {name} {value!r}; valid: {', '.join(map(str, allowed))}")


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
