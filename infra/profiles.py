"""Named configurations: `-c topx:profile=profiles/100m.json` layers a checked-in file of `topx:` keys
over cdk.json's context.

A profile is a JSON object of CDK context keys exactly as `-c` takes them: whole keys
(`"topx:recipe": "minimal"`) and dotted ones (`"topx:fm.instance_count": 3`). Precedence, lowest
first: cdk.json, the profile, then every key given with `-c` (a key absent from cdk.json, such as a
dotted one, or one whose value differs from cdk.json's). The CDK CLI hands the app cdk.json's
context and the `-c` values merged in one object (`CDK_CONTEXT_JSON`), so a `-c` value equal to
cdk.json's own cannot be told apart from no `-c` at all; to undo a profile's value, edit a copy of
the profile. A relative path is read from the directory of cdk.json (where `cdk` runs the app).

Every key must be one the app reads: its name before the first dot must be a key of cdk.json's
context; the fields after the dot are checked by the sections' own dataclasses when the config is
built (`AppConfig.from_context`), so a typo anywhere fails the synth with an error naming the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.context import PREFIX, ConfigError

PROFILE_KEY = f"{PREFIX}profile"


def read_profile(path: Path, known: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's keys, checked against `known` (cdk.json's context): ConfigError names the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{PROFILE_KEY}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{PROFILE_KEY}: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{PROFILE_KEY}: {path} must hold a non-empty JSON object of '{PREFIX}' keys")
    for key in data:
        if key == PROFILE_KEY or not key.startswith(PREFIX):
            raise ConfigError(
                f"{path}: key {key!r}: expected a '{PREFIX}' context key other than '{PROFILE_KEY}'"
            )
        _check_known(key, known, str(path))
    return data


def _check_known(key: str, known: Mapping[str, Any], where: str) -> None:
    head = PREFIX + key[len(PREFIX) :].split(".", 1)[0]
    if head not in known and head != PROFILE_KEY:
        raise ConfigError(
            f"{where}: key {key!r}: '{head}' is not a key of cdk.json's context (a typo?); known: "
            f"{sorted(k for k in known if k.startswith(PREFIX))}"
        )


def check_context_keys(context: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Every `topx:` key of the app's context (cdk.json + `-c`) names a key of cdk.json's context
    (before its first dot): a misspelt `-c topx:...` fails the synth instead of being ignored."""
    for key in context:
        if key.startswith(PREFIX):
            _check_known(key, defaults, "-c")


def with_profile(context: Mapping[str, Any], defaults: Mapping[str, Any], root: Path) -> dict[str, Any]:
    """`context` (cdk.json + `-c`) with the profile named by `topx:profile` layered under the `-c` keys.

    `defaults` is cdk.json's context: a key of `context` that is absent from it or differs from it
    was given with `-c` and wins over the profile. Without `topx:profile`, `context` as it is.
    """
    name = context.get(PROFILE_KEY)
    if name in (None, ""):
        return dict(context)
    if not isinstance(name, str):
        raise ConfigError(f"{PROFILE_KEY}: expected a path to a JSON file, got {name!r}")
    path = Path(name) if Path(name).is_absolute() else root / name
    profile = read_profile(path, defaults)
    given = {k: v for k, v in context.items() if k not in defaults or defaults[k] != v}
    given.pop(PROFILE_KEY)
    return {**defaults, **profile, **given, PROFILE_KEY: name}
