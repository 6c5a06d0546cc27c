"""Publish: transform output -> each user's top x (+ read_extra) and each item's related items in
DynamoDB under this run, then the pointer flip.

Business filters (common/filters.py) are applied before the cut: globally excluded items and a
user's own exclusions never appear; a list the model cannot fill is topped up from the filtered
popularity order and flagged (`filled`: how many tail entries are fill).

Event (docs/contracts.md): {"run_id", "manifest_key", "queries_manifest_key", "transform_output_s3_uri"}
[+ "first_part", "last_part" for a Map child]. `publish_run` = every part, then `finalize`; a
Distributed Map child calls `publish_parts` on its range of query parts (repackage's publish batches,
common/batches.py) and `finalize` runs once after all of them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.common.events import RunResultsEvent
from pipeline_steps.common.filters import Filters, fill, load_filters, popularity_order
from pipeline_steps.common.items import encode_items
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.ranking import iter_related_run_part, iter_run_part
from pipeline_steps.common.runio import (
    InputError,
    RunInputs,
    UserExclusions,
    empty_csr,
    get_json,
    load_inputs,
    load_popularity,
)
from pipeline_steps.publish import versioning
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.publish.writer import BatchWriter, PublishTimeoutError

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client


def run_started_at(s3: S3Client, inputs: RunInputs) -> float:
    """When this run's data was prepared: its manifest's LastModified (epoch seconds).

    It orders runs by age for finalize's late-finisher check. The publish time would not: a redriven
    older execution publishes after a newer run and must still count as the older one.
    """
    head = s3.head_object(Bucket=inputs.bucket, Key=inputs.manifest.key)
    return head["LastModified"].timestamp()


def expires_at(config: PublishConfig, now: float) -> int:
    return int(now + config.ttl_days * 86_400)


def user_item(
    user_id: str,
    run_id: str,
    item_ids: list[str],
    scores: np.ndarray,
    expires: int,
    *,
    cold_items: np.ndarray | None = None,
    cold: bool = False,
) -> tuple[dict, int]:
    """`u#<user_id>, <run_id>`; `cold_items` marks the list's cold items, `cold` the user (decision
    0018: a cold user's list comes from their feature query, not the popularity fallback)."""
    key = table.user_key(user_id, run_id)
    return _list_item(key, f"user id {user_id[:40]!r}", item_ids, scores, expires, cold_items, cold)


def related_item(
    item_id: str,
    run_id: str,
    item_ids: list[str],
    scores: np.ndarray,
    expires: int,
    *,
    cold_items: np.ndarray | None = None,
    cold: bool = False,
) -> dict:
    """`i#<item_id>, <run_id>`: the item's related items, same `items` encoding and TTL as users'."""
    key = table.related_key(item_id, run_id)
    item, _ = _list_item(key, f"item id {item_id[:40]!r}", item_ids, scores, expires, cold_items, cold)
    return item


def _list_item(
    key: dict,
    named: str,
    item_ids: list[str],
    scores: np.ndarray,
    expires: int,
    cold_items: np.ndarray | None,
    cold: bool,
) -> tuple[dict, int]:
    """One list's DynamoDB item (user or related): the key checked against DynamoDB's key limit,
    the encoded `items`, the TTL and the cold flag; with the number of entries kept."""
    if len(key["pk"]["S"].encode("utf-8")) > table.MAX_KEY_BYTES:
        raise InputError(f"{named}... is longer than DynamoDB's key limit")
    text, kept = encode_items(item_ids, scores, cold_items)
    item = {**key, "items": {"S": text}, "expires_at": {"N": str(expires)}}
    if cold:
        item["cold"] = {"BOOL": True}
    return item, kept


def cold_marks(item_idx: np.ndarray, first_cold: int, n_items: int) -> np.ndarray | None:
    """Per entry, whether the item is cold (the tail [first_cold, n_items) of the item map); None when
    the run has no cold item (the `items` string is then as before cold ids)."""
    return None if first_cold >= n_items else item_idx >= first_cold


@dataclass(frozen=True, kw_only=True)
class RunFilters:
    """The run's business filters and the filtered popularity order (fills short lists)."""

    filters: Filters
    order: np.ndarray  # item indices, most popular first, globally excluded items left out
    popularity: np.ndarray


def load_run_filters(s3: S3Client, inputs: RunInputs, config: PublishConfig) -> RunFilters:
    """Read and check the filter objects before anything is written (a bad file changes nothing).

    A child's own users' exclusions come with its slice (common/slices.py), read by repackage from
    the same object: a slice read from another object than the config names is an error.
    """
    own = inputs.user_exclusions
    if own is not None and own.key is not None and own.key != config.filter_user_exclusions_key:
        raise InputError(
            f"{own.source}: user exclusions read from {own.key!r}, but filter_user_exclusions_key is "
            f"{config.filter_user_exclusions_key!r}: re-run the pipeline from repackage"
        )
    filters = load_filters(
        s3,
        inputs.bucket,
        config,
        users=inputs.users,
        items=inputs.items,
        user_excluded=None if own is None else own.rows,
    )
    pop = load_popularity(
        s3, inputs.bucket, inputs.manifest.file_key("popularity"), n_items=inputs.manifest.n_items
    )
    return RunFilters(filters=filters, order=popularity_order(pop, filters.excluded), popularity=pop)


def filled(
    u: int, item_idx: np.ndarray, scores: np.ndarray, inputs: RunInputs, run: RunFilters, length: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Top up a short list from the filtered popularity order (never seen or excluded items).

    Filled entries get the list's last model score (0.0 for an empty list), so the list stays
    best first; the item's `filled` attribute says how many entries at the tail are fill.
    """
    extra = fill(item_idx, length, run.order, run.filters.user_drop(u, inputs.seen.row(u)))
    if not extra.size:
        return item_idx, scores, 0
    score = float(scores[-1]) if scores.size else 0.0
    return (
        np.concatenate([item_idx, extra]),
        np.concatenate([scores, np.full(extra.size, score)]),
        int(extra.size),
    )


def _writer(
    dynamodb: DynamoDBClient,
    table_name: str,
    config: PublishConfig,
    max_seconds: float | None,
    options: dict | None,
) -> BatchWriter:
    return BatchWriter(
        dynamodb,
        table_name,
        threads=config.writer_threads,
        max_seconds=config.max_seconds if max_seconds is None else max_seconds,
        base_delay=config.base_backoff_seconds,
        max_delay=config.max_backoff_seconds,
        **(options or {}),
    )


def n_parts(inputs: RunInputs) -> int:
    """User parts, then item-query parts: the order S3 lists their outputs in (decision 0012)."""
    return len(inputs.queries.parts) + len(inputs.related_out_keys)


def publish_part(
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    table_name: str,
    inputs: RunInputs,
    part: int,
    config: PublishConfig,
    now: float | None = None,
    writer_options: dict | None = None,
    max_seconds: float | None = None,
    run_filters: RunFilters | None = None,
) -> dict:
    """Write the lists of one part (idempotent: same keys, same content).

    Parts 0 .. P-1 are the user query parts (each user's top x + read_extra); parts P .. are the
    item-query parts (each item's related items). `max_seconds` (default `config.max_seconds`)
    bounds the writes; `publish_run` passes what is left of one budget shared by all parts, so one
    invocation stays within the Lambda timeout.
    """
    now = time.time() if now is None else now
    if not 0 <= part < n_parts(inputs):
        raise InputError(f"part {part} out of range: the queries manifest has {n_parts(inputs)}")
    run = run_filters or load_run_filters(s3, inputs, config)
    exp = expires_at(config, now)
    versioning.begin_run(
        dynamodb,
        table_name,
        inputs.run_id,
        n_parts=n_parts(inputs),
        expires_at=exp,
        now=run_started_at(s3, inputs),
    )
    writer = _writer(dynamodb, table_name, config, max_seconds, writer_options)
    write = _write_related if part >= len(inputs.queries.parts) else _write_users
    try:
        counts = write(s3, inputs, part, config, run, exp, writer)
    except BaseException:
        writer.abort()
        raise
    stats = writer.close()
    related = counts.pop("related_written", None)
    versioning.mark_part_done(
        dynamodb,
        table_name,
        inputs.run_id,
        part=part,
        users=counts["users_written"],
        related_items=related,
        users_filled=counts.get("users_filled", 0),
    )
    return {
        "part": part,
        **counts,
        "related_written": related or 0,
        "requests": stats.requests,
        "throttled_requests": stats.throttled_requests,
        "unprocessed_items": stats.unprocessed_items,
    }


def _write_users(
    s3: S3Client,
    inputs: RunInputs,
    part: int,
    config: PublishConfig,
    run: RunFilters,
    exp: int,
    writer: BatchWriter,
) -> dict[str, int]:
    written = short = truncated = users_filled = 0
    first_cold_user = inputs.manifest.first_cold("user")
    first_cold_item, n_items = inputs.manifest.first_cold("item"), inputs.manifest.n_items
    rows = iter_run_part(s3, inputs, part, metric=config.index_metric, x=config.stored, filters=run.filters)
    for u, model_idx, model_scores in rows:
        item_idx, scores, n_filled = filled(u, model_idx, model_scores, inputs, run, config.stored)
        ids = [inputs.items[i] for i in item_idx]
        item, kept = user_item(
            inputs.users[u],
            inputs.run_id,
            ids,
            scores,
            exp,
            cold_items=cold_marks(item_idx, first_cold_item, n_items),
            cold=u >= first_cold_user,
        )
        if n_filled:
            item["filled"] = {"N": str(n_filled)}
        writer.put(item)
        written += 1
        short += model_idx.size < config.x
        users_filled += n_filled > 0
        truncated += kept < item_idx.size
    return {
        "users_written": written,
        "users_short": short,  # fewer than x items from the model after seen items and filters
        "users_filled": users_filled,  # list topped up from the filtered popularity order
        "users_truncated": truncated,  # list cut to fit the item size budget (very long ids)
    }


def _write_related(
    s3: S3Client,
    inputs: RunInputs,
    part: int,
    config: PublishConfig,
    run: RunFilters,
    exp: int,
    writer: BatchWriter,
) -> dict[str, int]:
    written = short = 0
    related_part = part - len(inputs.queries.parts)
    rows = iter_related_run_part(
        s3,
        inputs,
        related_part,
        metric=config.index_metric,
        x=config.related_x,
        excluded=run.filters.excluded,
    )
    first_cold_item, n_items = inputs.manifest.first_cold("item"), inputs.manifest.n_items
    for i, item_idx, scores in rows:
        ids = [inputs.items[j] for j in item_idx]
        marks = cold_marks(item_idx, first_cold_item, n_items)
        writer.put(
            related_item(
                inputs.items[i], inputs.run_id, ids, scores, exp, cold_items=marks, cold=i >= first_cold_item
            )
        )
        written += 1
        short += item_idx.size < config.related_x
    return {"users_written": 0, "related_written": written, "related_short": short}


def fallback_item(
    s3: S3Client, inputs: RunInputs, config: PublishConfig, expires: int, run: RunFilters | None = None
) -> dict:
    """Most popular items of the train split (filtered), for users the model does not know."""
    run = run or load_run_filters(s3, inputs, config)
    size = config.fallback_size or config.stored
    order = run.order[:size]  # most popular first, ties by item index, filtered items left out
    text, _ = encode_items(
        [inputs.items[i] for i in order],
        run.popularity[order].astype(float),
        cold_marks(order, inputs.manifest.first_cold("item"), inputs.manifest.n_items),
    )
    return {**table.fallback_key(inputs.run_id), "items": {"S": text}, "expires_at": {"N": str(expires)}}


def finalize_inputs(s3: S3Client, bucket: str, event: dict | RunResultsEvent) -> RunInputs:
    """What `finalize` needs when it runs alone (the Map's `PublishFinalize`): the manifests and the
    items; not the users, `seen` nor the per-user exclusions (the fallback is the same for everyone)."""
    inputs = load_inputs(s3, bucket, event, with_users=False, with_seen=False)
    return dataclasses.replace(inputs, user_exclusions=UserExclusions(key=None, rows=empty_csr()))


def model_metrics(s3: S3Client, bucket: str, run_id: str) -> dict[str, float]:
    """The model's headline metrics from evaluate's output, for the pointer (empty if not evaluated)."""
    key = RunLayout(run_id).metrics
    try:
        doc = get_json(s3, bucket, key)
    except InputError:
        return {}
    model = doc.get("model", {}) if isinstance(doc, dict) else {}
    return {k: float(v) for k, v in model.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def finalize(
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    table_name: str,
    inputs: RunInputs,
    config: PublishConfig,
    now: float | None = None,
    run_filters: RunFilters | None = None,
) -> dict:
    """Write the fallback item, then flip the pointer to this run (refused unless every part is done)."""
    now = time.time() if now is None else now
    item = fallback_item(s3, inputs, config, expires_at(config, now), run_filters)
    dynamodb.put_item(TableName=table_name, Item=item)
    return versioning.flip_pointer(
        dynamodb,
        table_name,
        inputs.run_id,
        metrics=model_metrics(s3, inputs.bucket, inputs.run_id),
        now=now,
        x=config.x,
    )


def publish_parts(
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    table_name: str,
    inputs: RunInputs,
    parts: range,
    config: PublishConfig,
    now: float | None = None,
    writer_options: dict | None = None,
    run_filters: RunFilters | None = None,
) -> list[dict]:
    """`publish_part` for each part of a contiguous range, in order, sharing one `config.max_seconds`
    budget (one invocation stays within the Lambda timeout): `publish_run` passes every part, a Map
    child its range (decision 0015 "Publish fan-out in batches"). Each part is marked done as it is
    written, so a retried child rewrites the same items and `finalize` sees every part."""
    run = run_filters or load_run_filters(s3, inputs, config)  # before any write
    deadline = time.monotonic() + config.max_seconds
    results = []
    for p in parts:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PublishTimeoutError(
                f"publish of run {inputs.run_id} used its {config.max_seconds:.0f} s before part {p}; "
                "the previous run stays current, re-run the step to complete this run"
            )
        results.append(
            publish_part(
                s3=s3,
                dynamodb=dynamodb,
                table_name=table_name,
                inputs=inputs,
                part=p,
                config=config,
                now=now,
                writer_options=writer_options,
                max_seconds=left,
                run_filters=run,
            )
        )
    return results


def publish_run(
    *,
    s3: S3Client,
    dynamodb: DynamoDBClient,
    bucket: str,
    table_name: str,
    event: dict | RunResultsEvent,
    config: PublishConfig,
    now: float | None = None,
    writer_options: dict | None = None,
) -> dict:
    """Every part, then the flip: the default (non-Distributed-Map) state machine path."""
    inputs = load_inputs(s3, bucket, event)
    run = load_run_filters(s3, inputs, config)  # before any write: a bad filter file changes nothing
    parts = publish_parts(
        s3=s3,
        dynamodb=dynamodb,
        table_name=table_name,
        inputs=inputs,
        parts=range(n_parts(inputs)),
        config=config,
        now=now,
        writer_options=writer_options,
        run_filters=run,
    )
    flipped = finalize(
        s3=s3,
        dynamodb=dynamodb,
        table_name=table_name,
        inputs=inputs,
        config=config,
        now=now,
        run_filters=run,
    )
    return {
        "run_id": inputs.run_id,
        "users_written": sum(p["users_written"] for p in parts),
        "pointer": flipped["run_id"],
        "previous_run_id": flipped["previous_run_id"],
        "related_written": flipped["related_written"],
        **{
            name: sum(p.get(name, 0) for p in parts)
            for name in ("users_short", "users_filled", "users_truncated", "related_short")
        },
        "filters": run.filters.counts,
        "requests": sum(p["requests"] for p in parts),
    }
