"""Business filters and related items, end to end: the project's template in the embedded AWS (IAM
enforced), the filter objects in the bucket, then every published list read back from DynamoDB.

The small synthetic set of test_local_end_to_end (4 taste groups, x = 5) with:
- an exclusion list of 6 items (unavailable), 3 of them among the most popular;
- item metadata (category = the item's group) excluding one category;
- per-user exclusions: users 0..9 never get the 8 most popular items of their own group;
- `max_k` = 12 below what the k rule asks for, so heavy users run short and are filled from the
  filtered popularity order (flagged `filled`, counted by publish).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import numpy as np
import pytest

from pipeline_steps.common.items import decode_items
from pipeline_steps.local.deploy import deploy
from pipeline_steps.local.runner import execute, new_run_id, put_objects, upload_inputs
from pipeline_steps.local.server import LocalAws
from tests.local.test_local_end_to_end import N_ITEMS, _write_interactions

X, READ_EXTRA, RELATED_X, MAX_K = 5, 2, 3, 12
EXCLUDED_CATEGORY = "group-3"


def _quiet(message: str) -> None:
    del message


def _popular(ratings_text: str) -> list[str]:
    import csv
    import io

    rows = list(csv.reader(io.StringIO(ratings_text)))[1:]
    counts = Counter(row[1] for row in rows)
    return [item for item, _ in counts.most_common()]


def _filter_files(tmp_path, ratings, items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    popular = _popular(ratings.read_text(encoding="utf-8"))
    group_of = {item: f"group-{int(item[6:9]) * 4 // N_ITEMS}" for item in items}
    unavailable = popular[:3] + [i for i in popular if group_of[i] == "group-1"][3:6]
    (tmp_path / "unavailable.txt").write_text("\n".join(unavailable) + "\n", encoding="utf-8")
    quoted = [f'"{i.replace(chr(34), chr(34) * 2)}",{group_of[i]}' for i in items]
    (tmp_path / "catalog.csv").write_text("item_id,category\n" + "\n".join(quoted) + "\n", encoding="utf-8")
    mine: dict[str, set[str]] = {}
    rows = ["user_id,item_id"]
    for u in range(10):
        own = [i for i in popular if group_of[i] == f"group-{u % 4}"][:8]
        mine[f"user-{u:04d}"] = set(own)
        rows += [f'user-{u:04d},"{i.replace(chr(34), chr(34) * 2)}"' for i in own]
    (tmp_path / "bought.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    context = {
        "topx:publish.filter_exclude_items_key": "filters/unavailable.txt",
        "topx:publish.filter_metadata_key": "filters/catalog.csv",
        "topx:publish.filter_metadata_column": "category",
        "topx:publish.filter_metadata_exclude": [EXCLUDED_CATEGORY],
        "topx:publish.filter_user_exclusions_key": "filters/bought.csv",
    }
    expected = {"unavailable": set(unavailable), "group_of": group_of, "mine": mine, "popular": popular}
    return context, expected


def _scan(aws: LocalAws, table: str, run_id: str) -> list[dict[str, Any]]:
    client, items, kwargs = aws.client("dynamodb"), [], {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        items += [i for i in page["Items"] if i["sk"]["S"] == run_id]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filters")
    ratings, held, items = _write_interactions(tmp)
    context, expected = _filter_files(tmp, ratings, sorted(items))
    overrides = {
        "topx:prepare.test_prefix": "input-test/",
        "topx:x": X,
        "topx:prepare.user_col": "user",
        "topx:prepare.item_col": "item",
        "topx:prepare.rating_col": "rating",
        "topx:prepare.timestamp_col": "timestamp",
        "topx:fm.hyperparameters.epochs": 3,
        "topx:fm.hyperparameters.num_factors": 8,
        "topx:repackage.max_k": MAX_K,
        "topx:publish.read_extra": READ_EXTRA,
        "topx:publish.related_x": RELATED_X,
        **context,
    }
    uploads = [(f"filters/{name}", tmp / name) for name in ("unavailable.txt", "catalog.csv", "bought.csv")]
    with LocalAws(region="us-east-1", job_log=_quiet, enforce_iam=True) as aws:
        dep = deploy(aws, context=overrides, log=_quiet)
        upload_inputs(aws, dep, [ratings], [held], log=_quiet)
        put_objects(aws, dep, uploads, log=_quiet)
        outcome = execute(aws, dep, run_id=new_run_id("filters"), log=_quiet)
        rows = _scan(aws, dep.table, outcome.run_id)
        s3 = aws.client("s3")
        files = (outcome.manifest or {}).get("files", {})
        ids = json.loads(s3.get_object(Bucket=dep.bucket, Key=files["items"])["Body"].read())
        counts = np.load(io.BytesIO(s3.get_object(Bucket=dep.bucket, Key=files["popularity"])["Body"].read()))
    expected["train_popularity"] = dict(zip(ids, counts.tolist(), strict=True))
    return outcome, rows, expected


def _lists(rows: list[dict[str, Any]], prefix: str) -> dict[str, dict[str, Any]]:
    return {
        r["pk"]["S"][len(prefix) :]: {
            "items": [e["item_id"] for e in decode_items(r["items"]["S"])],
            "filled": int(r.get("filled", {}).get("N", 0)),
        }
        for r in rows
        if r["pk"]["S"].startswith(prefix)
    }


def test_the_filtered_run_succeeds_with_iam_enforced_and_names_x_on_the_pointer(published):
    outcome, _, _ = published
    assert outcome.result.status == "SUCCEEDED", outcome.result.failures
    assert outcome.pointer["run_id"] == outcome.run_id and outcome.pointer["x"] == X
    assert outcome.metrics["related"]["related_x"] == RELATED_X


def test_unavailable_and_excluded_category_items_never_appear(published):
    _, rows, expected = published
    users, related = _lists(rows, "u#"), _lists(rows, "i#")
    assert len(users) == 240 and len(related) == N_ITEMS
    group_of = expected["group_of"]
    for lists in (users, related):
        for owner, entry in lists.items():
            got = set(entry["items"])
            assert not got & expected["unavailable"], owner
            assert all(group_of[i] != EXCLUDED_CATEGORY for i in got), owner


def test_per_user_exclusions_hold_and_lists_hold_x_plus_read_extra(published):
    _, rows, expected = published
    users = _lists(rows, "u#")
    for user, mine in expected["mine"].items():
        assert not set(users[user]["items"]) & mine, user
    assert all(len(entry["items"]) == X + READ_EXTRA for entry in users.values())


def test_short_lists_are_filled_from_the_filtered_popularity_order_and_flagged(published):
    _, rows, expected = published
    users = _lists(rows, "u#")
    filled = {u: e for u, e in users.items() if e["filled"]}
    # max_k = 12 < x + read_extra + what a user's history and the filters drop: most users run short
    assert len(filled) > 100
    popularity = expected["train_popularity"]
    for entry in filled.values():
        tail = entry["items"][-entry["filled"] :]
        counts = [popularity[i] for i in tail]
        assert counts == sorted(counts, reverse=True)  # the (filtered) popularity order


def test_related_lists_drop_the_item_itself(published):
    _, rows, _ = published
    related = _lists(rows, "i#")
    for item, entry in related.items():
        assert item not in entry["items"] and len(entry["items"]) <= RELATED_X
    assert sum(len(e["items"]) == RELATED_X for e in related.values()) > N_ITEMS // 2


def test_the_run_record_counts_the_filled_users(published):
    _, rows, _ = published
    (record,) = [r for r in rows if r["pk"]["S"] == "run"]
    flagged = sum(1 for e in _lists(rows, "u#").values() if e["filled"])
    assert int(record["users_filled"]["N"]) == flagged > 0
    assert int(record["related_written"]["N"]) == N_ITEMS and int(record["x"]["N"]) == X
