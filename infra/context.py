"""Reading `topx:` keys from the CDK context: `-c` strings as JSON, dotted overrides, typed getters.

Values are coerced and checked by `pipeline_steps.common.config` (the one config path of the
project); every error is a ConfigError that names the context key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline_steps.common.config import check_between, coerce, config_from_dict
from pipeline_steps.common.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["PREFIX", "ConfigError", "Context"]

T = TypeVar("T", bound="DataclassInstance")

PREFIX = "topx:"


class Context:
    """Typed reads of `topx:` keys with dotted overrides applied; errors name the key."""

    def __init__(self, context: Mapping[str, Any]) -> None:
        self._values: dict[str, Any] = {}
        dotted: list[tuple[str, Any]] = []
        for key, value in context.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX) :]
            if "." in name:
                dotted.append((name, value))
            else:  # a copy: dotted overrides below must not write into the caller's context
                self._values[name] = copy.deepcopy(from_cli(value))
        for name, value in sorted(dotted):
            head, *path = name.split(".")
            node = self._values.setdefault(head, {})
            if node is None:  # an option that is off by default (null) gets its first field
                node = self._values[head] = {}
            if isinstance(node, str):
                node = self._values[head] = json_object(head, node)
            for part in path[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{PREFIX}{name}: '{part}' is not an object")
            node[path[-1]] = from_cli(value)

    def _get(self, name: str) -> Any:
        if name not in self._values:
            raise ConfigError(f"{PREFIX}{name}: missing (defaults live in cdk.json)")
        return self._values[name]

    def text(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{PREFIX}{name}: expected a string, got {value!r}")
        return value

    def flag(self, name: str) -> bool:
        value: bool = coerce(self._get(name), bool, f"{PREFIX}{name}")
        return value

    def number(self, name: str, low: int, high: int) -> int:
        value: int = coerce(self._get(name), int, f"{PREFIX}{name}")
        check_between(f"{PREFIX}{name}", value, low, high)
        return value

    def section(self, name: str, cls: type[T]) -> T:
        """An object-valued key as the config dataclass `cls` (unknown/missing keys, types, bounds)."""
        return config_from_dict(cls, self.obj(name), where=f"{PREFIX}{name}")

    def optional_obj(self, name: str) -> dict[str, Any] | None:
        """An object, or None when the key is null (an option that is off).

        A null in cdk.json does not reach the app: the CDK leaves null context values out, so an
        absent key is read as null here.
        """
        return None if self._values.get(name) is None else self.obj(name)

    def obj(self, name: str) -> dict[str, Any]:
        value = self._get(name)
        if isinstance(value, str):
            value = json_object(name, value)
        if not isinstance(value, dict):
            raise ConfigError(f"{PREFIX}{name}: expected an object, got {value!r}")
        return dict(value)


def from_cli(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def json_object(name: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}{name}: not a JSON object ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{PREFIX}{name}: expected a JSON object, got {value!r}")
    return value
