"""Publish: related items (i#<item_id>), stored lists of x + read_extra, `x` on the pointer, business
filters (exclusion list, metadata include/exclude, per-user exclusions), fill from popularity, and
bad filter files failing before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_steps.common import table
from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import InputError
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import event, put_prepared, put_queries_manifest, put_transform_output

NOW = 1_800_000_000.0
USERS = ["u0", "u1", "u2"]
ITEMS = [f"i{j}" for j in range(6)]
POPULARITY = np.array([5, 9, 1, 7, 3, 8])  # most popular first: i1, i5, i3, i0, i4, i2


def cfg(**kw) -> PublishConfig:
    base = {"base_backoff_seconds": 0.0, "max_backoff_seconds": 0.0, "read_extra": 0, "related_x": 0}
    return config_from_dict(PublishConfig, {**base, **kw}, where="t")


def related_run(s3, run_id: str = "r1") -> dict:
    """3 users x 6 items, k = 4; item queries in two parts (4 + 2 items), each answer holding itself."""
    put_prepared(s3, BUCKET, run_id, users=USERS, items=ITEMS, seen=[[5], [], [0, 1]], popularity=POPULARITY)
    put_queries_manifest(
        s3, BUCKET, run_id, part_sizes=[3], k=4, n_items=6, related_sizes=[4, 2], related_x=2
    )
    labels = np.array([[1, 6, 3, 2], [4, 5, 6, 1], [1, 2, 3, 4]], dtype=float)
    scores = np.array([[0.5, 9.0, -1.0, 2.0], [3.0, 1.0, 2.0, 0.0], [7.0, 6.0, 5.0, 4.0]])
    put_transform_output(s3, BUCKET, run_id, 0, labels, scores)
    # item j's neighbours: itself (not always the best: an inner product), then others
    item_labels = np.array(
        [[1, 2, 3, 4], [2, 1, 6, 5], [3, 4, 1, 2], [4, 3, 2, 1], [5, 6, 1, 2], [6, 5, 4, 3]], dtype=float
    )
    item_scores = np.array(
        [
            [4.0, 3.0, 2.0, 1.0],
            [5.0, 6.0, 1.0, 0.0],
            [9.0, 8.0, 7.0, 6.0],
            [4.0, 3.0, 2.0, 1.0],
            [2.0, 3.0, 1.0, 0.0],
            [4.0, 3.0, 2.0, 1.0],
        ]
    )
    put_transform_output(s3, BUCKET, run_id, 0, item_labels[:4], item_scores[:4], related=True)
    put_transform_output(s3, BUCKET, run_id, 1, item_labels[4:], item_scores[4:], related=True)
    return event(BUCKET, run_id)


def get(dynamodb, key: dict) -> dict | None:
    return table.plain(dynamodb.get_item(TableName=TABLE, Key=key).get("Item"))


def listed(dynamodb, key: dict) -> list[str]:
    item = get(dynamodb, key)
    assert item is not None, key
    return [entry[0] for entry in json.loads(item["items"])]


def publish(s3, dynamodb, ev, config: PublishConfig) -> dict:
    return core.publish_run(
        s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=config, now=NOW
    )


def test_related_items_drop_the_item_itself_best_first_with_the_users_ttl(s3, dynamodb):
    out = publish(s3, dynamodb, related_run(s3), cfg(x=2, related_x=2))
    assert out["related_written"] == 6 and out["users_written"] == 3
    related = {item: listed(dynamodb, table.related_key(item, "r1")) for item in ITEMS}
    assert related == {
        "i0": ["i1", "i2"],  # itself (4.0) is the best match: dropped
        "i1": ["i0", "i5"],  # itself (5.0) is second: dropped, i0 (6.0) first
        "i2": ["i3", "i0"],
        "i3": ["i2", "i1"],
        "i4": ["i5", "i0"],
        "i5": ["i4", "i3"],
    }
    user = get(dynamodb, table.user_key("u0", "r1"))
    assert get(dynamodb, table.related_key("i0", "r1"))["expires_at"] == user["expires_at"]
    record = table.read_run(dynamodb, TABLE, "r1")
    assert record["related_written"] == 6 and record["n_parts"] == 3  # 1 user part + 2 item parts
    pointer = table.read_pointer(dynamodb, TABLE)
    assert pointer["run_id"] == "r1" and pointer["x"] == 2 and record["x"] == 2


def test_fan_out_parts_after_the_user_parts_are_the_item_parts(s3, dynamodb):
    from pipeline_steps.common.runio import load_inputs

    ev = related_run(s3)
    inputs = load_inputs(s3, BUCKET, ev)
    config = cfg(x=2, related_x=2)
    done = [
        core.publish_part(
            s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, part=p, config=config, now=NOW
        )
        for p in (2, 0)
    ]
    assert [(d["users_written"], d["related_written"]) for d in done] == [(0, 2), (3, 0)]
    with pytest.raises(core.versioning.PublishStateError, match=r"parts \[1\] not written yet"):
        core.finalize(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, config=config, now=NOW)
    with pytest.raises(InputError, match="part 3 out of range"):
        core.publish_part(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, part=3, config=config)
    assert get(dynamodb, table.related_key("i4", "r1")) is not None
    assert table.read_pointer(dynamodb, TABLE) is None


def test_one_child_range_spans_the_user_part_and_the_item_parts(s3, dynamodb):
    from pipeline_steps.common.batches import publish_batches
    from pipeline_steps.common.runio import load_inputs

    ev = related_run(s3)
    inputs = load_inputs(s3, BUCKET, ev)
    config = cfg(x=2, related_x=2)
    sizes = [p.n_users for p in inputs.queries.parts] + [p.n_items for p in inputs.queries.related_parts]
    batches = publish_batches(sizes, 7)  # 3 users + 4 items, then 2 items
    assert [(b["first_part"], b["last_part"]) for b in batches] == [(0, 1), (2, 2)]
    done = [
        core.publish_parts(
            s3=s3,
            dynamodb=dynamodb,
            table_name=TABLE,
            inputs=inputs,
            parts=range(b["first_part"], b["last_part"] + 1),
            config=config,
            now=NOW,
        )
        for b in batches
    ]
    assert [[(d["users_written"], d["related_written"]) for d in child] for child in done] == [
        [(3, 0), (0, 4)],
        [(0, 2)],
    ]
    core.finalize(s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, config=config, now=NOW)
    record = table.read_run(dynamodb, TABLE, "r1")
    assert record["related_written"] == 6 and record["users_written"] == 3
    assert table.read_pointer(dynamodb, TABLE)["run_id"] == "r1"


def test_stored_lists_hold_x_plus_read_extra_and_readers_get_x_from_the_pointer(s3, dynamodb):
    publish(s3, dynamodb, related_run(s3), cfg(x=1, read_extra=1))
    assert listed(dynamodb, table.user_key("u1", "r1")) == ["i3", "i5"]
    assert table.read_pointer(dynamodb, TABLE)["x"] == 1
    # the fallback holds x + read_extra too, most popular first
    assert listed(dynamodb, table.fallback_key("r1")) == ["i1", "i5"]


def put_filters(s3) -> dict:
    s3.put_object(Bucket=BUCKET, Key="filters/unavailable.txt", Body=b"i3\n\n")
    s3.put_object(
        Bucket=BUCKET,
        Key="filters/catalog.tsv",
        Body=b"item_id\tcategory\ni0\tbooks\ni1\tmusic\ni2\tbooks\ni4\tbooks\ni5\tfilm\nunknown\tbooks\n",
    )
    s3.put_object(Bucket=BUCKET, Key="filters/bought.csv", Body=b"user_id,item_id\nu2,i2\n")
    return {
        "filter_exclude_items_key": "filters/unavailable.txt",
        "filter_metadata_key": "filters/catalog.tsv",
        "filter_metadata_column": "category",
        "filter_metadata_exclude": ["music"],
        "filter_user_exclusions_key": "filters/bought.csv",
    }


def test_filters_hold_in_user_and_related_lists_and_short_lists_are_filled_and_flagged(s3, dynamodb):
    ev = related_run(s3)
    out = publish(s3, dynamodb, ev, cfg(x=2, related_x=2, **put_filters(s3)))
    # i3 unavailable, i1 excluded by category: never recommended
    # u0 (seen i5): model i0, i2 (i1 dropped) -> full
    assert listed(dynamodb, table.user_key("u0", "r1")) == ["i0", "i2"]
    # u1: model i3 (unavailable), i5, i4 -> full
    assert listed(dynamodb, table.user_key("u1", "r1")) == ["i5", "i4"]
    # u2 (seen i0, i1; bought i2; i3 excluded): the model has nothing left -> filled from the
    # filtered popularity order i5, i0, i4, i2 minus seen/excluded: i5, i4
    u2 = get(dynamodb, table.user_key("u2", "r1"))
    assert [e[0] for e in json.loads(u2["items"])] == ["i5", "i4"] and u2["filled"] == 2
    assert "filled" not in get(dynamodb, table.user_key("u0", "r1"))
    assert out["users_filled"] == 1 and out["users_short"] == 1
    assert out["filters"] == {
        "excluded_by_list": 1,
        "excluded_by_metadata": 1,
        "user_exclusions": 1,
        "excluded_items": 2,
    }
    for item in ITEMS:
        assert not {"i1", "i3"} & set(listed(dynamodb, table.related_key(item, "r1"))), item
    assert listed(dynamodb, table.fallback_key("r1")) == ["i5", "i0"]


def test_metadata_include_keeps_only_listed_values(s3, dynamodb):
    filters = put_filters(s3)
    config = cfg(
        x=2,
        filter_metadata_key=filters["filter_metadata_key"],
        filter_metadata_column="category",
        filter_metadata_include=["books"],
    )
    publish(s3, dynamodb, related_run(s3), config)
    books = {"i0", "i2", "i4"}
    for user in USERS:
        assert set(listed(dynamodb, table.user_key(user, "r1"))) <= books, user


@pytest.mark.parametrize(
    ("key", "body", "message"),
    [
        ("filter_exclude_items_key", b"i1\nnope\n", r"line 2: item id 'nope' is not in"),
        ("filter_exclude_items_key", b"i1\n\xff\n", r"line 2: not valid UTF-8"),
        ("filter_user_exclusions_key", b"user_id,item_id\nu1,i2\nghost,i1\n", r"line 3: user id 'ghost'"),
        ("filter_user_exclusions_key", b"u1,i2,extra\n", r"line 1: expected 2 fields user_id,item_id, got 3"),
        ("filter_metadata_key", b"item_id,category\ni0\n", r"line 2: 1 fields, the header has 2"),
        (
            "filter_metadata_key",
            b"id,category\n",
            r"line 1: header \['id', 'category'\] has no column 'item_id'",
        ),
        ("filter_metadata_key", b"item_id,category\ni0,a\ni0,b\n", r"line 3: item id 'i0' listed twice"),
    ],
)
def test_bad_filter_files_name_file_line_field_and_change_nothing(s3, dynamodb, key, body, message):
    publish(s3, dynamodb, related_run(s3, "r0"), cfg(x=2))  # the published run
    s3.put_object(Bucket=BUCKET, Key="filters/unavailable.txt", Body=body)
    extra = {"filter_metadata_column": "category", "filter_metadata_exclude": ["a"]}
    config = cfg(x=2, **{key: "filters/unavailable.txt"}, **(extra if key == "filter_metadata_key" else {}))
    with pytest.raises(InputError, match=rf"{key} s3://{BUCKET}/filters/unavailable.txt {message}"):
        publish(s3, dynamodb, related_run(s3, "r1"), config)
    assert table.read_pointer(dynamodb, TABLE)["run_id"] == "r0"
    assert table.read_run(dynamodb, TABLE, "r1") is None
    assert get(dynamodb, table.user_key("u0", "r1")) is None


def test_a_missing_filter_object_is_named(s3, dynamodb):
    with pytest.raises(
        InputError, match=r"filter_user_exclusions_key s3://.*/filters/none.csv: object does not exist"
    ):
        publish(s3, dynamodb, related_run(s3), cfg(filter_user_exclusions_key="filters/none.csv"))


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"filter_exclude_items_key": "filters/*.txt"},
            r"t.filter_exclude_items_key: an exact S3 key without",
        ),
        (
            {
                "filter_metadata_key": "runs/r1/x.csv",
                "filter_metadata_column": "c",
                "filter_metadata_include": ["a"],
            },
            r"must not be under runs/",
        ),
        ({"filter_metadata_key": "m.csv"}, r"t.filter_metadata_column: required with filter_metadata_key"),
        ({"filter_metadata_include": ["a"]}, r"need filter_metadata_key and filter_metadata_column"),
        ({"x": 995, "read_extra": 10}, r"t.read_extra: x \+ read_extra must be <= 1000, got 1005"),
        ({"related_x": -1}, r"t.related_x: must be in 0..1000"),
    ],
)
def test_config_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        cfg(**kw)


def test_the_run_record_counts_filled_users_and_related_lists(s3, dynamodb):
    publish(s3, dynamodb, related_run(s3), cfg(x=2, related_x=2, **put_filters(s3)))
    record = table.read_run(dynamodb, TABLE, "r1")
    assert record["users_filled"] == 1 and record["related_written"] == 6


def test_rollback_gives_readers_the_target_runs_x(s3, dynamodb):
    publish(s3, dynamodb, related_run(s3, "r0"), cfg(x=3))
    publish(s3, dynamodb, related_run(s3, "r1"), cfg(x=2))
    assert table.read_pointer(dynamodb, TABLE)["x"] == 2
    core.versioning.rollback(dynamodb, TABLE, now=NOW)
    pointer = table.read_pointer(dynamodb, TABLE)
    assert pointer["run_id"] == "r0" and pointer["x"] == 3
