"""Versioned publish on one DynamoDB table: run records, the `current` pointer, rollback.

Items of run R live under sort key R. Readers follow `pk=pointer, sk=current`, which is flipped in
one transaction with the run record's `complete` status, conditional on the pointer not having moved
since it was read, so concurrent publishers or rollbacks cannot silently overwrite each other.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions

from pipeline_steps.common.table import (  # noqa: F401  list_runs: the status CLI reads it here
    POINTER_KEY,
    list_runs,
    read_pointer,
    read_run,
    run_key,
)

# A run must outlive a rollback to it by at least this long, or readers would find expired items.
MIN_REMAINING_TTL_S = 86_400


class PublishStateError(RuntimeError):
    """The table is not in a state that allows this publish/rollback (the message says why)."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_attr_map(values: dict[str, float]) -> dict:
    # DynamoDB numbers cannot be NaN/inf; a metric that is undefined (e.g. no holdout users) is left out.
    return {"M": {k: {"N": repr(float(v))} for k, v in values.items() if math.isfinite(float(v))}}


def begin_run(dynamodb: Any, table: str, run_id: str, *, n_parts: int, expires_at: int, now: float) -> None:
    """Create the run record as `writing` (a completed run keeps `complete`: re-runs are idempotent)."""
    dynamodb.update_item(
        TableName=table,
        Key=run_key(run_id),
        UpdateExpression=(
            "SET #s = if_not_exists(#s, :writing), started_at = if_not_exists(started_at, :now), "
            "n_parts = :n, part_users = if_not_exists(part_users, :empty), "
            "part_related = if_not_exists(part_related, :empty), "
            "part_filled = if_not_exists(part_filled, :empty), expires_at = :exp"
        ),
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":writing": {"S": "writing"},
            ":now": {"S": iso(now)},
            ":n": {"N": str(n_parts)},
            ":empty": {"M": {}},
            ":exp": {"N": str(expires_at)},
        },
    )


def mark_part_done(
    dynamodb: Any,
    table: str,
    run_id: str,
    *,
    part: int,
    users: int,
    related_items: int | None = None,
    users_filled: int = 0,
) -> None:
    """Record a written part: `part_users.<n>` (users), `part_filled.<n>` (users topped up from
    popularity) and, for an item-query part (users 0), `part_related.<n>` (related lists written)."""
    expression, condition = "SET part_users.#p = :u", "attribute_exists(part_users)"
    values = {":u": {"N": str(users)}}
    extra = {"part_filled": users_filled} if related_items is None else {"part_related": related_items}
    if users_filled or related_items is not None:  # records of older runs have neither map
        ((name, count),) = extra.items()
        expression += f", {name}.#p = :c"
        condition += f" AND attribute_exists({name})"
        values[":c"] = {"N": str(count)}
    dynamodb.update_item(
        TableName=table,
        Key=run_key(run_id),
        UpdateExpression=expression,
        ConditionExpression=condition,
        ExpressionAttributeNames={"#p": str(part)},
        ExpressionAttributeValues=values,
    )


def flip_pointer(
    dynamodb: Any,
    table: str,
    run_id: str,
    *,
    metrics: dict[str, float],
    now: float | None = None,
    x: int | None = None,
) -> dict:
    """Mark the run `complete` and point readers at it, atomically; only once every part is written.

    `x`: the list length readers return by default (stored lists hold x + read_extra items); it is
    written as the number attribute `x` on the run record and the pointer.
    """
    now = time.time() if now is None else now
    record = read_run(dynamodb, table, run_id)
    if record is None:
        raise PublishStateError(f"run {run_id!r} has no run record: publish its parts first")
    done = record.get("part_users", {})
    missing = [p for p in range(int(record.get("n_parts", 0))) if str(p) not in done]
    if missing:
        raise PublishStateError(f"run {run_id!r}: parts {missing[:20]} not written yet; pointer not moved")
    users_written = sum(int(v) for v in done.values())
    related_written = sum(int(v) for v in record.get("part_related", {}).values())
    users_filled = sum(int(v) for v in record.get("part_filled", {}).values())
    current = read_pointer(dynamodb, table)
    current_id = current.get("run_id") if current else None
    if current_id and current_id != run_id:
        # A late finisher (an older execution retried after a newer one published) must not
        # silently replace newer recommendations; going back is what `rollback` is for.
        newer = read_run(dynamodb, table, current_id) or {}
        if str(newer.get("started_at", "")) > str(record.get("started_at", "")):
            raise PublishStateError(
                f"run {current_id!r} (started {newer.get('started_at')}) is current and newer than "
                f"{run_id!r} (started {record.get('started_at')}); pointer not moved "
                "(use rollback to go back)"
            )
    # Re-finalizing the current run must not make it its own "previous".
    previous = (current or {}).get("previous_run_id") if current_id == run_id else current_id
    pointer = {
        **POINTER_KEY,
        "run_id": {"S": run_id},
        "published_at": {"S": iso(now)},
        "metrics": to_attr_map(metrics),
    }
    if previous:
        pointer["previous_run_id"] = {"S": previous}
    update = (
        "SET #s = :complete, published_at = :at, users_written = :u, related_written = :r, "
        "users_filled = :f, #m = :m"
    )
    values = {
        ":complete": {"S": "complete"},
        ":at": {"S": iso(now)},
        ":u": {"N": str(users_written)},
        ":r": {"N": str(related_written)},
        ":f": {"N": str(users_filled)},
        ":m": to_attr_map(metrics),
    }
    if x is not None:
        pointer["x"] = values[":x"] = {"N": str(x)}
        update += ", x = :x"
    _transact(
        dynamodb,
        table,
        run_update={
            "UpdateExpression": update,
            "ExpressionAttributeNames": {"#s": "status", "#m": "metrics"},
            "ExpressionAttributeValues": values,
            "ConditionExpression": "attribute_exists(pk)",
        },
        run_id=run_id,
        pointer=pointer,
        expected_current=current_id,
    )
    return {
        "run_id": run_id,
        "previous_run_id": previous,
        "users_written": users_written,
        "related_written": related_written,
        "users_filled": users_filled,
        "published_at": iso(now),
    }


def rollback(dynamodb: Any, table: str, *, to_run_id: str | None = None, now: float | None = None) -> dict:
    """Point readers back at `to_run_id` (default: the pointer's previous run); it must be complete."""
    now = time.time() if now is None else now
    current = read_pointer(dynamodb, table)
    if current is None:
        raise PublishStateError("nothing is published yet: there is no pointer to roll back")
    target = to_run_id or current.get("previous_run_id")
    if not target:
        raise PublishStateError(f"current run {current['run_id']!r} has no previous run; pass --to RUN_ID")
    if target == current["run_id"]:
        raise PublishStateError(f"run {target!r} is already current")
    record = read_run(dynamodb, table, target)
    if record is None or record.get("status") != "complete":
        status = "missing" if record is None else record.get("status")
        raise PublishStateError(
            f"cannot roll back to run {target!r}: its run record is {status}, not complete"
        )
    if int(record.get("expires_at", 0)) < now + MIN_REMAINING_TTL_S:
        raise PublishStateError(f"cannot roll back to run {target!r}: its items expire within a day (TTL)")
    pointer = {
        **POINTER_KEY,
        "run_id": {"S": target},
        "previous_run_id": {"S": current["run_id"]},
        "published_at": {"S": str(record.get("published_at", iso(now)))},
        "rolled_back_at": {"S": iso(now)},
        "metrics": to_attr_map(record.get("metrics") or {}),
    }
    if record.get("x") is not None:  # the rolled-back-to run's own x (readers return that many)
        pointer["x"] = {"N": str(int(record["x"]))}
    _transact(
        dynamodb, table, run_update=None, run_id=target, pointer=pointer, expected_current=current["run_id"]
    )
    return {"run_id": target, "previous_run_id": current["run_id"], "rolled_back_at": iso(now)}


def _transact(
    dynamodb: Any,
    table: str,
    *,
    run_update: dict | None,
    run_id: str,
    pointer: dict,
    expected_current: str | None,
) -> None:
    if expected_current is None:
        condition, values = "attribute_not_exists(pk)", None
    else:
        condition, values = "run_id = :expected", {":expected": {"S": expected_current}}
    put: dict = {"TableName": table, "Item": pointer, "ConditionExpression": condition}
    if values:
        put["ExpressionAttributeValues"] = values
    items: list[dict] = [{"Put": put}]
    if run_update is not None:
        items.append({"Update": {"TableName": table, "Key": run_key(run_id), **run_update}})
    else:
        # Rollback: the target must still be complete at the moment of the flip.
        items.append(
            {
                "ConditionCheck": {
                    "TableName": table,
                    "Key": run_key(run_id),
                    "ConditionExpression": "#s = :complete",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":complete": {"S": "complete"}},
                }
            }
        )
    try:
        dynamodb.transact_write_items(TransactItems=items)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            raise PublishStateError(
                f"pointer flip to {run_id!r} cancelled: the pointer moved since it was read (expected "
                f"{expected_current!r}) or the run record changed; nothing was changed, retry"
            ) from exc
        raise
