"""`get_recommendations`: one GetItem for the pointer (cached briefly), one for the user.

Unknown users get the run's popularity fallback, flagged `fallback: true`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pipeline_steps.common.items import decode_items
from pipeline_steps.common.table import POINTER_KEY, fallback_key, plain, run_key, user_key

DEFAULT_POINTER_TTL_S = 30.0
_cache: dict[tuple[str, int], tuple[float, dict]] = {}
_cache_lock = threading.Lock()


class NoPublishedRunError(LookupError):
    """The table has no current-run pointer (nothing published yet) or the requested run is missing or
    not complete."""


def clear_pointer_cache() -> None:
    with _cache_lock:
        _cache.clear()


_default_client: Any = None


def _client(dynamodb: Any) -> Any:
    global _default_client
    if dynamodb is not None:
        return dynamodb
    if _default_client is None:
        import boto3  # lazily: importing this module must not need AWS configuration

        # One client per process, so the pointer cache (keyed by client) works across calls.
        _default_client = boto3.client("dynamodb")
    return _default_client


def _current_run(dynamodb: Any, table_name: str, cache_ttl: float) -> dict:
    # Keyed by client identity too, so two endpoints (e.g. tests, local + AWS) never share an entry.
    key = (table_name, id(dynamodb))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and hit[0] > now:
            return hit[1]
    pointer = plain(dynamodb.get_item(TableName=table_name, Key=POINTER_KEY).get("Item"))
    if pointer is None:
        raise NoPublishedRunError(f"table {table_name!r} has no current run: nothing is published yet")
    info = {"run_id": pointer["run_id"], "published_at": pointer.get("published_at")}
    if cache_ttl > 0:
        with _cache_lock:
            _cache[key] = (now + cache_ttl, info)
    return info


def get_recommendations(
    user_id: str,
    *,
    table_name: str,
    dynamodb: Any = None,
    run_id: str | None = None,
    cache_ttl: float = DEFAULT_POINTER_TTL_S,
) -> dict:
    """-> {"user_id", "items": [{"item_id", "score"}], "run_id", "published_at", "fallback": bool}.

    `run_id` pins a run (e.g. to compare with the previous one); its run record replaces the pointer.
    """
    dynamodb = _client(dynamodb)
    if run_id is None:
        run = _current_run(dynamodb, table_name, cache_ttl)
    else:
        record = plain(dynamodb.get_item(TableName=table_name, Key=run_key(run_id)).get("Item"))
        if record is None:
            raise NoPublishedRunError(f"table {table_name!r} has no run {run_id!r}")
        if record.get("status") != "complete":
            # A `writing` run is partial and has no fallback yet: its answers would be silently wrong.
            raise NoPublishedRunError(
                f"run {run_id!r} in table {table_name!r} is {record.get('status')!r}, not complete"
            )
        run = {"run_id": run_id, "published_at": record.get("published_at")}
    item = dynamodb.get_item(TableName=table_name, Key=user_key(str(user_id), run["run_id"])).get("Item")
    fallback = item is None
    if fallback:
        item = dynamodb.get_item(TableName=table_name, Key=fallback_key(run["run_id"])).get("Item")
    items = decode_items(item["items"]["S"]) if item else []
    return {"user_id": str(user_id), "items": items, "fallback": fallback, **run}
