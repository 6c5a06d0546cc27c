"""Decision 0015 "A child holds its own users": a publish Map child reads its batch's user slice
(common/slices.py), not the run's users.json and seen.npz, and writes exactly what the single
Lambda writes; bad slices and ranges are errors naming the object."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.events import PublishPartsEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.runio import Csr, IdSlice
from pipeline_steps.common.slices import load_range_inputs, read_slice, slice_bytes
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig
from tests.conftest import BUCKET, TABLE, create_table
from tests.prepared_run import (
    event,
    put_prepared,
    put_publish_batches,
    put_queries_manifest,
    put_transform_output,
)

NOW = 1_800_000_000.0
N_USERS, N_ITEMS, K = 60, 25, 8
USER_PARTS, ITEM_PARTS = [20, 20, 20], [10, 15]
EXCLUDE, USER_EXCLUSIONS = "filters/exclude.txt", "filters/user-exclusions.csv"


def cfg(**kw) -> PublishConfig:
    base = {
        "base_backoff_seconds": 0.0,
        "max_backoff_seconds": 0.0,
        "x": 4,
        "read_extra": 2,
        "related_x": 3,
        "filter_exclude_items_key": EXCLUDE,
        "filter_user_exclusions_key": USER_EXCLUSIONS,
    }
    return config_from_dict(PublishConfig, {**base, **kw}, where="t")


def run_with_everything(s3, run_id: str = "r1") -> dict:
    """60 users in 3 parts, 25 items' related lists in 2 parts, seen items, an exclusion list, per-user
    exclusions, short lists that are filled, and ids a CSV or JSON could trip on."""
    rng = np.random.default_rng(5)
    users = [f"user {u}, ü" if u % 3 else f"用户 {u}" for u in range(N_USERS)]
    items = [f"item,{i}" for i in range(N_ITEMS)]
    seen = [sorted(rng.choice(N_ITEMS, size=rng.integers(0, 6), replace=False).tolist()) for _ in users]
    put_prepared(s3, BUCKET, run_id, users=users, items=items, seen=seen)
    put_queries_manifest(
        s3, BUCKET, run_id, part_sizes=USER_PARTS, k=K, n_items=N_ITEMS, related_sizes=ITEM_PARTS, related_x=3
    )
    for p, n in enumerate(USER_PARTS):
        labels = np.array([rng.permutation(N_ITEMS)[:K] + 1 for _ in range(n)], dtype=float)
        put_transform_output(s3, BUCKET, run_id, p, labels, rng.normal(size=(n, K)))
    for p, n in enumerate(ITEM_PARTS):
        labels = np.array([rng.permutation(N_ITEMS)[:K] + 1 for _ in range(n)], dtype=float)
        put_transform_output(s3, BUCKET, run_id, p, labels, rng.normal(size=(n, K)), related=True)
    s3.put_object(Bucket=BUCKET, Key=EXCLUDE, Body=f"{items[3]}\n{items[7]}\n".encode())
    rows = [f'"{users[u]}","{items[i]}"' for u, i in ((0, 1), (5, 2), (25, 0), (41, 9), (59, 4), (59, 5))]
    s3.put_object(Bucket=BUCKET, Key=USER_EXCLUSIONS, Body=("\n".join(rows) + "\n").encode())
    return event(BUCKET, run_id)


def child_event(ev: dict, first: int, last: int) -> PublishPartsEvent:
    return PublishPartsEvent.parse({**ev, "first_part": first, "last_part": last})


def table_items(dynamodb, table: str) -> dict[tuple[str, str], dict]:
    found, kwargs = {}, {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        found |= {(i["pk"]["S"], i["sk"]["S"]): i for i in page["Items"]}
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_the_map_children_write_what_the_single_lambda_writes(s3, dynamodb):
    ev = run_with_everything(s3)
    config = cfg()
    single = core.publish_run(
        s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=ev, config=config, now=NOW
    )
    assert single["users_filled"] > 0 and single["filters"]["user_exclusions"] == 6  # fill and filters ran

    fanned = create_table(dynamodb, "fanned")
    batches = put_publish_batches(s3, BUCKET, "r1", users_per_child=30, config=config)
    assert [(b["first_part"], b["last_part"]) for b in batches] == [(0, 0), (1, 1), (2, 3), (4, 4)]
    held = []
    for b in batches:
        inputs, parts = load_range_inputs(s3, BUCKET, child_event(ev, b["first_part"], b["last_part"]))
        held.append(len(inputs.users))
        core.publish_parts(
            s3=s3, dynamodb=dynamodb, table_name=fanned, inputs=inputs, parts=parts, config=config, now=NOW
        )
    assert held == [20, 20, 20, 0]  # each child its own users; the item-query-only child none
    inputs = core.finalize_inputs(s3, BUCKET, ev)
    assert len(inputs.users) == 0 and inputs.seen.indptr.size == 1
    core.finalize(s3=s3, dynamodb=dynamodb, table_name=fanned, inputs=inputs, config=config, now=NOW)
    one, many = table_items(dynamodb, TABLE), table_items(dynamodb, fanned)
    assert len(one) == N_USERS + N_ITEMS + 3  # + fallback, run record, pointer
    assert many == one  # byte for byte: lists, fill flags, TTL, run record, pointer


def gets(s3) -> list[str]:
    keys: list[str] = []
    s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: keys.append(params["Key"])
    )
    return keys


def test_a_child_reads_its_slice_not_the_run_users_nor_seen(s3, dynamodb):
    ev = run_with_everything(s3)
    config = cfg()
    put_publish_batches(s3, BUCKET, "r1", users_per_child=30, config=config)
    keys = gets(s3)
    inputs, parts = load_range_inputs(s3, BUCKET, child_event(ev, 1, 1))
    core.publish_parts(
        s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, parts=parts, config=config, now=NOW
    )
    prepared = "runs/r1/prepared/"
    assert sorted(k for k in keys if k.startswith("runs/")) == sorted(
        [
            prepared + "manifest.json",
            "runs/r1/knn/queries/manifest.json",
            prepared + "items.json",
            "runs/r1/knn/queries/publish-batches.json",
            "runs/r1/knn/queries/publish-slice-00001.npz",
            prepared + "popularity.npy",
            "runs/r1/transform/users-00001.rec.out",
        ]
    )  # not users.json, not seen.npz, and the user exclusions came with the slice:
    assert USER_EXCLUSIONS not in keys and EXCLUDE in keys
    assert (inputs.users.first, len(inputs.users)) == (20, 20)  # type: ignore[attr-defined]
    with pytest.raises(
        InputError, match=r"publish-slice-00001.npz: user index 19 is outside its users 20..39"
    ):
        inputs.users[19]
    with pytest.raises(InputError, match=r"user index 40 is outside the rows held here \(20..39\)"):
        inputs.seen.row(40)


def test_bad_slices_and_ranges_name_the_object(s3, dynamodb):
    ev = run_with_everything(s3)
    config = cfg()
    put_publish_batches(s3, BUCKET, "r1", users_per_child=20, config=config)  # one batch per user part
    layout = RunLayout("r1")
    # publish-batches.json replaced by wider ranges: slice 0 holds part 0's users only
    s3.put_object(
        Bucket=BUCKET,
        Key=layout.publish_batches,
        Body=b'[{"first_part": 0, "last_part": 1}, {"first_part": 2, "last_part": 4}]',
    )
    with pytest.raises(
        InputError, match=r"publish-slice-00000.npz: holds users 0..19, parts 0..1 need users 0..39"
    ):
        load_range_inputs(s3, BUCKET, child_event(ev, 0, 1))
    with pytest.raises(InputError, match=r"publish-batches.json: no entry holds parts 1..2"):
        load_range_inputs(s3, BUCKET, child_event(ev, 1, 2))
    with pytest.raises(InputError, match=r"publish parts event: parts 4..5 are not a range"):
        load_range_inputs(s3, BUCKET, child_event(ev, 4, 5))
    put_publish_batches(s3, BUCKET, "r1", users_per_child=20, config=config)
    key = layout.publish_slice(2)
    whole = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=key, Body=whole[: len(whole) // 2])
    with pytest.raises(InputError, match=r"publish-slice-00002.npz: not a readable .npz \(truncated"):
        load_range_inputs(s3, BUCKET, child_event(ev, 2, 2))
    s3.delete_object(Bucket=BUCKET, Key=key)
    with pytest.raises(
        InputError, match=r"publish-slice-00002.npz: object does not exist \(the users of parts 2..2"
    ):
        load_range_inputs(s3, BUCKET, child_event(ev, 2, 2))
    inputs, parts = load_range_inputs(s3, BUCKET, child_event(ev, 1, 1))
    other = cfg(filter_user_exclusions_key="filters/other.csv")
    with pytest.raises(
        InputError, match=r"publish-slice-00001.npz: user exclusions read from 'filters/user-"
    ):
        core.publish_parts(
            s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, parts=parts, config=other
        )
    assert core.versioning.read_run(dynamodb, TABLE, "r1") is None  # nothing written


def test_a_slice_round_trips_any_id_and_checks_its_arrays():
    users = ["a", "", "Zoë 🎬", "\ud800lone", "x" * 3000, "z"]
    seen = Csr(indptr=np.array([0, 1, 1, 3, 3, 4, 4]), indices=np.array([2, 0, 4, 1], dtype=np.int32))
    excluded = Csr(indptr=np.array([0, 0, 0, 1, 1, 1, 1]), indices=np.array([3], dtype=np.int32))
    data = slice_bytes(first=1, stop=5, users=users, seen=seen, excluded=excluded, exclusions_key="f.csv")
    got = read_slice(data, key="k.npz", n_items=5)
    assert isinstance(got.users, IdSlice)
    assert [got.users[u] for u in range(1, 5)] == users[1:5]
    assert [got.seen.row(u).tolist() for u in range(1, 5)] == [[], [0, 4], [], [1]]
    assert [got.exclusions.rows.row(u).tolist() for u in range(1, 5)] == [[], [3], [], []]
    assert got.exclusions.key == "f.csv" and got.exclusions.source == "k.npz"
    with np.load(io.BytesIO(data)) as z:
        arrays = dict(z)
    for name, value, message in (
        ("user_id_offsets", np.array([0, 1, 2], dtype=np.int64), "user_id_offsets must rise from 0"),
        ("seen_indices", np.array([0, 9], dtype=np.int32), r"k.npz seen: indptr has shape"),
        ("excluded_indices", np.array([7], dtype=np.int32), r"k.npz excluded: item index out of range"),
    ):
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, name: value})
        with pytest.raises(InputError, match=message):
            read_slice(buf.getvalue(), key="k.npz", n_items=5)
    buf = io.BytesIO()
    np.savez(buf, **{k: v for k, v in arrays.items() if k != "seen_indptr"})
    with pytest.raises(InputError, match=r"k.npz: not a publish slice, arrays \['seen_indptr'\] missing"):
        read_slice(buf.getvalue(), key="k.npz", n_items=5)
