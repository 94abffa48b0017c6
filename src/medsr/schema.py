"""Typed configuration: plain YAML values checked against dataclass annotations.

One place for the strict parsing that training recipes (``medsr.train.config``) and degradation
pipelines (``medsr.transforms.degrade``) share: ``convert`` checks a value against an annotation
(int, float, bool, str, Literal, unions, lists, tuples, dicts, nested dataclasses) and
``parse_dataclass`` builds a dataclass from a mapping, rejecting unknown keys with the list of
valid ones. Errors are :class:`~medsr.errors.ConfigError` naming the dotted path of the value.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from medsr.errors import ConfigError


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
    label = where or "config"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label}: expected a mapping with keys {_keys(cls)}, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in value if k not in fields]
    if unknown:
        bad = ", ".join(_join(where, str(k)) for k in unknown)
        raise ConfigError(f"unknown key(s) {bad}; valid keys of {label}: {_keys(cls)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = convert(value[name], hints[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(where, name)} is required; keys of {label}: {_keys(cls)}")
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{label}: {error}") from error


def _keys(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name
