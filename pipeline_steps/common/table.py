"""The DynamoDB key scheme (docs/contracts.md "DynamoDB table"): publish writes, query and evaluate read.

| item | pk | sk |
|---|---|---|
| current pointer | `pointer` | `current` |
| run record | `run` | `<run_id>` |
| a user's top x | `u#<user_id>` | `<run_id>` |
| popularity fallback | `fallback` | `<run_id>` |
| an item's related items | `i#<item_id>` | `<run_id>` |
"""

from __future__ import annotations

from typing import Any

POINTER_KEY = {"pk": {"S": "pointer"}, "sk": {"S": "current"}}
RUN_PK = "run"
USER_PK_PREFIX = "u#"
FALLBACK_PK = "fallback"
RELATED_PK_PREFIX = "i#"
MAX_KEY_BYTES = 2048  # DynamoDB partition key limit, on USER_PK_PREFIX + user id (and i# + item id)


def run_key(run_id: str) -> dict:
    return {"pk": {"S": RUN_PK}, "sk": {"S": run_id}}


def user_pk(user_id: str) -> str:
    return USER_PK_PREFIX + user_id


def user_key(user_id: str, run_id: str) -> dict:
    return {"pk": {"S": user_pk(user_id)}, "sk": {"S": run_id}}


def related_pk(item_id: str) -> str:
    return RELATED_PK_PREFIX + item_id


def related_key(item_id: str, run_id: str) -> dict:
    return {"pk": {"S": related_pk(item_id)}, "sk": {"S": run_id}}


def fallback_key(run_id: str) -> dict:
    return {"pk": {"S": FALLBACK_PK}, "sk": {"S": run_id}}


def from_attr(value: dict) -> Any:
    """Plain Python value of a DynamoDB attribute (the few types this table uses)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        number = float(raw)
        return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number
    if kind == "M":
        return {k: from_attr(v) for k, v in raw.items()}
    if kind == "L":
        return [from_attr(v) for v in raw]
    if kind == "BOOL":
        return raw
    if kind == "NULL":
        return None
    raise ValueError(f"unsupported attribute type {kind}")


def plain(item: dict | None) -> dict | None:
    return None if item is None else {k: from_attr(v) for k, v in item.items()}


def read_pointer(dynamodb: Any, table: str, *, consistent: bool = True) -> dict | None:
    item = dynamodb.get_item(TableName=table, Key=POINTER_KEY, ConsistentRead=consistent).get("Item")
    return plain(item)


def read_run(dynamodb: Any, table: str, run_id: str) -> dict | None:
    return plain(dynamodb.get_item(TableName=table, Key=run_key(run_id), ConsistentRead=True).get("Item"))


def list_runs(dynamodb: Any, table: str) -> list[dict]:
    """Every run record (`pk=run`), as plain dicts, in sort key order (Query pages followed)."""
    runs: list[dict] = []
    kwargs: dict = {
        "TableName": table,
        "KeyConditionExpression": "pk = :run",
        "ExpressionAttributeValues": {":run": {"S": RUN_PK}},
    }
    while True:
        page = dynamodb.query(**kwargs)
        runs.extend(plain(i) or {} for i in page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return runs
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
