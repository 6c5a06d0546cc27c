"""Run inputs shared by repackage, evaluate and publish: S3 objects of one run (docs/contracts.md).

Everything here is numpy + stdlib + a boto3 S3 client passed in, so it runs in the numpy-only Lambda.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import posixpath
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


class InputError(ValueError):
    """A run input (manifest, id map, CSR, event field) is missing or malformed; the message names it."""


def parse_s3_uri(uri: str, *, field: str = "s3 uri") -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(f"{field}: expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"{field}: no bucket in {uri!r}")
    return bucket, key


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise InputError(f"s3://{bucket}/{key}: object does not exist") from None


def get_json(s3: Any, bucket: str, key: str) -> Any:
    data = get_bytes(s3, bucket, key)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InputError(f"s3://{bucket}/{key}: not valid JSON ({exc})") from None


def put_json(s3: Any, bucket: str, key: str, obj: Any) -> None:
    body = json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


@dataclass(frozen=True, kw_only=True)
class Csr:
    """Row-compressed (user -> item indices) matrix as written by prepare: seen.npz / holdout.npz."""

    indptr: np.ndarray  # (n_users + 1,) int64
    indices: np.ndarray  # int32 item indices

    def row(self, u: int) -> np.ndarray:
        return self.indices[self.indptr[u] : self.indptr[u + 1]]

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def load_csr(data: bytes, *, name: str, n_users: int, n_items: int) -> Csr:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            indptr = np.asarray(z["indptr"], dtype=np.int64)
            indices = np.asarray(z["indices"], dtype=np.int32)
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{name}: expected an .npz with 'indptr' and 'indices' ({exc})") from None
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.size:
        raise InputError(f"{name}: indptr has shape {indptr.shape}, expected ({n_users + 1},) from 0 to nnz")
    if np.any(np.diff(indptr) < 0):
        raise InputError(f"{name}: indptr is not non-decreasing")
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise InputError(f"{name}: item index out of range [0, {n_items})")
    return Csr(indptr=indptr, indices=indices)


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """The fields of prepare's manifest.json this side of the pipeline relies on."""

    key: str
    run_id: str
    n_users: int
    n_items: int
    feature_dim: int
    files: dict[str, str]

    def file_key(self, name: str) -> str:
        key = self.files.get(name)
        if not isinstance(key, str) or not key:
            raise InputError(f"{self.key}: files.{name} is missing")
        return key


def load_manifest(s3: Any, bucket: str, key: str) -> Manifest:
    raw = get_json(s3, bucket, key)
    if not isinstance(raw, dict):
        raise InputError(f"{key}: expected a JSON object")
    fields = {}
    for name in ("n_users", "n_items", "feature_dim"):
        value = raw.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"{key}: field {name!r} must be a positive integer, got {value!r}")
        fields[name] = value
    if fields["feature_dim"] != fields["n_users"] + fields["n_items"]:
        raise InputError(
            f"{key}: feature_dim {fields['feature_dim']} != n_users {fields['n_users']} + "
            f"n_items {fields['n_items']}"
        )
    files = raw.get("files")
    if not isinstance(files, dict):
        raise InputError(f"{key}: field 'files' must be an object")
    return Manifest(key=key, run_id=str(raw.get("run_id", "")), files=files, **fields)


def load_id_list(s3: Any, bucket: str, key: str, *, expected: int) -> list[str]:
    ids = get_json(s3, bucket, key)
    if not isinstance(ids, list) or len(ids) != expected:
        got = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise InputError(f"{key}: expected a JSON array of {expected} ids, got {got}")
    return [str(i) for i in ids]


def load_popularity(s3: Any, bucket: str, key: str, *, n_items: int) -> np.ndarray:
    try:
        pop = np.load(io.BytesIO(get_bytes(s3, bucket, key)), allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{key}: not a .npy array ({exc})") from None
    if pop.shape != (n_items,):
        raise InputError(f"{key}: shape {pop.shape}, expected ({n_items},)")
    return pop.astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class QueryPart:
    index: int
    key: str
    first_user: int
    n_users: int


@dataclass(frozen=True, kw_only=True)
class QueriesManifest:
    key: str
    parts: list[QueryPart]
    k: int
    n_items: int
    n_users: int


def load_queries_manifest(s3: Any, bucket: str, key: str) -> QueriesManifest:
    raw = get_json(s3, bucket, key)
    try:
        parts = [
            QueryPart(index=i, key=str(p["key"]), first_user=int(p["first_user"]), n_users=int(p["n_users"]))
            for i, p in enumerate(raw["parts"])
        ]
        qm = QueriesManifest(
            key=key, parts=parts, k=int(raw["k"]), n_items=int(raw["n_items"]), n_users=int(raw["n_users"])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{key}: malformed queries manifest ({exc!r})") from None
    expected = 0
    for p in parts:
        if p.first_user != expected:
            raise InputError(f"{key}: part {p.index} starts at user {p.first_user}, expected {expected}")
        expected += p.n_users
    if expected != qm.n_users:
        raise InputError(f"{key}: parts hold {expected} users, manifest says n_users={qm.n_users}")
    return qm


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def transform_output_keys(
    s3: Any, transform_output_s3_uri: str, qm: QueriesManifest
) -> tuple[str, list[str]]:
    """The `.out` key of every query part, in part order.

    SageMaker names each output `<input name>.out` under the output path; how much of the input key
    it keeps depends on the input prefix, so match on the file name rather than rebuild the key.
    """
    bucket, prefix = parse_s3_uri(transform_output_s3_uri, field="transform_output_s3_uri")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    by_name: dict[str, str] = {}
    for key in list_keys(s3, bucket, prefix):
        by_name.setdefault(posixpath.basename(key), key)
    keys = []
    for part in qm.parts:
        name = posixpath.basename(part.key) + ".out"
        if name not in by_name:
            raise InputError(f"{transform_output_s3_uri}: no {name} for query part {part.key}")
        keys.append(by_name[name])
    return bucket, keys


def iter_lines(s3: Any, bucket: str, key: str) -> Iterator[bytes]:
    """Stream an object line by line (transform outputs can be larger than Lambda memory)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    yield from body.iter_lines(chunk_size=1 << 20)  # botocore's default 1 KB chunks cost a call per line


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
        raise InputError(f"STEP_CONFIG is not valid JSON ({exc})") from None
    return config_from_dict(cls, data, where="STEP_CONFIG")


def config_from_dict(cls: type, data: Any, *, where: str) -> Any:
    """Typed, validated construction of a keyword-only config dataclass from a JSON object."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{where}.{name}")
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj


def _coerce(value: Any, hint: Any, where: str) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(hint) is dict:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return {str(k): v for k, v in value.items()}
    else:
        return value
    raise InputError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
