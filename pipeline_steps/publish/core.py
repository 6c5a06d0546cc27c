"""Publish: transform output -> each user's top x in DynamoDB under this run, then the pointer flip.

Event (docs/contracts.md): {"run_id", "manifest_key", "queries_manifest_key", "transform_output_s3_uri"}
[+ "part" for `publish_part`]. `publish_run` = every part, then `finalize`; a Distributed Map calls
`publish_part` once per query part and `finalize` once after all of them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.common.events import RunResultsEvent
from pipeline_steps.common.items import encode_items
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.ranking import iter_run_part
from pipeline_steps.common.runio import InputError, RunInputs, get_json, load_inputs, load_popularity
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
    user_id: str, run_id: str, item_ids: list[str], scores: np.ndarray, expires: int
) -> tuple[dict, int]:
    key = table.user_key(user_id, run_id)
    if len(key["pk"]["S"].encode("utf-8")) > table.MAX_KEY_BYTES:
        raise InputError(f"user id {user_id[:40]!r}... is longer than DynamoDB's key limit")
    text, kept = encode_items(item_ids, scores)
    item = {**key, "items": {"S": text}, "expires_at": {"N": str(expires)}}
    return item, kept


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
) -> dict:
    """Write the top x of every user of one query part (idempotent: same keys, same content).

    `max_seconds` (default `config.max_seconds`) bounds the writes; `publish_run` passes what is
    left of one budget shared by all parts, so one invocation stays within the Lambda timeout.
    """
    now = time.time() if now is None else now
    if not 0 <= part < len(inputs.queries.parts):
        raise InputError(f"part {part} out of range: the queries manifest has {len(inputs.queries.parts)}")
    exp = expires_at(config, now)
    versioning.begin_run(
        dynamodb,
        table_name,
        inputs.run_id,
        n_parts=len(inputs.queries.parts),
        expires_at=exp,
        now=run_started_at(s3, inputs),
    )
    writer = BatchWriter(
        dynamodb,
        table_name,
        threads=config.writer_threads,
        max_seconds=config.max_seconds if max_seconds is None else max_seconds,
        base_delay=config.base_backoff_seconds,
        max_delay=config.max_backoff_seconds,
        **(writer_options or {}),
    )
    written = short = truncated = 0
    try:
        for u, item_idx, scores in iter_run_part(s3, inputs, part, metric=config.index_metric, x=config.x):
            ids = [inputs.items[i] for i in item_idx]
            item, kept = user_item(inputs.users[u], inputs.run_id, ids, scores, exp)
            writer.put(item)
            written += 1
            short += item_idx.size < config.x
            truncated += kept < item_idx.size
    except BaseException:
        writer.abort()
        raise
    stats = writer.close()
    versioning.mark_part_done(dynamodb, table_name, inputs.run_id, part=part, users=written)
    return {
        "part": part,
        "users_written": written,
        "users_short": short,  # fewer than x unseen items among the k neighbours
        "users_truncated": truncated,  # list cut to fit the item size budget (very long ids)
        "requests": stats.requests,
        "throttled_requests": stats.throttled_requests,
        "unprocessed_items": stats.unprocessed_items,
    }


def fallback_item(s3: S3Client, inputs: RunInputs, config: PublishConfig, expires: int) -> dict:
    """Most popular items of the train split, for users the model does not know."""
    pop = load_popularity(
        s3, inputs.bucket, inputs.manifest.file_key("popularity"), n_items=inputs.manifest.n_items
    )
    size = config.fallback_size or config.x
    order = np.lexsort((np.arange(pop.size), -pop))[:size]  # most popular first, ties by item index
    text, _ = encode_items([inputs.items[i] for i in order], pop[order].astype(float))
    return {**table.fallback_key(inputs.run_id), "items": {"S": text}, "expires_at": {"N": str(expires)}}


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
) -> dict:
    """Write the fallback item, then flip the pointer to this run (refused unless every part is done)."""
    now = time.time() if now is None else now
    dynamodb.put_item(TableName=table_name, Item=fallback_item(s3, inputs, config, expires_at(config, now)))
    return versioning.flip_pointer(
        dynamodb, table_name, inputs.run_id, metrics=model_metrics(s3, inputs.bucket, inputs.run_id), now=now
    )


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
    deadline = time.monotonic() + config.max_seconds
    parts = []
    for p in range(len(inputs.queries.parts)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise PublishTimeoutError(
                f"publish of run {inputs.run_id} used its {config.max_seconds:.0f} s before part {p}; "
                "the previous run stays current, re-run the step to complete this run"
            )
        parts.append(
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
            )
        )
    flipped = finalize(s3=s3, dynamodb=dynamodb, table_name=table_name, inputs=inputs, config=config, now=now)
    return {
        "run_id": inputs.run_id,
        "users_written": sum(p["users_written"] for p in parts),
        "pointer": flipped["run_id"],
        "previous_run_id": flipped["previous_run_id"],
        "users_short": sum(p["users_short"] for p in parts),
        "users_truncated": sum(p["users_truncated"] for p in parts),
        "requests": sum(p["requests"] for p in parts),
    }
