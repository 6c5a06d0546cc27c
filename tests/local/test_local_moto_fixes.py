"""The embedded AWS's TransactWriteItems without moto's whole-table rollback copy (moto_fixes.py).

A transaction is all or nothing on AWS
(https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html):
each test checks what the table holds afterwards, and that no table was copied whole.
"""

from __future__ import annotations

import copy

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.models import Table, dynamodb_backends

from pipeline_steps.local import moto_fixes
from tests.conftest import TABLE, create_table


@pytest.fixture
def table(aws, monkeypatch):
    moto_fixes.install()
    client = boto3.client("dynamodb")
    create_table(client)
    for k in range(3):
        client.put_item(TableName=TABLE, Item=_item(f"u{k}", "old"))
    copies: list[bool] = []  # for every deep copy of a Table: whether moto got a new object
    deepcopy = copy.deepcopy

    def spy(x, memo=None, _nil=[]):  # noqa: B006 - copy.deepcopy's own signature
        y = deepcopy(x, memo)
        if isinstance(x, Table):
            copies.append(y is not x)
        return y

    monkeypatch.setattr(copy, "deepcopy", spy)  # the function moto's models call, for this test
    return client, dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE], copies


def _item(pk: str, value: str) -> dict:
    # a binary, a list and a map beside the string: a restored item keeps every attribute type
    extra = {"b": {"B": value.encode() + b"\x00\xff"}, "l": {"L": [{"N": "1"}, {"S": value}]}}
    return {"pk": {"S": pk}, "sk": {"S": "list"}, "v": {"S": value}, **extra, "m": {"M": {"k": {"S": value}}}}


_KEY = ("pk", "sk")


def _key(pk: str) -> dict:
    return {"pk": {"S": pk}, "sk": {"S": "list"}}


def _state(client) -> dict[str, str]:
    items = client.scan(TableName=TABLE)["Items"]
    for item in items:  # every attribute as written
        assert item == _item(item["pk"]["S"], item["v"]["S"]), item
    return {item["pk"]["S"]: item["v"]["S"] for item in items}


def _actions(condition_holds: bool) -> list[dict]:
    return [
        {"Put": {"TableName": TABLE, "Item": _item("u9", "new")}},  # a new item
        {"Put": {"TableName": TABLE, "Item": _item("u0", "new")}},  # an overwrite
        {
            "Update": {
                "TableName": TABLE,
                "Key": _key("u1"),
                "UpdateExpression": "SET v = :v, b = :b, l = :l, m = :m",
                "ExpressionAttributeValues": {
                    f":{name}": value for name, value in _item("u1", "new").items() if name not in _KEY
                },
            }
        },
        {
            "Delete": {
                "TableName": TABLE,
                "Key": _key("u2"),
                "ConditionExpression": "v = :v",
                "ExpressionAttributeValues": {":v": {"S": "old" if condition_holds else "other"}},
            }
        },
    ]


def test_a_cancelled_transaction_leaves_every_item_as_it_was_without_copying_the_table(table):
    client, moto_table, copies = table
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=_actions(condition_holds=False))
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert _state(client) == {"u0": "old", "u1": "old", "u2": "old"}
    assert copies and not any(copies)  # moto asked for its copy and got the table itself
    assert moto_table is dynamodb_backends["123456789012"]["us-east-1"].tables[TABLE]
    assert "__deepcopy__" not in vars(moto_table)


def test_a_transaction_that_succeeds_applies_every_action(table):
    client, moto_table, copies = table
    client.transact_write_items(TransactItems=_actions(condition_holds=True))
    assert _state(client) == {"u0": "new", "u1": "new", "u9": "new"}
    assert copies and not any(copies)
    assert "__deepcopy__" not in vars(moto_table)


def test_two_actions_on_one_item_are_rejected_and_nothing_is_written(table):
    client, _, _ = table
    actions = [
        {"Put": {"TableName": TABLE, "Item": _item("u5", "new")}},
        {"Put": {"TableName": TABLE, "Item": _item("u0", "new")}},
        {"Delete": {"TableName": TABLE, "Key": _key("u0")}},
    ]
    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=actions)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert _state(client) == {"u0": "old", "u1": "old", "u2": "old"}


def test_install_is_idempotent(table):
    from moto.dynamodb.models import DynamoDBBackend

    patched = DynamoDBBackend.transact_write_items
    moto_fixes.install()
    assert DynamoDBBackend.transact_write_items is patched
