"""publish_run / publish_part / finalize on contract-shaped inputs: ordering, seen items, string ids,
faults, crash + re-run, fan-out parts, and the handler."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import InputError
from pipeline_steps.publish import core, versioning
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.publish.writer import WriteFailedError
from pipeline_steps.query import clear_pointer_cache, get_recommendations
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import (
    event,
    put_prepared,
    put_publish_batches,
    put_queries_manifest,
    put_transform_output,
)
from tests.publish.faults import CrashAfter, FaultyDynamoDB

NOW = 1_800_000_000.0


def cfg(**kw) -> PublishConfig:
    """Read-time extra and related items off unless a test turns them on (lists of exactly x)."""
    base = {"base_backoff_seconds": 0.0, "max_backoff_seconds": 0.0, "read_extra": 0, "related_x": 0}
    return config_from_dict(PublishConfig, {**base, **kw}, where="t")


def small_run(s3, run_id="r1", *, scale=1.0):
    """3 users x 6 items; k = 4 neighbours per user; user 0 has seen item 5."""
    users, items = ["u0", "u1", "u2"], [f"i{j}" for j in range(6)]
    put_prepared(s3, BUCKET, run_id, users=users, items=items, seen=[[5], [], [0, 1]])
    put_queries_manifest(s3, BUCKET, run_id, part_sizes=[3], k=4, n_items=6)
    labels = np.array([[1, 6, 3, 2], [4, 5, 6, 1], [1, 2, 3, 4]], dtype=float)  # item ordinals
    scores = np.array([[0.5, 9.0, -1.0, 2.0], [3.0, 1.0, 2.0, 0.0], [7.0, 6.0, 5.0, 4.0]]) * scale
    put_transform_output(s3, BUCKET, run_id, 0, labels, scores)
    return event(BUCKET, run_id)


def stored(dynamodb, user: str, run_id: str) -> list[tuple[str, float]]:
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"u#{user}"}, "sk": {"S": run_id}})["Item"]
    return [tuple(p) for p in json.loads(item["items"]["S"])]


def test_inner_product_best_is_highest_and_seen_items_dropped(s3, dynamodb):
    ev = small_run(s3)
    out = core.publish_run(
        s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg(x=2), now=NOW
    )
    assert out["users_written"] == 3 and out["pointer"] == "r1"
    # u0: i5 (9.0) is seen -> next best i1 (2.0), i0 (0.5)
    assert stored(dynamodb, "u0", "r1") == [("i1", 2.0), ("i0", 0.5)]
    assert stored(dynamodb, "u1", "r1") == [("i3", 3.0), ("i5", 2.0)]
    # u2 has seen i0 and i1: only i2, i3 remain
    assert stored(dynamodb, "u2", "r1") == [("i2", 5.0), ("i3", 4.0)]
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "u#u0"}, "sk": {"S": "r1"}})["Item"]
    assert int(item["expires_at"]["N"]) == int(NOW + 30 * 86_400)


def test_l2_best_is_lowest(s3, dynamodb):
    ev = small_run(s3)
    core.publish_run(
        s3=s3,
        dynamodb=dynamodb,
        bucket=BUCKET,
        table_name=TABLE,
        event=ev,
        config=cfg(x=2, index_metric="L2"),
    )
    assert stored(dynamodb, "u0", "r1") == [("i2", -1.0), ("i0", 0.5)]
    assert stored(dynamodb, "u1", "r1") == [("i0", 0.0), ("i4", 1.0)]
    assert stored(dynamodb, "u2", "r1") == [("i3", 4.0), ("i2", 5.0)]


def test_string_ids_round_trip_and_fallback(s3, dynamodb):
    users = ["Zoë Ünïcode", "a,b,c", "  spaced  user ", 'quote"d\\', "用户"]
    items = ["B00 7,3", "título ñ", '"q"', "tab\there", "🎬 film", "x"]
    put_prepared(
        s3,
        BUCKET,
        "r1",
        users=users,
        items=items,
        seen=[[], [0], [], [], []],
        popularity=np.array([1, 9, 3, 9, 0, 2]),
    )
    put_queries_manifest(s3, BUCKET, "r1", part_sizes=[2, 3], k=3, n_items=6)
    rng = np.random.default_rng(0)
    labels = np.array([rng.permutation(6)[:3] + 1 for _ in users], dtype=float)
    scores = rng.normal(size=(5, 3))
    put_transform_output(s3, BUCKET, "r1", 0, labels[:2], scores[:2])
    put_transform_output(s3, BUCKET, "r1", 1, labels[2:], scores[2:])
    core.publish_run(
        s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=event(BUCKET, "r1"), config=cfg(x=2)
    )
    clear_pointer_cache()
    for u, user in enumerate(users):
        got = get_recommendations(user, table_name=TABLE, dynamodb=dynamodb)
        order = np.argsort(-scores[u], kind="stable")
        want = [items[int(labels[u, j]) - 1] for j in order if not (u == 1 and labels[u, j] == 1)][:2]
        assert [i["item_id"] for i in got["items"]] == want
        assert got["fallback"] is False
    fb = get_recommendations("nobody", table_name=TABLE, dynamodb=dynamodb)
    assert fb["fallback"] is True
    assert fb["items"] == [{"item_id": "título ñ", "score": 9.0}, {"item_id": "tab\there", "score": 9.0}]


def many_users_run(s3, run_id: str, n_users: int = 180, parts=(100, 80)):
    rng = np.random.default_rng(1)
    n_items = 40
    users = [f"user {i}, ü" for i in range(n_users)]
    seen = [sorted(rng.choice(n_items, size=rng.integers(0, 4), replace=False).tolist()) for _ in users]
    put_prepared(s3, BUCKET, run_id, users=users, items=[f"item-{j}" for j in range(n_items)], seen=seen)
    put_queries_manifest(s3, BUCKET, run_id, part_sizes=list(parts), k=8, n_items=n_items)
    first = 0
    for p, n in enumerate(parts):
        labels = np.array([rng.permutation(n_items)[:8] + 1 for _ in range(n)], dtype=float)
        put_transform_output(s3, BUCKET, run_id, p, labels, rng.normal(size=(n, 8)))
        first += n
    put_publish_batches(s3, BUCKET, run_id)
    return event(BUCKET, run_id), users


def run_items(dynamodb, run_id: str) -> dict[str, str]:
    found, kwargs = {}, {"TableName": TABLE}
    while True:
        page = dynamodb.scan(**kwargs)
        for i in page["Items"]:
            if i["sk"]["S"] == run_id and i["pk"]["S"].startswith("u#"):
                assert i["pk"]["S"] not in found
                found[i["pk"]["S"]] = i["items"]["S"]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_publish_under_30_percent_faults_lands_every_item_once(s3, dynamodb):
    ev, users = many_users_run(s3, "r1")
    faulty = FaultyDynamoDB(dynamodb, fault_rate=0.3, seed=3)
    out = core.publish_run(s3=s3, dynamodb=faulty, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg(x=5))
    assert faulty.throttled and faulty.partial
    user_keys = {k for k in faulty.accepted if k[0].startswith("u#")}
    assert user_keys == {(f"u#{u}", "r1") for u in users}
    assert set(faulty.accepted.values()) == {1}
    assert out["users_written"] == len(users) == len(run_items(dynamodb, "r1"))


def test_crash_midway_keeps_previous_run_and_rerun_completes(s3, dynamodb):
    ev1, users = many_users_run(s3, "r1")
    core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev1, config=cfg())
    ev2, _ = many_users_run(s3, "r2")
    crashing = CrashAfter(dynamodb, items=len(users) // 2)
    with pytest.raises(WriteFailedError, match="simulated crash"):
        core.publish_run(s3=s3, dynamodb=crashing, bucket=BUCKET, table_name=TABLE, event=ev2, config=cfg())
    pointer = versioning.read_pointer(dynamodb, TABLE)
    assert pointer["run_id"] == "r1"
    assert versioning.read_run(dynamodb, TABLE, "r2")["status"] == "writing"
    partial = run_items(dynamodb, "r2")
    assert 0 < len(partial) <= len(users) // 2
    clear_pointer_cache()
    assert get_recommendations(users[0], table_name=TABLE, dynamodb=dynamodb)["run_id"] == "r1"

    out = core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev2, config=cfg())
    assert out == {**out, "pointer": "r2", "previous_run_id": "r1", "users_written": len(users)}
    complete = run_items(dynamodb, "r2")
    assert len(complete) == len(users)
    assert all(complete[k] == v for k, v in partial.items())  # same content rewritten, no duplicates
    assert versioning.read_run(dynamodb, TABLE, "r2")["status"] == "complete"
    # Publishing the same run again changes nothing.
    core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev2, config=cfg())
    assert run_items(dynamodb, "r2") == complete
    assert versioning.read_pointer(dynamodb, TABLE)["previous_run_id"] == "r1"


def test_fan_out_parts_then_finalize(s3, dynamodb):
    ev, users = many_users_run(s3, "r1")
    inputs = core.load_inputs(s3, BUCKET, ev)
    first = core.publish_part(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, part=1, config=cfg())
    assert first["users_written"] == 80
    with pytest.raises(versioning.PublishStateError, match=r"parts \[0\] not written"):
        core.finalize(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, config=cfg())
    assert versioning.read_pointer(dynamodb, TABLE) is None
    core.publish_part(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, part=0, config=cfg())
    flipped = core.finalize(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, config=cfg())
    assert flipped["users_written"] == len(users)
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "r1"
    with pytest.raises(InputError, match="part 2 out of range"):
        core.publish_part(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, part=2, config=cfg())


def test_handlers_follow_the_contract(s3, dynamodb, monkeypatch):
    from pipeline_steps.publish import handler

    ev, _ = many_users_run(s3, "r1")
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"x": 3, "ttl_days": 7}))
    assert handler.part_handler({**ev, "first_part": 0, "last_part": 0})["users_written"] == 100
    assert handler.part_handler({**ev, "first_part": 1, "last_part": 1})["users_written"] == 80
    assert handler.finalize_handler(ev) == {"run_id": "r1", "users_written": 180, "pointer": "r1"}
    assert handler.handler(ev) == {"run_id": "r1", "users_written": 180, "pointer": "r1"}
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"x": 3, "tll_days": 7}))
    with pytest.raises(InputError, match="unknown key"):
        handler.handler(ev)


def test_a_map_child_publishes_its_range_of_parts_loading_the_run_once(s3, dynamodb, monkeypatch):
    """Decision 0015 "Publish fan-out in batches": one child = a range of parts (repackage's
    publish-batches.json entry), the run's ids and `seen` loaded once, each part marked done."""
    from pipeline_steps.publish import handler

    ev, _ = many_users_run(s3, "r1", n_users=230, parts=(100, 80, 50))
    put_publish_batches(s3, BUCKET, "r1", users_per_child=180)  # parts 0-1, then part 2
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"x": 3}))
    loads = []

    real = handler.load_range_inputs
    monkeypatch.setattr(handler, "load_range_inputs", lambda *a: loads.append(real(*a)) or loads[-1])
    out = handler.part_handler({**ev, "first_part": 0, "last_part": 1, "n_lists": 180})
    assert out == {**out, "first_part": 0, "last_part": 1, "users_written": 180, "related_written": 0}
    assert len(loads) == 1
    inputs, parts = loads[0]
    assert parts == range(2) and len(inputs.users) == 180 and inputs.seen.indptr.size == 181  # its own
    record = versioning.read_run(dynamodb, TABLE, "r1")
    assert record["status"] == "writing" and record["part_users"] == {"0": 100, "1": 80}  # each marked done
    with pytest.raises(versioning.PublishStateError, match=r"parts \[2\] not written"):
        handler.finalize_handler(ev)
    assert handler.part_handler({**ev, "first_part": 2, "last_part": 2})["users_written"] == 50
    assert handler.finalize_handler(ev) == {"run_id": "r1", "users_written": 230, "pointer": "r1"}
    for first, last in ((2, 3), (1, 0)):
        with pytest.raises(InputError, match=rf"publish parts event: parts {first}\.\.{last} are not"):
            handler.part_handler({**ev, "first_part": first, "last_part": last})


def test_the_parts_of_one_child_share_one_time_budget(s3, dynamodb, monkeypatch):
    from pipeline_steps.publish.writer import PublishTimeoutError

    ev, _ = many_users_run(s3, "r1")
    inputs = core.load_inputs(s3, BUCKET, ev)
    clock = [0.0]
    monkeypatch.setattr(core.time, "monotonic", lambda: clock[0])
    one_part = core.publish_part

    def slow_part(**kw):
        assert kw["max_seconds"] == 10.0 - clock[0]  # what is left of the child's budget
        clock[0] += 10.0  # the first part takes the child's whole 10 s
        return one_part(**kw)

    monkeypatch.setattr(core, "publish_part", slow_part)
    with pytest.raises(PublishTimeoutError, match="used its 10 s before part 1"):
        core.publish_parts(
            s3=s3,
            dynamodb=dynamodb,
            table_name=TABLE,
            inputs=inputs,
            parts=range(2),
            config=cfg(max_seconds=10.0),
        )
    clock[0] = 0.0
    done = core.publish_parts(
        s3=s3,
        dynamodb=dynamodb,
        table_name=TABLE,
        inputs=inputs,
        parts=range(1, 2),
        config=cfg(max_seconds=10.0),
    )
    assert [d["part"] for d in done] == [1]


def test_bad_inputs_name_the_file(s3, dynamodb):
    ev = small_run(s3)
    s3.put_object(Bucket=BUCKET, Key="runs/r1/transform/users-00000.rec.out", Body=b'{"labels":[1.0]}\n')
    with pytest.raises(InputError, match=r"users-00000.rec.out: k-NN output line 1"):
        core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg())
    put_transform_output(s3, BUCKET, "r1", 0, np.array([[1.0], [2.0]]), np.array([[1.0], [2.0]]))
    with pytest.raises(InputError, match="2 result lines, expected 3"):
        core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg())
    put_transform_output(s3, BUCKET, "r1", 0, np.array([[9.0], [2.0], [1.0]]), np.ones((3, 1)))
    with pytest.raises(InputError, match=r"line 1: label outside 1..6"):
        core.publish_run(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg())
    with pytest.raises(InputError, match=r"event lacks \['manifest_key'"):
        core.publish_run(
            s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event={"run_id": "r1"}, config=cfg()
        )
    assert versioning.read_pointer(dynamodb, TABLE) is None


def test_blank_lines_between_mini_batches_are_skipped_and_lines_still_counted(s3, dynamodb):
    ev = small_run(s3)
    key = "runs/r1/transform/users-00000.rec.out"
    lines = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines(keepends=True)
    run = dict(s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=cfg(x=2), now=NOW)
    s3.put_object(Bucket=BUCKET, Key=key, Body=f"{lines[0]}{lines[1]}\n{lines[2]}\n".encode())
    assert core.publish_run(**run)["users_written"] == 3
    assert stored(dynamodb, "u0", "r1") == [("i1", 2.0), ("i0", 0.5)]
    assert stored(dynamodb, "u2", "r1") == [("i2", 5.0), ("i3", 4.0)]
    s3.put_object(Bucket=BUCKET, Key=key, Body=f"{lines[0]}\n{lines[2]}\n".encode())  # a line missing
    with pytest.raises(InputError, match=r"users-00000.rec.out: 2 result lines, expected 3"):
        core.publish_run(**run)
    s3.put_object(Bucket=BUCKET, Key=key, Body=f"{lines[0]}\n{lines[1]}\n{lines[2]}\n{lines[0]}".encode())
    with pytest.raises(InputError, match=r"users-00000.rec.out line 7: more than the 3 result lines"):
        core.publish_run(**run)
    s3.put_object(Bucket=BUCKET, Key=key, Body=f"{lines[0]}\n{lines[1]} \n \n{lines[2]}".encode())
    with pytest.raises(InputError, match=r"users-00000.rec.out: k-NN output line 4: malformed JSON"):
        core.publish_run(**run)  # a whitespace-only line is not blank
    bad_label = lines[2].replace('"labels":[4.0,', '"labels":[9.0,')
    s3.put_object(Bucket=BUCKET, Key=key, Body=f"{lines[0]}\n{lines[1]}\n{bad_label}\n".encode())
    with pytest.raises(InputError, match=r"users-00000.rec.out line 5: label outside 1..6"):
        core.publish_run(**run)  # file line numbers, blank lines counted


def test_time_budget_exhausted_leaves_pointer_and_says_rerun(s3, dynamodb):
    from botocore.exceptions import ClientError

    from pipeline_steps.publish.writer import PublishTimeoutError

    class Throttled:
        def __init__(self, client):
            self._client = client

        def __getattr__(self, name):
            return getattr(self._client, name)

        def batch_write_item(self, **kwargs):
            raise ClientError(
                {"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {}}, "BatchWriteItem"
            )

    ev, _ = many_users_run(s3, "r1")
    config = cfg(max_seconds=0.5, base_backoff_seconds=0.01, max_backoff_seconds=0.05)
    with pytest.raises(PublishTimeoutError, match="re-run the step"):
        core.publish_run(
            s3=s3, dynamodb=Throttled(dynamodb), bucket=BUCKET, table_name=TABLE, event=ev, config=config
        )
    assert versioning.read_pointer(dynamodb, TABLE) is None
    assert versioning.read_run(dynamodb, TABLE, "r1")["status"] == "writing"


@pytest.mark.parametrize(
    ("module", "missing"),
    [
        ("pipeline_steps.repackage.handler", "BUCKET_NAME"),
        ("pipeline_steps.evaluate.handler", "BUCKET_NAME"),
        ("pipeline_steps.publish.handler", "BUCKET_NAME"),
        ("pipeline_steps.publish.handler", "TABLE_NAME"),
    ],
)
def test_handlers_name_a_missing_environment_variable(monkeypatch, module, missing):
    import importlib

    from pipeline_steps.common.errors import InputError

    monkeypatch.setenv("BUCKET_NAME", "b")
    monkeypatch.setenv("TABLE_NAME", "t")
    monkeypatch.delenv(missing)
    with pytest.raises(InputError, match=f"environment variable {missing} is not set"):
        importlib.import_module(module).handler({"run_id": "r"})


def test_redriven_older_run_does_not_replace_a_newer_published_run(s3, dynamodb):
    # The older execution prepared first, then failed before publish; a newer run published; the
    # older one is redriven and publishes last. Its age is its data's, not its publish time.
    ev_old = small_run(s3, "old")
    t = time.time()
    small_run(s3, "new")
    versioning.begin_run(dynamodb, TABLE, "new", n_parts=1, expires_at=int(t + 9e6), now=t + 3600)
    versioning.mark_part_done(dynamodb, TABLE, "new", part=0, users=3)
    versioning.flip_pointer(dynamodb, TABLE, "new", metrics={}, now=t + 3700)
    with pytest.raises(versioning.PublishStateError, match="newer than 'old'"):
        core.publish_run(
            s3=s3,
            dynamodb=dynamodb,
            bucket=BUCKET,
            table_name=TABLE,
            event=ev_old,
            config=cfg(),
            now=t + 7200,
        )
    assert versioning.read_pointer(dynamodb, TABLE)["run_id"] == "new"
