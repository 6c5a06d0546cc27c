"""The one way a config dataclass is built from JSON: `STEP_CONFIG`, `cdk.json` context, the CLI.

`config_from_dict` rejects unknown and missing keys, coerces each value by the field's type hint,
checks the bounds and choices a field declares (`between`, `one_of` in its metadata), then runs the
dataclass's own cross-field checks (`__post_init__`, and `validate(where)` when it has one); every
error is a `ConfigError` naming the key, as `<where>.<field>: <what is wrong>`.

The steps' configs (`STEP_CONFIG`) and infra's deployment sections (`topx:fm`, `topx:transform`, ...)
are both built here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline_steps.common.errors import ConfigError, InputError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")
T = TypeVar("T", bound="DataclassInstance")  # a config is a dataclass


def require_env(name: str) -> str:
    """A Lambda environment variable the step cannot run without (clear error when missing)."""
    value = os.environ.get(name)
    if not value:
        raise InputError(f"environment variable {name} is not set")
    return value


def env_config(cls: type[T], environ: dict[str, str] | None = None) -> T:
    """Build a step config from the `STEP_CONFIG` JSON environment variable."""
    return config_from_dict(cls, step_config_json(environ), where="STEP_CONFIG")


def step_config_json(environ: dict[str, str] | None = None) -> Any:
    """The parsed `STEP_CONFIG` environment variable ({} when unset)."""
    raw = (environ if environ is not None else os.environ).get("STEP_CONFIG", "") or "{}"
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"STEP_CONFIG is not valid JSON ({exc})") from None


def between(low: float | None = None, high: float | None = None) -> dict[str, Any]:
    """Field metadata: the value (when not None) lies in [low, high]; None = unbounded on that side."""
    return {"between": (low, high)}


def one_of(*choices: object) -> dict[str, Any]:
    """Field metadata: the value (when not None) is one of these."""
    return {"one_of": choices}


def config_from_dict(cls: type[T], data: Any, *, where: str, strings: bool = False) -> T:
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
    missing = sorted(name for name, f in fields.items() if name not in data and _required(f))
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    hints = typing.get_type_hints(cls)
    values = {
        name: coerce(value, hints[name], f"{where}.{name}", strings=strings) for name, value in data.items()
    }
    for name, value in values.items():
        check_declared(fields[name], value, f"{where}.{name}")
    try:
        obj = cls(**values)
    except ConfigError as exc:  # __post_init__ names the field, not where the config came from
        raise ConfigError(f"{where}.{exc}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def check_fields(obj: Any) -> None:
    """Check the declared bounds and choices of every field of a built config (for `__post_init__`)."""
    for f in dataclasses.fields(obj):
        check_declared(f, getattr(obj, f.name), f.name)


def check_declared(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    if value is None:
        return
    if "between" in f.metadata:
        check_between(where, value, *f.metadata["between"])
    choices = f.metadata.get("one_of")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")


def check_between(where: str, value: float, low: float | None, high: float | None) -> None:
    """`value` in [low, high] (None = unbounded), finite; the message states the range."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value}")
    if (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        bounds = (
            f"in {low}..{high}" if isinstance(low, int) and isinstance(high, int) else f"in [{low}, {high}]"
        )
    else:
        bounds = f">= {low}" if low is not None else f"<= {high}"
    raise ConfigError(f"{where}: must be {bounds}, got {value}")


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def coerce(value: Any, hint: Any, where: str, *, strings: bool = False) -> Any:
    """`value` as the type `hint` says (JSON numbers, booleans, strings, string maps, string tuples)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _coerce_union(value, hint, where, strings)
    if _is(value, hint):
        if hint is float:
            return float(value)
        if typing.get_origin(hint) is dict:
            return {str(k): v for k, v in value.items()}
        if typing.get_origin(hint) is tuple:
            return tuple(value)
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


def _coerce_union(value: Any, hint: Any, where: str, strings: bool) -> Any:
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    for arg in args:  # the first member that takes the value as it is (str | int: 2 stays 2)
        if arg is not type(None) and _is(value, arg):
            return coerce(value, arg, where, strings=strings)
    for arg in args:
        if arg is not type(None):
            try:
                return coerce(value, arg, where, strings=strings)
            except ConfigError:
                pass
    names = " or ".join("null" if a is type(None) else _name(a) for a in args)
    raise ConfigError(f"{where}: expected {names}, got {value!r}")


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
    if typing.get_origin(hint) is tuple:  # tuple[str, ...] from a JSON list of strings
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return True  # a type this module does not check


def _name(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if typing.get_origin(hint) is tuple:
        return "a list of strings"
    if typing.get_origin(hint) is dict:
        return "an object of strings"
    return names.get(hint, str(hint))
