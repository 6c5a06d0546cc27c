"""Run inputs shared by repackage, evaluate and publish: S3 objects of one run (docs/contracts.md).

Everything here is numpy + stdlib + a boto3 S3 client passed in, so it runs in the numpy-only Lambda.
"""

from __future__ import annotations

import io
import json
import operator
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common.errors import InputError
from pipeline_steps.common.events import RunResultsEvent
from pipeline_steps.common.manifest import Manifest

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client


def parse_s3_uri(uri: str, *, field: str = "s3 uri") -> tuple[str, str]:
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InputError(f"{field}: expected s3://bucket/key, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"{field}: no bucket in {uri!r}")
    return bucket, key


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def get_bytes(s3: S3Client, bucket: str, key: str) -> bytes:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise InputError(f"s3://{bucket}/{key}: object does not exist") from None


def get_json(s3: S3Client, bucket: str, key: str) -> Any:
    data = get_bytes(s3, bucket, key)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InputError(f"s3://{bucket}/{key}: not valid JSON ({exc})") from None


def put_json(s3: S3Client, bucket: str, key: str, obj: Any) -> None:
    body = json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


@dataclass(frozen=True, kw_only=True)
class Csr:
    """Row-compressed (user -> item indices) matrix as written by prepare: seen.npz / holdout.npz.

    `first_row`: the user index of row 0 (a publish child holds only its users' rows, common/slices.py);
    `row(u)` of a user outside [first_row, first_row + rows) is an error, never another user's row.
    """

    indptr: np.ndarray  # (rows + 1,) int64
    indices: np.ndarray  # int32 item indices
    first_row: int = 0

    def row(self, u: int) -> np.ndarray:
        r = u - self.first_row
        if not 0 <= r < self.indptr.size - 1:
            raise InputError(
                f"user index {u} is outside the rows held here "
                f"({self.first_row}..{self.first_row + self.indptr.size - 2})"
            )
        return self.indices[self.indptr[r] : self.indptr[r + 1]]

    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def load_csr(data: bytes, *, name: str, n_users: int, n_items: int) -> Csr:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            indptr = np.asarray(z["indptr"], dtype=np.int64)
            indices = np.asarray(z["indices"], dtype=np.int32)
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{name}: expected an .npz with 'indptr' and 'indices' ({exc})") from None
    return checked_csr(indptr, indices, name=name, n_users=n_users, n_items=n_items)


def checked_csr(
    indptr: np.ndarray, indices: np.ndarray, *, name: str, n_users: int, n_items: int, first_row: int = 0
) -> Csr:
    """A Csr of `n_users` rows after the checks its readers rely on (errors name `name`)."""
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.size:
        raise InputError(f"{name}: indptr has shape {indptr.shape}, expected ({n_users + 1},) from 0 to nnz")
    if np.any(np.diff(indptr) < 0):
        raise InputError(f"{name}: indptr is not non-decreasing")
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise InputError(f"{name}: item index out of range [0, {n_items})")
    return Csr(indptr=indptr, indices=indices, first_row=first_row)


def load_manifest(s3: S3Client, bucket: str, key: str) -> Manifest:
    return Manifest.from_json(get_json(s3, bucket, key), key=key)


def load_id_list(s3: S3Client, bucket: str, key: str, *, expected: int) -> list[str]:
    ids = get_json(s3, bucket, key)
    if not isinstance(ids, list) or len(ids) != expected:
        got = len(ids) if isinstance(ids, list) else type(ids).__name__
        raise InputError(f"{key}: expected a JSON array of {expected} ids, got {got}")
    return [str(i) for i in ids]


def load_popularity(s3: S3Client, bucket: str, key: str, *, n_items: int) -> np.ndarray:
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
class RelatedPart:
    """An item-query part: items first_item .. first_item + n_items - 1 (related items)."""

    index: int
    key: str
    first_item: int
    n_items: int


@dataclass(frozen=True, kw_only=True)
class QueriesManifest:
    key: str
    parts: list[QueryPart]
    k: int
    n_items: int
    n_users: int
    related_parts: list[RelatedPart] = field(default_factory=list)  # none when related_x = 0
    related_x: int = 0


def load_queries_manifest(s3: S3Client, bucket: str, key: str) -> QueriesManifest:
    raw = get_json(s3, bucket, key)
    try:
        parts = [
            QueryPart(index=i, key=str(p["key"]), first_user=int(p["first_user"]), n_users=int(p["n_users"]))
            for i, p in enumerate(raw["parts"])
        ]
        related = [
            RelatedPart(
                index=i, key=str(p["key"]), first_item=int(p["first_item"]), n_items=int(p["n_items"])
            )
            for i, p in enumerate(raw.get("related_parts", []))
        ]
        qm = QueriesManifest(
            key=key,
            parts=parts,
            k=int(raw["k"]),
            n_items=int(raw["n_items"]),
            n_users=int(raw["n_users"]),
            related_parts=related,
            related_x=int(raw.get("related_x", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{key}: malformed queries manifest ({exc!r})") from None
    _check_contiguous(key, [(p.index, p.first_user, p.n_users) for p in parts], qm.n_users, "", "user")
    if related:
        rows = [(p.index, p.first_item, p.n_items) for p in related]
        _check_contiguous(key, rows, qm.n_items, "related ", "item")
    return qm


def _check_contiguous(key: str, parts: list[tuple[int, int, int]], total: int, kind: str, what: str) -> None:
    expected = 0
    for index, first, count in parts:
        if first != expected:
            raise InputError(f"{key}: {kind}part {index} starts at {what} {first}, expected {expected}")
        expected += count
    if expected != total:
        raise InputError(f"{key}: {kind}parts hold {expected} {what}s, manifest says n_{what}s={total}")


def list_keys(s3: S3Client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def transform_output_keys(
    s3: S3Client, transform_output_s3_uri: str, qm: QueriesManifest
) -> tuple[str, list[str], list[str]]:
    """The `.out` key of every query part and of every item-query part, in part order.

    SageMaker names each output `<input name>.out` under the output path; how much of the input key
    it keeps depends on the input prefix, so match on the file name rather than rebuild the key.
    """
    bucket, prefix = parse_s3_uri(transform_output_s3_uri, field="transform_output_s3_uri")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    by_name: dict[str, str] = {}
    for key in list_keys(s3, bucket, prefix):
        by_name.setdefault(posixpath.basename(key), key)

    def out_key(part_key: str) -> str:
        name = posixpath.basename(part_key) + ".out"
        if name not in by_name:
            raise InputError(f"{transform_output_s3_uri}: no {name} for query part {part_key}")
        return by_name[name]

    return bucket, [out_key(p.key) for p in qm.parts], [out_key(p.key) for p in qm.related_parts]


def iter_lines(s3: S3Client, bucket: str, key: str) -> Iterator[bytes]:
    """Stream an object line by line (transform outputs can be larger than Lambda memory)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    yield from body.iter_lines(chunk_size=1 << 20)  # botocore's default 1 KB chunks cost a call per line


class IdSlice(Sequence[str]):
    """The ids of users first .. first + len(ids) - 1, indexed by user index (a publish child's users,
    common/slices.py); an index outside them is an error, never another user's id."""

    def __init__(self, first: int, ids: list[str], *, where: str) -> None:
        self.first, self.ids, self.where = first, ids, where

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, u: int) -> str:  # type: ignore[override]
        r = operator.index(u) - self.first
        if not 0 <= r < len(self.ids):
            last = self.first + len(self.ids) - 1
            raise InputError(f"{self.where}: user index {u} is outside its users {self.first}..{last}")
        return self.ids[r]


@dataclass(frozen=True, kw_only=True)
class UserExclusions:
    """Per-user exclusions already read (a publish child's rows, common/slices.py), and the filter
    object they come from ("" = none configured when they were read)."""

    key: str | None  # None: no user is held (an item-query-only child), nothing to check
    rows: Csr
    source: str = ""  # where they were read (named in errors)


@dataclass(frozen=True, kw_only=True)
class RunInputs:
    run_id: str
    bucket: str
    manifest: Manifest
    queries: QueriesManifest
    out_keys: list[str]
    users: Sequence[str]  # by user index: every user, or a publish child's (IdSlice)
    items: list[str]
    seen: Csr  # every user's row, or a publish child's users' (Csr.first_row)
    related_out_keys: list[str] = field(default_factory=list)  # `.out` of each item-query part
    # a publish child's own users' exclusions (common/slices.py); None = read the filter object
    user_exclusions: UserExclusions | None = None


def empty_csr(first_row: int = 0, rows: int = 0) -> Csr:
    return Csr(
        indptr=np.zeros(rows + 1, dtype=np.int64), indices=np.zeros(0, dtype=np.int32), first_row=first_row
    )


def load_inputs(
    s3: S3Client,
    bucket: str,
    event: dict | RunResultsEvent,
    *,
    with_ids: bool = True,
    with_users: bool = True,
    with_seen: bool = True,
) -> RunInputs:
    """The run's manifests, `.out` keys and `seen`; `with_ids` False leaves `users`/`items` empty
    (evaluate works on indices: the ids are ~60 bytes each as Python strings, 0.6 GB at 10M users);
    `with_users` / `with_seen` False leave the users / `seen` empty (a publish child reads its own
    users' slice instead, common/slices.py; finalize needs neither)."""
    ev = RunResultsEvent.parse(event)
    run_id = ev.run_id
    manifest = load_manifest(s3, bucket, ev.manifest_key)
    queries = load_queries_manifest(s3, bucket, ev.queries_manifest_key)
    if (queries.n_users, queries.n_items) != (manifest.n_users, manifest.n_items):
        raise InputError(
            f"{queries.key}: {queries.n_users} users x {queries.n_items} items does not match "
            f"{manifest.key} ({manifest.n_users} x {manifest.n_items})"
        )
    tr_bucket, out_keys, related_out_keys = transform_output_keys(s3, ev.transform_output_s3_uri, queries)
    if tr_bucket != bucket:
        raise InputError(f"transform_output_s3_uri is in bucket {tr_bucket!r}, expected {bucket!r}")
    seen_key = manifest.file_key("seen")
    return RunInputs(
        run_id=run_id,
        bucket=bucket,
        manifest=manifest,
        queries=queries,
        out_keys=out_keys,
        related_out_keys=related_out_keys,
        users=load_id_list(s3, bucket, manifest.file_key("users"), expected=manifest.n_users)
        if with_ids and with_users
        else [],
        items=load_id_list(s3, bucket, manifest.file_key("items"), expected=manifest.n_items)
        if with_ids
        else [],
        seen=load_csr(
            s3.get_object(Bucket=bucket, Key=seen_key)["Body"].read(),
            name=seen_key,
            n_users=manifest.n_users,
            n_items=manifest.n_items,
        )
        if with_seen
        else empty_csr(),
    )
