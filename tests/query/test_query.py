"""The read path: the pointer, pinned runs, the fallback, the pointer cache and the CLI (moto)."""

from __future__ import annotations

import json

import pytest

from pipeline_steps.publish import versioning
from pipeline_steps.query import NoPublishedRunError, clear_pointer_cache, get_recommendations
from pipeline_steps.query.__main__ import main as query_cli
from tests.conftest import TABLE
from tests.published_run import NOW, write_run


def test_query_known_unknown_and_pinned(dynamodb, capsys):
    clear_pointer_cache()
    with pytest.raises(NoPublishedRunError, match="nothing is published"):
        get_recommendations("a", table_name=TABLE, dynamodb=dynamodb)
    user = 'Zoë, the "user" 42'
    write_run(dynamodb, "r1", {user: [("item, one", 3.5), ("ñ 2", 1.25)]})
    write_run(dynamodb, "r2", {user: [("new", 9.0)]})
    clear_pointer_cache()
    got = get_recommendations(user, table_name=TABLE, dynamodb=dynamodb)
    assert got["run_id"] == "r2" and got["fallback"] is False
    assert got["items"] == [{"item_id": "new", "score": 9.0}]
    assert got["published_at"] == versioning.iso(NOW)

    old = get_recommendations(user, table_name=TABLE, dynamodb=dynamodb, run_id="r1")
    assert old["items"] == [{"item_id": "item, one", "score": 3.5}, {"item_id": "ñ 2", "score": 1.25}]

    unknown = get_recommendations("stranger", table_name=TABLE, dynamodb=dynamodb)
    assert unknown["fallback"] is True
    assert [i["item_id"] for i in unknown["items"]] == ["pop1", "pop2"]

    assert query_cli([user, "--table", TABLE]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["item_id"] == "new"
    assert query_cli(["x", "--table", TABLE, "--run", "nope"]) == 2


def test_query_pointer_is_cached_briefly(dynamodb):
    clear_pointer_cache()
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    calls = []

    class Counting:
        def get_item(self, **kwargs):
            calls.append(kwargs["Key"]["pk"]["S"])
            return dynamodb.get_item(**kwargs)

    client = Counting()
    for _ in range(3):
        assert get_recommendations("a", table_name=TABLE, dynamodb=client)["items"][0]["item_id"] == "x"
    assert calls == ["pointer", "u#a", "u#a", "u#a"]
    get_recommendations("a", table_name=TABLE, dynamodb=client, cache_ttl=0)
    clear_pointer_cache()
    get_recommendations("a", table_name=TABLE, dynamodb=client)
    assert calls.count("pointer") == 2


def test_query_refuses_a_pinned_run_that_is_still_writing(dynamodb, capsys):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 2.0)]}, flip=False, parts=2)  # part 1 not written yet
    with pytest.raises(NoPublishedRunError, match="'writing', not complete"):
        get_recommendations("a", table_name=TABLE, dynamodb=dynamodb, run_id="r2")
    assert query_cli(["a", "--table", TABLE, "--run", "r2"]) == 2
    assert "not complete" in capsys.readouterr().err
    assert (
        get_recommendations("a", table_name=TABLE, dynamodb=dynamodb, run_id="r1")["items"][0]["item_id"]
        == "x"
    )
