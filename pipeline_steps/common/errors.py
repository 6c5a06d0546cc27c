"""The error types of the run contract (stdlib only: infra imports them at synth time)."""

from __future__ import annotations


class InputError(ValueError):
    """A run input (manifest, id map, CSR, event field) is missing or malformed; the message names it."""


class ConfigError(InputError):
    """A config value (STEP_CONFIG, cdk.json context, CLI) is missing, mistyped or out of range."""
