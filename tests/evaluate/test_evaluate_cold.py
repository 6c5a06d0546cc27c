"""The cold protocols in evaluate (decision 0018): `cold_users` and `cold_items` in metrics.json.

The run goes through prepare (protocols on), a hand-written FM, repackage and an exact transform.
Users of occupation o<g> interact with items of genre g<g>; the FM shares one factor between o<g> and
g<g>, so ranking from features finds the held-out users' and items' interactions, and popularity
(equal across the groups) and random orders do not.
"""

from __future__ import annotations

import json

import numpy as np

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.runio import Csr
from pipeline_steps.evaluate.cold import category_popularity, top_random_ties
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.core import evaluate_run
from pipeline_steps.evaluate.metrics import METRIC_NAMES
from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import S3Storage
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import repackage
from tests.conftest import BUCKET
from tests.prepared_run import event
from tests.publish.test_publish_cold import _exact_transform

GROUPS, USERS, ITEMS = 3, 60, 30
RATINGS = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{i},5,{(37 * u + 17 * i) % 1009}\n"
    for u in range(USERS)
    for i in range(ITEMS)
    if u % GROUPS == i % GROUPS
)
ITEM_META = "item_id,genre\n" + "".join(f"i{i},g{i % GROUPS}\n" for i in range(ITEMS))
USER_META = "user_id,occupation\n" + "".join(f"u{u},o{u % GROUPS}\n" for u in range(USERS))


def _run(s3, **extra) -> dict:
    for key, body in {"input/r.csv": RATINGS, "meta/i/i.csv": ITEM_META, "meta/u/u.csv": USER_META}.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    config = PrepareConfig.from_dict(
        {
            "split": "last_n",
            "holdout_n": 2,
            "item_features": "meta/i/",
            "item_feature_columns": "genre:categorical",
            "user_features": "meta/u/",
            "user_feature_columns": "occupation:categorical",
            "cold_protocols": True,
            **extra,
        }
    )
    store = S3Storage(BUCKET, s3)
    manifest = prepare(
        config, source=store, sink=store, run_id="r1", out_prefix="runs/r1/prepared/", bucket=BUCKET
    )
    dim = manifest["feature_dim"]
    V = np.zeros((dim, GROUPS), np.float32)
    fields = {f["name"]: f for f in manifest["features"]["fields"]}
    for g in range(GROUPS):  # values sorted: o0, o1, o2 / g0, g1, g2
        V[fields["occupation"]["start"] + g, g] = V[fields["genre"]["start"] + g, g] = 1.0
    model = FMModel(w0=0.0, w=np.zeros(dim, np.float32), V=V, feature_dim=dim)
    s3.put_object(Bucket=BUCKET, Key="runs/r1/fm/j/output/model.tar.gz", Body=fm_model_bytes(model))
    out = repackage(
        s3=s3,
        bucket=BUCKET,
        event={
            "run_id": "r1",
            "manifest_key": "runs/r1/prepared/manifest.json",
            "model_s3_uri": f"s3://{BUCKET}/runs/r1/fm/j/output/model.tar.gz",
        },
        config=config_from_dict(RepackageConfig, {"read_extra": 0, "related_x": 0}, where="t"),
    )
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    _exact_transform(s3, "r1", qm)
    return manifest


def _evaluate(s3, **kw) -> dict:
    config = config_from_dict(EvaluateConfig, {"x": 5, **kw}, where="t")
    evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, "r1"), config=config)
    return json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/evaluation/metrics.json")["Body"].read())


def test_cold_users_and_items_get_their_own_metrics_and_baselines(s3):
    manifest = _run(s3)
    doc = _evaluate(s3)
    protocols = manifest["features"]["protocols"]
    assert protocols["user"]["stop"] - protocols["user"]["start"] == 6  # 10% of 60
    assert protocols["item"]["stop"] - protocols["item"]["start"] == 3  # 10% of 30
    users, items = doc["cold_users"], doc["cold_items"]
    for entry in (users, items):
        assert set(entry["metrics"]) == set(entry["baseline"]) == set(doc["model"]) == set(METRIC_NAMES)
    assert set(items["random"]) == set(METRIC_NAMES)
    assert users["held_out_users"] == 6 and users["n_eval_users"] == 6
    assert users["candidates"] == manifest["n_items"] - 3
    # every listed item of a cold user's group is one of theirs: precision 1 (each has >= 5 items)
    assert users["metrics"]["precision"] == 1.0
    assert users["baseline"]["precision"] < 0.7  # one popularity list for the three groups
    # each user who interacted with a held-out item: the model ranks their group's first
    assert items["metrics"]["ndcg"] == 1.0
    assert items["n_eval_users"] > 0 and items["held_out_items"] == 3
    assert items["random"]["ndcg"] < items["metrics"]["ndcg"]
    # the warm protocol is still there, unchanged in shape
    assert set(doc["model"]) == set(METRIC_NAMES) and "baseline" in doc


def test_without_protocols_metrics_json_has_no_cold_entries(s3):
    _run(s3, cold_protocols=False)
    doc = _evaluate(s3)
    assert "cold_users" not in doc and "cold_items" not in doc


def test_category_popularity_is_the_mean_popularity_of_the_warm_items_of_each_category():
    # items 0, 1: category column 10; item 2: columns 10 and 11 (0.5 each); item 3 (cold): column 11;
    # item 4 (cold): a column no warm item has
    indptr = np.array([0, 1, 2, 4, 5, 6])
    indices = np.array([10, 10, 10, 11, 11, 12])
    data = np.array([1.0, 1.0, 0.5, 0.5, 1.0, 1.0], np.float32)
    popularity = np.array([6, 2, 4, 0, 0])
    warm = np.array([True, True, True, False, False])
    scores = category_popularity(
        Csr(indptr=indptr, indices=indices), data, np.array([10, 11, 12]), popularity, warm
    )
    # column 10: mean of 6, 2, 4 = 4; column 11: item 2 only = 4 ... item 3 -> 4, item 4 -> 0
    np.testing.assert_allclose(scores, [4.0, 4.0, 0.5 * 4 + 0.5 * 4, 4.0, 0.0])


def test_the_gate_checks_the_cold_lifts(s3):
    import pytest

    from pipeline_steps.evaluate.core import GateFailedError

    _run(s3)
    doc = _evaluate(s3, min_cold_users_lift=1.0, min_cold_items_lift=1.0)
    checks = {c["check"]: c for c in doc["gate"]["checks"]}
    users = checks["min_cold_users_lift"]
    assert users["passed"] and users["value"] == doc["cold_users"]["metrics"]["ndcg"]
    assert users["reference"] == doc["cold_users"]["baseline"]["ndcg"]
    with pytest.raises(GateFailedError, match=r"min_cold_items_lift: ndcg@5 = 1\.0000 < "):
        _evaluate(s3, min_cold_items_lift=100.0)
    failed = json.loads(s3.get_object(Bucket=BUCKET, Key="runs/r1/evaluation/metrics.json")["Body"].read())
    assert failed["gate"]["passed"] is False


def test_the_cold_gate_is_skipped_without_the_protocols(s3):
    _run(s3, cold_protocols=False)
    doc = _evaluate(s3, min_cold_users_lift=5.0)
    (check,) = [c for c in doc["gate"]["checks"] if c["check"] == "min_cold_users_lift"]
    assert check["passed"] and "no cold_users protocol" in check["skipped"]


def test_the_category_baseline_breaks_ties_at_random_not_by_index():
    # Ten items of one category (one score) and the relevant item is the lowest index: ties by index
    # would list it first for every user; a random order per user lists it first about 1 in 10.
    candidates = np.arange(100, 110)
    scores = np.full(10, 3.0)
    rng = np.random.default_rng(0)
    firsts = np.array([top_random_ties(scores, candidates, 3, rng)[0] for _ in range(2000)])
    assert 0.07 < float(np.mean(firsts == 100)) < 0.13
    assert set(np.unique(firsts)) == set(candidates.tolist())
    # distinct scores keep their order whatever the draw; ties only reorder among themselves
    scores = np.array([5.0, 1.0, 5.0, 9.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    for _ in range(50):
        top = top_random_ties(scores, candidates, 5, rng)
        assert top[0] == 103 and set(top[1:3]) == {100, 102} and set(top[3:5]) == {101, 104}


def test_cold_items_baseline_lists_tied_items_in_a_random_order_per_user(s3):
    # Held-out items of equally popular genres tie on category popularity: ties broken by index
    # would give every user the same first item (coverage of one item); at random they vary.
    manifest = _run(s3)
    items = _evaluate(s3, x=1)["cold_items"]
    assert items["n_eval_users"] >= 30
    assert items["baseline"]["coverage"] * manifest["n_items"] >= 2
