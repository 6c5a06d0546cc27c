"""prepare's `manifest.json` (docs/contracts.md): one dataclass, written by prepare, read by the rest.

`to_json()` is the document prepare writes (key order = field order, so the bytes stay the same);
`from_json(raw, key=...)` checks what the readers rely on (positive sizes that add up, the `files`
map) and names the manifest in every error. `key` is where the manifest was read from, not part of
the document.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pipeline_steps.common.errors import InputError

MANIFEST_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Manifest:
    version: int = MANIFEST_VERSION
    run_id: str
    bucket: str = ""
    n_users: int
    n_items: int
    feature_dim: int  # n_users + n_items: user u is one-hot column u, item i column n_users + i
    label_mode: str = ""
    label_stats: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    train_shards: list[str] = field(default_factory=list)
    test_shards: list[str] = field(default_factory=list)
    files: dict[str, str]  # users, items, seen, holdout, popularity, report -> key
    input: dict[str, Any] = field(default_factory=dict)  # {"objects": [...], "sha256": ...}
    config: dict[str, Any] = field(default_factory=dict)  # the PrepareConfig used
    key: str = field(default="", compare=False)  # where it was read from (not in the document)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        del doc["key"]
        return doc

    @classmethod
    def from_json(cls, raw: Any, *, key: str) -> Manifest:
        if not isinstance(raw, dict):
            raise InputError(f"{key}: expected a JSON object")
        sizes: dict[str, Any] = {}
        for name in ("n_users", "n_items", "feature_dim"):
            value = raw.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{key}: field {name!r} must be a positive integer, got {value!r}")
            sizes[name] = value
        if sizes["feature_dim"] != sizes["n_users"] + sizes["n_items"]:
            raise InputError(
                f"{key}: feature_dim {sizes['feature_dim']} != n_users {sizes['n_users']} + "
                f"n_items {sizes['n_items']}"
            )
        if not isinstance(raw.get("files"), dict):
            raise InputError(f"{key}: field 'files' must be an object")
        known = {f.name for f in dataclasses.fields(cls)} - {"key"}
        rest: dict[str, Any] = {k: v for k, v in raw.items() if k in known and k not in sizes}
        rest["run_id"] = str(raw.get("run_id", ""))
        return cls(**rest, **sizes, key=key)

    def file_key(self, name: str) -> str:
        key = self.files.get(name)
        if not isinstance(key, str) or not key:
            raise InputError(f"{self.key}: files.{name} is missing")
        return key
