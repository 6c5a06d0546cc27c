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
    # n_users + n_items + the feature columns: user u is one-hot column u, item i column n_users + i,
    # then the user fields' columns, then the item fields' (`features`, decision 0018)
    feature_dim: int
    label_mode: str = ""
    label_stats: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    train_shards: list[str] = field(default_factory=list)
    test_shards: list[str] = field(default_factory=list)
    files: dict[str, str]  # users, items, seen, holdout, popularity, report (+ user_side, item_side) -> key
    input: dict[str, Any] = field(default_factory=dict)  # {"objects": [...], "sha256": ...}
    config: dict[str, Any] = field(default_factory=dict)  # the PrepareConfig used
    # Side features: {"columns", "fields": [{"name", "side", "kind", "start", "stop", ...}], "user": {...},
    # "item": {...}}; empty = none (left out of the document: the bytes stay as without features).
    features: dict[str, Any] = field(default_factory=dict)
    key: str = field(default="", compare=False)  # where it was read from (not in the document)

    def to_json(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        del doc["key"]
        if not doc["features"]:
            del doc["features"]
        return doc

    @property
    def has_features(self) -> bool:
        return bool(self.features.get("fields"))

    def n_cold(self, side: str) -> int:
        """How many ids of `side` ("user", "item") are cold (metadata only, no interactions): the tail
        [n - n_cold, n) of the id map (decision 0018); 0 without features."""
        counts = self.features.get(side, {})
        value = counts.get("cold", 0) if isinstance(counts, dict) else 0
        n = self.n_users if side == "user" else self.n_items
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= n:
            raise InputError(
                f"{self.key}: features.{side}.cold must be an integer in [0, {n}], got {value!r}"
            )
        return value

    def first_cold(self, side: str) -> int:
        """The dense index of the first cold id of `side` (n_users / n_items when none)."""
        return (self.n_users if side == "user" else self.n_items) - self.n_cold(side)

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
        columns = _feature_columns(raw.get("features", {}), sizes["n_users"] + sizes["n_items"], key)
        if sizes["feature_dim"] != sizes["n_users"] + sizes["n_items"] + columns:
            raise InputError(
                f"{key}: feature_dim {sizes['feature_dim']} != n_users {sizes['n_users']} + "
                f"n_items {sizes['n_items']} + feature columns {columns}"
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


def _feature_columns(features: Any, start: int, key: str) -> int:
    """The columns the `features` fields declare: consecutive [start, stop) ranges after the one-hots."""
    if not isinstance(features, dict):
        raise InputError(f"{key}: field 'features' must be an object")
    fields = features.get("fields", [])
    if not isinstance(fields, list):
        raise InputError(f"{key}: features.fields must be a list")
    at = start
    for n, f in enumerate(fields):
        lo, hi = (f.get("start"), f.get("stop")) if isinstance(f, dict) else (None, None)
        if not isinstance(lo, int) or not isinstance(hi, int) or lo != at or hi < lo:
            raise InputError(
                f"{key}: features.fields[{n}] must have integer start == {at} (the previous field's stop) "
                f"and stop >= start, got {f!r}"
            )
        at = hi
    return at - start
