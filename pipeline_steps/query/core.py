"""The read path: a user's top x (`get_recommendations`) and an item's related items (`get_related`).

Cold ids (decision 0018): a cold user's result adds `"cold": true` (their list is personalised from
their features, not the fallback), and so does a cold item's related result; cold items in a list
carry `"cold": true`. Warm results are as before (no `cold` key).

Each call is one GetItem on `<u#user|i#item>, <run_id>`; the pointer (`pointer`, `current`) is read
once per `cache_ttl` seconds and per client. Unknown users get the run's popularity fallback, flagged
`fallback: true` (a second GetItem); unknown items raise `UnknownItemError`.

How many items: `x` defaults to the run's `x` attribute (pointer, or the run record of a pinned run)
and to the stored list's length when the run has none (runs published before the attribute
existed). Publish may store more than x per user (`x + read_extra`) so that a reader can drop
`exclude`d ids and still return x: excluded ids are dropped first, then the best x are kept. An
explicit `x` above the stored length is an input error, never silently shortened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pipeline_steps.common.items import decode_items
from pipeline_steps.common.limits import MAX_X
from pipeline_steps.common.table import (
    MAX_KEY_BYTES,
    POINTER_KEY,
    RELATED_PK_PREFIX,
    USER_PK_PREFIX,
    fallback_key,
    plain,
    related_key,
    run_key,
    user_key,
)
from pipeline_steps.query.metadata import ItemMetadata

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_dynamodb import DynamoDBClient

DEFAULT_POINTER_TTL_S = 30.0
MAX_EXCLUDE = 100  # ids per request; the list is filtered in memory, the bound keeps a request small
_cache: dict[tuple[str, int], tuple[float, dict[str, Any]]] = {}
_cache_lock = threading.Lock()


class NoPublishedRunError(LookupError):
    """The table has no current-run pointer (nothing published yet) or the requested run is missing or
    not complete."""


class QueryInputError(ValueError):
    """A malformed id or parameter (the API answers 400 with this message)."""


class UnknownItemError(LookupError):
    """No related items for this item in the run (the API answers 404)."""


def clear_pointer_cache() -> None:
    with _cache_lock:
        _cache.clear()


_default_client: DynamoDBClient | None = None


def _client(dynamodb: DynamoDBClient | None) -> DynamoDBClient:
    global _default_client
    if dynamodb is not None:
        return dynamodb
    if _default_client is None:
        import boto3  # lazily: importing this module must not need AWS configuration

        # One client per process, so the pointer cache (keyed by client) works across calls.
        _default_client = boto3.client("dynamodb")
    return _default_client


def _run_info(record: dict[str, Any], run_id: str) -> dict[str, Any]:
    x = record.get("x")
    return {
        "run_id": run_id,
        "published_at": record.get("published_at"),
        "x": int(x) if isinstance(x, int | float) and not isinstance(x, bool) else None,
    }


def current_run(dynamodb: DynamoDBClient, table_name: str, cache_ttl: float) -> dict[str, Any]:
    """{"run_id", "published_at", "x"} of the current pointer, cached `cache_ttl` seconds per client."""
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
    info = _run_info(pointer, pointer["run_id"])
    if cache_ttl > 0:
        with _cache_lock:
            _cache[key] = (now + cache_ttl, info)
    return info


def _pinned_run(dynamodb: DynamoDBClient, table_name: str, run_id: str) -> dict[str, Any]:
    record = plain(dynamodb.get_item(TableName=table_name, Key=run_key(run_id)).get("Item"))
    if record is None:
        raise NoPublishedRunError(f"table {table_name!r} has no run {run_id!r}")
    if record.get("status") != "complete":
        # A `writing` run is partial and has no fallback yet: its answers would be silently wrong.
        raise NoPublishedRunError(
            f"run {run_id!r} in table {table_name!r} is {record.get('status')!r}, not complete"
        )
    return _run_info(record, run_id)


def check_id(kind: str, value: object, prefix: str) -> str:
    """A user or item id as a key: a non-empty string whose key (prefix + id) fits DynamoDB's 2048 bytes."""
    if not isinstance(value, str) or not value:
        raise QueryInputError(f"{kind}: expected a non-empty string, got {value!r}")
    size = len((prefix + value).encode("utf-8", errors="surrogatepass"))
    if size > MAX_KEY_BYTES:
        # DynamoDB: "The maximum length of a partition key value is 2048 bytes" (Developer Guide,
        # "Service, account, and table quotas in Amazon DynamoDB", Partition key length).
        raise QueryInputError(
            f"{kind}: {size} bytes as a key ({prefix!r} + id), over DynamoDB's {MAX_KEY_BYTES}-byte "
            "partition key limit"
        )
    return value


def check_x(x: object) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int):
        raise QueryInputError(f"x: expected an integer, got {x!r}")
    if not 1 <= x <= MAX_X:
        raise QueryInputError(f"x: must be in 1..{MAX_X}, got {x}")
    return x


def check_exclude(exclude: Iterable[str]) -> frozenset[str]:
    ids = list(exclude)
    if len(ids) > MAX_EXCLUDE:
        raise QueryInputError(f"exclude: at most {MAX_EXCLUDE} ids, got {len(ids)}")
    for item_id in ids:
        check_id("exclude", item_id, RELATED_PK_PREFIX)
    return frozenset(ids)


def _select(items: list[dict[str, Any]], run: dict[str, Any], x: int | None) -> int:
    """The x to return: the request's, else the run's, else the stored length; an error above the stored."""
    stored = len(items)
    if x is not None and x > stored:
        raise QueryInputError(f"x: {x} is more than the {stored} items stored in run {run['run_id']!r}")
    if x is None:
        x = stored if run.get("x") is None else min(int(run["x"]), stored)
    return x


def _read(
    dynamodb: DynamoDBClient | None, table_name: str, run_id: str | None, cache_ttl: float
) -> tuple[DynamoDBClient, dict[str, Any]]:
    client = _client(dynamodb)
    if run_id is None:
        return client, current_run(client, table_name, cache_ttl)
    return client, _pinned_run(client, table_name, run_id)


def _top(
    items: list[dict[str, Any]], run: dict[str, Any], x: int | None, exclude: frozenset[str]
) -> tuple[list[dict[str, Any]], int]:
    n = _select(items, run, x)
    kept = [i for i in items if i["item_id"] not in exclude] if exclude else items
    return kept[:n], n


def get_recommendations(
    user_id: str,
    *,
    table_name: str,
    dynamodb: DynamoDBClient | None = None,
    run_id: str | None = None,
    x: int | None = None,
    exclude: Iterable[str] = (),
    cache_ttl: float = DEFAULT_POINTER_TTL_S,
    item_metadata: ItemMetadata | None = None,
) -> dict[str, Any]:
    """-> {"user_id", "items": [{"item_id", "score"}], "run_id", "published_at", "fallback", "x"}.

    `run_id` pins a run (e.g. to compare with the previous one); its run record replaces the pointer.
    `item_metadata` (query.metadata) adds its fields to the items it lists.
    Raises QueryInputError (bad id, x or exclude), NoPublishedRunError.
    """
    user_id = check_id("user_id", user_id, USER_PK_PREFIX)
    wanted, excluded = check_x(x), check_exclude(exclude)
    dynamodb, run = _read(dynamodb, table_name, run_id, cache_ttl)
    return enrich(read_user(dynamodb, table_name, run, user_id, wanted, excluded), item_metadata)


def enrich(result: dict[str, Any], item_metadata: ItemMetadata | None) -> dict[str, Any]:
    """A read's result with the metadata fields added to its items (unchanged without metadata)."""
    if item_metadata is None:
        return result
    return {**result, "items": item_metadata.enrich(result["items"])}


def read_user(
    dynamodb: DynamoDBClient,
    table_name: str,
    run: dict[str, Any],
    user_id: str,
    x: int | None,
    exclude: frozenset[str],
) -> dict[str, Any]:
    """`get_recommendations` once the inputs are checked and the run is known: one GetItem (two for
    an unknown user: the fallback)."""
    item = dynamodb.get_item(TableName=table_name, Key=user_key(user_id, run["run_id"])).get("Item")
    fallback = item is None
    if fallback:
        item = dynamodb.get_item(TableName=table_name, Key=fallback_key(run["run_id"])).get("Item")
    items, n = _top(decode_items(item["items"]["S"]) if item else [], run, x, exclude)
    out = {
        "user_id": user_id,
        "items": items,
        "fallback": fallback,
        "run_id": run["run_id"],
        "published_at": run["published_at"],
        "x": n,
    }
    if not fallback and _is_cold(item):
        out["cold"] = True  # a cold user: the list comes from their features (decision 0018)
    return out


def _is_cold(item: dict[str, Any] | None) -> bool:
    return bool(item and item.get("cold", {}).get("BOOL"))


def get_related(
    item_id: str,
    *,
    table_name: str,
    dynamodb: DynamoDBClient | None = None,
    run_id: str | None = None,
    x: int | None = None,
    exclude: Iterable[str] = (),
    cache_ttl: float = DEFAULT_POINTER_TTL_S,
    item_metadata: ItemMetadata | None = None,
) -> dict[str, Any]:
    """-> {"item_id", "items": [{"item_id", "score"}], "run_id", "published_at", "x"}.

    `item_metadata` as for `get_recommendations`. Raises UnknownItemError when the run has no
    related items for `item_id`, QueryInputError, NoPublishedRunError.
    """
    item_id = check_id("item_id", item_id, RELATED_PK_PREFIX)
    wanted, excluded = check_x(x), check_exclude(exclude)
    dynamodb, run = _read(dynamodb, table_name, run_id, cache_ttl)
    return enrich(read_related(dynamodb, table_name, run, item_id, wanted, excluded), item_metadata)


def read_related(
    dynamodb: DynamoDBClient,
    table_name: str,
    run: dict[str, Any],
    item_id: str,
    x: int | None,
    exclude: frozenset[str],
) -> dict[str, Any]:
    """`get_related` once the inputs are checked and the run is known: one GetItem."""
    item = dynamodb.get_item(TableName=table_name, Key=related_key(item_id, run["run_id"])).get("Item")
    if item is None:
        raise UnknownItemError(f"item {item_id!r} has no related items in run {run['run_id']!r}")
    items, n = _top(decode_items(item["items"]["S"]), run, x, exclude)
    out = {
        "item_id": item_id,
        "items": items,
        "run_id": run["run_id"],
        "published_at": run["published_at"],
        "x": n,
    }
    if _is_cold(item):
        out["cold"] = True  # a cold item: its related items come from its features
    return out
