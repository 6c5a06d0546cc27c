"""The one way a config dataclass is built from JSON: `STEP_CONFIG`, `cdk.json` context, the CLI.

`config_from_dict` rejects unknown keys, coerces each value by the field's type hint, then runs the
dataclass's own checks (`__post_init__`, and `validate(where)` when it has one); every error is a
`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from typing import Any

from pipeline_steps.common.errors import ConfigError, InputError

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def require_env(name: str) -> str:
    """A Lambda environment variable the step cannot run without (clear error when missing)."""
    value = os.environ.get(name)
    if not value:
        raise InputError(f"environment variable {name} is not set")
    return value


def env_config(cls: type, environ: dict[str, str] | None = None) -> Any:
    """Build a step config from the `STEP_CONFIG` JSON environment variable."""
    raw = (environ if environ is not None else os.environ).get("STEP_CONFIG", "") or "{}"
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"STEP_CONFIG is not valid JSON ({exc})") from None
    return config_from_dict(cls, data, where="STEP_CONFIG")


def config_from_dict(cls: type, data: Any, *, where: str, strings: bool = False) -> Any:
    """Typed, validated construction of a keyword-only config dataclass from a JSON object.

    `strings=True` also accepts the text form of numbers and booleans ("7", "0.5", "false"), as
    typed on a command line.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints[name], f"{where}.{name}", strings) for name, value in data.items()}
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def _coerce(value: Any, hint: Any, where: str, strings: bool) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in args:  # the first member that takes the value as it is (str | int: 2 stays 2)
            if arg is not type(None) and _is(value, arg):
                return _coerce(value, arg, where, strings)
        for arg in args:
            if arg is not type(None):
                try:
                    return _coerce(value, arg, where, strings)
                except ConfigError:
                    pass
        names = " or ".join("null" if a is type(None) else _name(a) for a in args)
        raise ConfigError(f"{where}: expected {names}, got {value!r}")
    if _is(value, hint):
        if hint is float:
            return float(value)
        if typing.get_origin(hint) is dict:
            return {str(k): v for k, v in value.items()}
        return value
    if strings and isinstance(value, str):
        if hint is bool and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if hint in (int, float):
            try:
                return hint(value)
            except ValueError:
                pass
    raise ConfigError(f"{where}: expected {_name(hint)}, got {value!r}")


def _is(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is dict:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return True  # a type this module does not check


def _name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))
