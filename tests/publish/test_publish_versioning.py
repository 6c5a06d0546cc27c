"""Run records, the pointer flip, rollback and the query read path (moto, no transform output)."""

from __future__ import annotations

import json

import pytest

from pipeline_steps.common.items import decode_items, encode_items
from pipeline_steps.publish import versioning
from pipeline_steps.publish.__main__ import main as publish_cli
from pipeline_steps.query import NoPublishedRunError, clear_pointer_cache, get_recommendations
from pipeline_steps.query.__main__ import main as query_cli
from tests.conftest import TABLE

NOW = 1_800_000_000.0
EXPIRES = int(NOW + 30 * 86_400)


def write_run(dynamodb, run_id: str, recs: dict[str, list[tuple[str, float]]], *, flip: bool = True, parts=1):
    versioning.begin_run(dynamodb, TABLE, run_id, n_parts=parts, expires_at=EXPIRES, now=NOW)
    for user, pairs in recs.items():
        text, _ = encode_items([p[0] for p in pairs], [p[1] for p in pairs])
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"u#{user}"},
                "sk": {"S": run_id},
                "items": {"S": text},
                "expires_at": {"N": "1"},
            },
        )
    text, _ = encode_items(["pop1", "pop2"], [50.0, 40.0])
    dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "fallback"}, "sk": {"S": run_id}, "items": {"S": text}}
    )
    versioning.mark_part_done(dynamodb, TABLE, run_id, part=0, users=len(recs))
    if flip:
        return versioning.flip_pointer(dynamodb, TABLE, run_id, metrics={"ndcg": 0.25}, now=NOW)
    return None


def test_flip_requires_every_part(dynamodb):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]}, flip=False, parts=2)
    with pytest.raises(versioning.PublishStateError, match=r"parts \[1\] not written"):
        versioning.flip_pointer(dynamodb, TABLE, "r1", metrics={})
    assert versioning.read_pointer(dynamodb, TABLE) is None
    versioning.mark_part_done(dynamodb, TABLE, "r1", part=1, users=0)
    versioning.flip_pointer(dynamodb, TABLE, "r1", metrics={})
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "r1"


def test_pointer_history_and_refinalize_is_idempotent(dynamodb):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 2.0)]})
    again = versioning.flip_pointer(dynamodb, TABLE, "r2", metrics={"ndcg": 0.3}, now=NOW)
    pointer = versioning.read_pointer(dynamodb, TABLE)
    assert (pointer["run_id"], pointer["previous_run_id"]) == ("r2", "r1")
    assert again["previous_run_id"] == "r1"
    assert pointer["metrics"] == {"ndcg": 0.3}
    record = versioning.read_run(dynamodb, TABLE, "r2")
    assert record["status"] == "complete" and record["users_written"] == 1


def test_begin_run_keeps_a_complete_run_complete(dynamodb):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    versioning.begin_run(dynamodb, TABLE, "r1", n_parts=1, expires_at=EXPIRES, now=NOW)
    assert versioning.read_run(dynamodb, TABLE, "r1")["status"] == "complete"


def test_concurrent_pointer_move_is_refused(dynamodb):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 1.0)]}, flip=False)
    real_read = versioning.read_pointer

    def stale_read(*args, **kwargs):
        pointer = real_read(*args, **kwargs)
        # Someone else publishes between our read and our conditional write.
        dynamodb.put_item(
            TableName=TABLE,
            Item={**versioning.POINTER_KEY, "run_id": {"S": "r9"}, "published_at": {"S": "x"}},
        )
        return pointer

    versioning.read_pointer = stale_read
    try:
        with pytest.raises(versioning.PublishStateError, match="pointer moved"):
            versioning.flip_pointer(dynamodb, TABLE, "r2", metrics={})
    finally:
        versioning.read_pointer = real_read
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "r9"
    assert versioning.read_run(dynamodb, TABLE, "r2")["status"] == "writing"


def test_rollback_to_previous_and_explicit_run(dynamodb):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 1.0)]})
    write_run(dynamodb, "r3", {"a": [("z", 1.0)]}, flip=False)  # still writing
    result = versioning.rollback(dynamodb, TABLE, now=NOW)
    assert result == {"run_id": "r1", "previous_run_id": "r2", "rolled_back_at": versioning.iso(NOW)}
    pointer = versioning.read_pointer(dynamodb, TABLE)
    assert (pointer["run_id"], pointer["previous_run_id"]) == ("r1", "r2")
    assert pointer["metrics"] == {"ndcg": 0.25}
    with pytest.raises(versioning.PublishStateError, match="writing, not complete"):
        versioning.rollback(dynamodb, TABLE, to_run_id="r3", now=NOW)
    with pytest.raises(versioning.PublishStateError, match="missing, not complete"):
        versioning.rollback(dynamodb, TABLE, to_run_id="nope", now=NOW)
    with pytest.raises(versioning.PublishStateError, match="already current"):
        versioning.rollback(dynamodb, TABLE, to_run_id="r1", now=NOW)
    with pytest.raises(versioning.PublishStateError, match="expire"):
        versioning.rollback(dynamodb, TABLE, to_run_id="r2", now=EXPIRES - 3600)
    # The rollback itself can be rolled back.
    versioning.rollback(dynamodb, TABLE, now=NOW)
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "r2"


def test_rollback_cli(dynamodb, capsys):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 1.0)]})
    assert publish_cli(["--table", TABLE, "rollback", "--to", "r1"]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "r1"
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "r1"
    assert publish_cli(["--table", TABLE, "rollback", "--to", "missing"]) == 2
    assert "not complete" in capsys.readouterr().err
    assert publish_cli(["--table", TABLE, "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["pointer"]["run_id"] == "r1"
    assert sorted(r["sk"] for r in status["runs"]) == ["r1", "r2"]


def test_status_prints_the_quality_history_oldest_first_and_marks_the_current_run(dynamodb, capsys):
    write_run(dynamodb, "r1", {"a": [("x", 1.0)]})
    write_run(dynamodb, "r2", {"a": [("y", 1.0)]})
    for run_id, ndcg in (("r1", 0.25), ("r2", 0.5)):
        dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": "run"}, "sk": {"S": run_id}},
            UpdateExpression="SET #m = :m, started_at = :s",
            ExpressionAttributeNames={"#m": "metrics"},
            ExpressionAttributeValues={
                ":m": {"M": {"ndcg": {"N": str(ndcg)}}},
                ":s": {"S": f"2026-01-0{run_id[1]}T00:00:00Z"},
            },
        )
    assert publish_cli(["--table", TABLE, "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ndcg" in lines[0] and "precision" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["r1", "*"]  # r2 is current
    assert "0.2500" in lines[1] and "0.5000" in lines[2] and lines[2].split()[1] == "r2"


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


def test_items_attribute_stays_under_the_item_limit():
    long_ids = [("é" * 2000) + str(i) for i in range(1000)]  # ~4 KB of UTF-8 per id
    text, kept = encode_items(long_ids, [1.0] * 1000)
    assert len(text.encode("utf-8")) <= 350_000
    assert 0 < kept < 1000
    assert [i["item_id"] for i in decode_items(text)] == long_ids[:kept]
    text, kept = encode_items([f"B00{i:07d}" for i in range(1000)], [0.5] * 1000)
    assert kept == 1000 and len(text) < 30_000


def test_an_older_run_finishing_late_does_not_replace_a_newer_one(dynamodb):
    versioning.begin_run(dynamodb, TABLE, "old", n_parts=1, expires_at=EXPIRES, now=NOW)
    versioning.mark_part_done(dynamodb, TABLE, "old", part=0, users=0)
    versioning.begin_run(dynamodb, TABLE, "new", n_parts=1, expires_at=EXPIRES, now=NOW + 60)
    versioning.mark_part_done(dynamodb, TABLE, "new", part=0, users=0)
    versioning.flip_pointer(dynamodb, TABLE, "new", metrics={}, now=NOW + 120)
    with pytest.raises(versioning.PublishStateError, match="newer than 'old'"):
        versioning.flip_pointer(dynamodb, TABLE, "old", metrics={}, now=NOW + 180)
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "new"


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
