"""Conversion of a config value (from YAML or a CLI ``key=value``) to a field's declared type annotation.

Knows types, not fields: :func:`coerce_value` handles ``X | None`` unions, ``list[X]`` (a comma-separated string
too), ``dict``, ``bool`` (``true/false/yes/no/1/0``), ``int`` (never from a bool; an integral float is fine),
``float``, ``str`` and enums. :func:`varpo.run.spec.coerce` looks the field's type up and calls it.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

import yaml


def coerce_value(key: str, value: Any, target: Any, cli: bool = False) -> Any:
    """``value`` converted to the type annotation ``target``; a one-line ``ValueError`` naming ``key`` otherwise.

    A CLI string is read as YAML first (numbers, booleans, lists, ``null``), falling back to the literal string,
    so ``save_strategy=no`` stays "no" while ``bf16=false`` becomes False.
    """
    candidates = [value]
    if cli and isinstance(value, str):
        try:
            candidates = [yaml.safe_load(value), value]
        except yaml.YAMLError:
            pass
    for candidate in candidates:
        try:
            return convert(candidate, target)
        except (TypeError, ValueError):
            continue
    raise ValueError(f"{key}={value!r} is invalid; expected {type_name(target)}")


def type_name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target).replace("typing.", "")


def convert(value: Any, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(target)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(value, option)
            except (TypeError, ValueError) as err:
                errors.append(err)
        raise ValueError(f"no type matches {value!r}")
    if target is Any or target is object:
        return value
    if origin is list or target is list:
        (item,) = typing.get_args(target) or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [convert(v, item) for v in value]
    if origin is dict or target is dict:
        if isinstance(value, dict):
            return value
        raise TypeError("expected a mapping")
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise TypeError("expected a bool")
    if target is int:
        if isinstance(value, bool):
            raise TypeError("expected an int")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, (int, str)):
            return int(value)
        raise TypeError("expected an int")
    if target is float:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    if target is str:
        if isinstance(value, (dict, list, bool)):
            raise TypeError("expected a string")
        return str(value)
    if isinstance(target, type) and issubclass(target, enum.Enum):
        return target(value)
    return value
