"""The bounded k rule (decision 0015): k from a quantile of the users' need, heavy users still get
x + read_extra unseen items (the model's, topped up from the popularity order), evaluate scores
the same filled lists, and the transform output per user shrinks with k."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_steps.common import table
from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.items import decode_items
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.core import evaluate_run
from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
from pipeline_steps.formats.recordio import read_dense
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.publish.core import publish_run
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import choose_k, repackage
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import event, put_prepared, put_transform_output

N_USERS, N_ITEMS, FACTORS, X, EXTRA = 60, 40, 4, 3, 1
HEAVY = (7, 19, 33)  # users who have seen 30 of the 40 items


@pytest.mark.parametrize(
    ("seen", "quantile", "k", "over"),
    [
        ([2] * 99 + [500], 1.0, 510, 0),  # the old rule: the heaviest user sets k
        ([2] * 99 + [500], 0.99, 12, 1),  # the 99% quantile: one user beyond it
        ([2] * 90 + [30] * 10, 0.9, 12, 10),  # the smallest need covering >= 90% of the users
        ([2] * 89 + [30] * 11, 0.9, 40, 0),
        ([], 0.99, 10, 0),
    ],
)
def test_k_from_a_quantile_of_the_need(seen, quantile, k, over):
    assert choose_k(np.array(seen), x=10, n_items=5000, max_k=1000, quantile=quantile) == (k, over)


def test_k_quantile_bounds():
    with pytest.raises(ValueError, match=r"k_quantile: must be in \[0.5, 1.0\]"):
        config_from_dict(RepackageConfig, {"k_quantile": 0.2}, where="STEP_CONFIG")
    assert RepackageConfig().k_quantile == 0.99


def seen_rows(rng) -> list[list[int]]:
    return [
        sorted(rng.choice(N_ITEMS, size=30 if u in HEAVY else 2, replace=False).tolist())
        for u in range(N_USERS)
    ]


def exact_transform(s3, qm: dict) -> None:
    """The k-NN batch transform, exactly: every query's k best items by inner product."""
    items, _ = read_dense(s3.get_object(Bucket=BUCKET, Key="runs/r1/knn/train/items.rec")["Body"].read())
    for part, p in enumerate(qm["parts"]):
        queries, _ = read_dense(s3.get_object(Bucket=BUCKET, Key=p["key"])["Body"].read())
        scores = queries.astype(np.float64) @ items.astype(np.float64).T
        best = np.argsort(-scores, axis=1, kind="stable")[:, : qm["k"]]
        put_transform_output(s3, BUCKET, "r1", part, best + 1.0, np.take_along_axis(scores, best, axis=1))


def run(s3, dynamodb, seen, holdout, quantile: float) -> tuple[dict, dict]:
    rng = np.random.default_rng(3)
    model = FMModel(
        w0=0.1,
        w=rng.normal(size=N_USERS + N_ITEMS).astype(np.float32),
        V=rng.normal(size=(N_USERS + N_ITEMS, FACTORS)).astype(np.float32),
        feature_dim=N_USERS + N_ITEMS,
    )
    put_prepared(
        s3,
        BUCKET,
        "r1",
        users=[f"u{u}" for u in range(N_USERS)],
        items=[f"i{j}" for j in range(N_ITEMS)],
        seen=seen,
        holdout=holdout,
    )
    s3.put_object(Bucket=BUCKET, Key="runs/r1/fm/model.tar.gz", Body=fm_model_bytes(model, mtime=0))
    config = config_from_dict(
        RepackageConfig,
        {"x": X, "read_extra": EXTRA, "related_x": 0, "k_quantile": quantile, "users_per_shard": 25},
        where="t",
    )
    ev = {
        "run_id": "r1",
        "manifest_key": "runs/r1/prepared/manifest.json",
        "model_s3_uri": f"s3://{BUCKET}/runs/r1/fm/model.tar.gz",
    }
    out = repackage(s3=s3, bucket=BUCKET, event=ev, config=config)
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    exact_transform(s3, qm)
    publish = config_from_dict(
        PublishConfig,
        {"x": X, "read_extra": EXTRA, "related_x": 0, "base_backoff_seconds": 0.0},
        where="t",
    )
    publish_run(
        s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=event(BUCKET, "r1"), config=publish
    )
    evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, "r1"), config=EvaluateConfig(x=X))
    metrics = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/evaluation/metrics.json")["Body"].read())
    return qm, metrics


def test_heavy_users_beyond_the_quantile_still_get_x_unseen_items(s3, dynamodb):
    rng = np.random.default_rng(0)
    seen = seen_rows(rng)
    holdout = [[j for j in range(N_ITEMS) if j not in row][:1] for row in seen]
    qm, metrics = run(s3, dynamodb, seen, holdout, quantile=0.95)
    # need = x 3 + read_extra 1 + seen: 6 for 57 users (95%), 34 for the 3 heavy ones -> k = 6
    assert qm["k"] == 6 and qm["users_over_cap"] == 3 and qm["k_all_users"] == 34
    filled = {}
    for u, row in enumerate(seen):
        item = table.plain(dynamodb.get_item(TableName=TABLE, Key=table.user_key(f"u{u}", "r1")).get("Item"))
        got = [int(entry["item_id"][1:]) for entry in decode_items(item["items"])]
        assert len(got) == X + EXTRA, item
        assert not set(got) & set(row) and len(set(got)) == len(got)
        filled[u] = int(item.get("filled", 0))
    assert {u for u, n in filled.items() if n} <= set(HEAVY)
    assert all(filled[u] for u in HEAVY)  # 6 neighbours cannot leave 4 of 10 unseen items
    assert 1 <= metrics["users_filled"] <= len(HEAVY)  # evaluate scores the same topped-up lists
    assert metrics["transform_output"]["k"] == 6


def test_transform_output_per_user_shrinks_with_the_quantile(s3, dynamodb):
    rng = np.random.default_rng(0)
    seen = seen_rows(rng)
    holdout = [[j for j in range(N_ITEMS) if j not in row][:1] for row in seen]
    _, old = run(s3, dynamodb, seen, holdout, quantile=1.0)
    assert old["transform_output"]["k"] == 34 and old["users_filled"] == 0
    _, new = run(s3, dynamodb, seen, holdout, quantile=0.95)
    ratio = new["transform_output"]["bytes_per_user"] / old["transform_output"]["bytes_per_user"]
    assert 6 / 34 < ratio < 0.3  # k values per line plus a fixed part: a little over 6/34
