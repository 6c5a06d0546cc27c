"""Where the embedded AWS's cost differs from AWS's by orders of magnitude, a cheaper equivalent.

`TransactWriteItems`: DynamoDB's cost is per action (at most 100 per call,
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html).
moto 5.2.5 keeps its rollback copy by deep-copying every table a transaction names, so one
two-action transaction on a table of a million items takes minutes (the publish pointer flip at
30M interactions did not answer within botocore's 60 s; docs/scale.md). `install` keeps moto's
transaction (its checks, conditions, errors and writes are unchanged) and replaces the table copy
by a copy of the items the actions name, restored on the same failures moto rolls back on (and
on any other error inside the call: a transaction is all or nothing on AWS). Pinned to moto 5.2.5,
like the adapter: it relies on that version's rollback copy being `copy.deepcopy` of the table.
Installed by the embedded AWS (`server.py`) and the benchmarks' moto servers; never removed (the
transactions it runs are moto's own).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import moto

if moto.__version__ != "5.2.5":
    raise ImportError(f"moto_fixes is written for moto 5.2.5's transactions, found {moto.__version__}")

_lock = threading.Lock()
_installed = False


def _action_key(backend: Any, entry: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(table name, key) of one transaction action, or None where moto will reject the action."""
    if len(entry) != 1:
        return None
    op_type, op = next(iter(entry.items()))
    table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
    if table is None:
        return None
    if op_type == "Put":
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        item = op.get("Item", {})
        if not all(name in item for name in names):
            return None
        return op["TableName"], {name: item[name] for name in names}
    key = op.get("Key")
    return (op["TableName"], key) if isinstance(key, dict) else None


def _snapshot(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[str, dict, Any]]:
    """(table, key, deep copy of the item or None) for every action moto will look at."""
    before = []
    for entry in transact_items:
        found = _action_key(backend, entry)
        if found is None:
            continue
        name, key = found
        try:
            item = backend.get_item(name, key)
        except Exception:  # a malformed key: moto raises its own error for it
            continue
        before.append((name, key, copy.deepcopy(item)))
    return before


def _restore(backend: Any, before: list[tuple[str, dict, Any]]) -> None:
    """Put every named item back as it was (reverse order: the first copy of a key wins)."""
    for name, key, item in reversed(before):
        if item is None:
            if backend.get_item(name, key) is not None:
                backend.delete_item(name, key)
        else:
            backend.put_item(name, item.to_json()["Attributes"])


def install() -> None:
    """Replace moto's `transact_write_items` rollback copy (idempotent; the process's backends)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb.models import DynamoDBBackend

        moto_transact = DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            before = _snapshot(self, transact_items)
            tables = {name for name, _, _ in before}
            for name in tables:
                # moto's rollback copy becomes the table itself (copy.deepcopy honours an
                # instance's __deepcopy__); the items copied above are the rollback instead.
                table = self.tables[name]
                table.__deepcopy__ = lambda memo, table=table: table
            try:
                moto_transact(self, transact_items)
            except Exception:
                _restore(self, before)
                raise
            finally:
                for name in tables:
                    self.tables[name].__dict__.pop("__deepcopy__", None)

        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _installed = True
