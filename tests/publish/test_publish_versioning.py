"""Run records, the pointer flip and rollback (moto, no transform output)."""

from __future__ import annotations

import json

import pytest

from pipeline_steps.publish import versioning
from pipeline_steps.publish.__main__ import main as publish_cli
from tests.conftest import TABLE
from tests.published_run import EXPIRES, NOW, write_run


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


def test_an_older_run_finishing_late_does_not_replace_a_newer_one(dynamodb):
    versioning.begin_run(dynamodb, TABLE, "old", n_parts=1, expires_at=EXPIRES, now=NOW)
    versioning.mark_part_done(dynamodb, TABLE, "old", part=0, users=0)
    versioning.begin_run(dynamodb, TABLE, "new", n_parts=1, expires_at=EXPIRES, now=NOW + 60)
    versioning.mark_part_done(dynamodb, TABLE, "new", part=0, users=0)
    versioning.flip_pointer(dynamodb, TABLE, "new", metrics={}, now=NOW + 120)
    with pytest.raises(versioning.PublishStateError, match="newer than 'old'"):
        versioning.flip_pointer(dynamodb, TABLE, "old", metrics={}, now=NOW + 180)
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "new"
