"""Typed deployment config, built once in app.py from cdk.json context (and -c overrides)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config value is missing or invalid; the message names the context key."""


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    project: str

    @classmethod
    def from_context(cls, get: Any) -> AppConfig:
        project = get("topx:project") or "fm-knn-topx"
        if not isinstance(project, str) or not project.replace("-", "").isalnum():
            raise ConfigError(f"context 'topx:project' must be alphanumeric with dashes, got {project!r}")
        return cls(project=project)
