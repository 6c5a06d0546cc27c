"""evaluate_run on contract-shaped inputs: metrics by hand, the baseline, every gate mode, CloudWatch."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import InputError
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.core import GateFailedError, evaluate_run
from pipeline_steps.publish import versioning
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import event, put_prepared, put_queries_manifest, put_transform_output


def setup_run(s3, run_id="r1"):
    """The model ranks each user's held-out item first; most-popular misses all of them."""
    put_prepared(
        s3,
        BUCKET,
        run_id,
        users=["u0", "u1", "u2", "u3"],
        items=[f"i{j}" for j in range(6)],
        seen=[[0], [0], [1], []],
        holdout=[[4], [5], [3], []],
    )
    put_queries_manifest(s3, BUCKET, run_id, part_sizes=[2, 2], k=3, n_items=6)
    # ordinals = item index + 1; INNER_PRODUCT: highest score is best
    put_transform_output(
        s3, BUCKET, run_id, 0, np.array([[5, 1, 3], [6, 2, 1]], float), np.array([[3, 2, 1], [3, 2, 1.0]])
    )
    put_transform_output(
        s3, BUCKET, run_id, 1, np.array([[4, 3, 2], [1, 2, 3]], float), np.array([[3, 2, 1], [3, 2, 1.0]])
    )
    return event(BUCKET, run_id)


def cfg(**kw) -> EvaluateConfig:
    return config_from_dict(EvaluateConfig, {"x": 2, **kw}, where="STEP_CONFIG")


def metrics_doc(s3, run_id="r1") -> dict:
    return json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"runs/{run_id}/evaluation/metrics.json")["Body"].read()
    )


def test_metrics_model_and_baseline(s3):
    out = evaluate_run(s3=s3, bucket=BUCKET, event=setup_run(s3), config=cfg())
    assert out["passed"] is True and out["metrics_key"] == "runs/r1/evaluation/metrics.json"
    assert out["model"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "hit_rate": 1.0, "coverage": 1.0}
    )
    assert out["baseline"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "hit_rate": 0.0, "coverage": 0.5}
    )
    doc = metrics_doc(s3)
    assert doc["n_eval_users"] == 3 and doc["x"] == 2 and doc["gate"] == {"passed": True, "checks": []}


def test_many_small_parts_with_a_blank_line_after_each_mini_batch(s3):
    whole = evaluate_run(s3=s3, bucket=BUCKET, event=setup_run(s3), config=cfg())
    labels = np.array([[5, 1, 3], [6, 2, 1], [4, 3, 2], [1, 2, 3]], float)
    scores = np.array([[3, 2, 1.0]] * 4)
    put_queries_manifest(s3, BUCKET, "r1", part_sizes=[1, 2, 1], k=3, n_items=6)
    for part, (rows, mini_batch) in enumerate([(slice(0, 1), 1), (slice(1, 3), 1), (slice(3, 4), 5)]):
        put_transform_output(s3, BUCKET, "r1", part, labels[rows], scores[rows], mini_batch=mini_batch)
    s3.delete_object(Bucket=BUCKET, Key="runs/r1/transform/users-00003.rec.out")
    assert (
        s3.get_object(Bucket=BUCKET, Key="runs/r1/transform/users-00001.rec.out")["Body"]
        .read()
        .count(b"\n\n")
        == 2
    )
    small = evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, "r1"), config=cfg())
    assert small["model"] == whole["model"] and small["baseline"] == whole["baseline"]
    put_transform_output(s3, BUCKET, "r1", 1, labels[1:2], scores[1:2], mini_batch=1)  # a line short
    with pytest.raises(InputError, match=r"users-00001.rec.out: 1 result lines, expected 2"):
        evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, "r1"), config=cfg())


def test_gate_absolute_floor(s3):
    ev = setup_run(s3)
    assert evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(min_precision=0.5, min_ndcg=0.9))["passed"]
    with pytest.raises(GateFailedError, match=r"min_precision: precision@2 = 0.5000 < 0.6000"):
        evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(min_precision=0.6))
    doc = metrics_doc(s3)  # written before failing, so the failed run can be inspected
    assert doc["gate"]["passed"] is False and doc["gate"]["checks"][0]["threshold"] == 0.6


def test_gate_lift_vs_baseline(s3):
    ev = setup_run(s3)
    assert evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(min_lift_vs_baseline=1.5))["passed"]
    with pytest.raises(GateFailedError, match="min_lift_vs_baseline: coverage@2"):
        evaluate_run(
            s3=s3, bucket=BUCKET, event=ev, config=cfg(gate_metric="coverage", min_lift_vs_baseline=2.5)
        )


def test_gate_vs_published_run(s3, dynamodb):
    ev = setup_run(s3)
    config = cfg(min_ratio_vs_published=0.9)
    kwargs = {"s3": s3, "bucket": BUCKET, "event": ev, "dynamodb": dynamodb, "table_name": TABLE}
    assert evaluate_run(config=config, **kwargs)["passed"]  # nothing published yet
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            **versioning.POINTER_KEY,
            "run_id": {"S": "r0"},
            "metrics": versioning.to_attr_map({"ndcg": 1.05}),
        },
    )
    assert evaluate_run(config=config, **kwargs)["passed"]  # 1.0 >= 0.9 * 1.05
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            **versioning.POINTER_KEY,
            "run_id": {"S": "r0"},
            "metrics": versioning.to_attr_map({"ndcg": 1.2}),
        },
    )
    with pytest.raises(GateFailedError, match=r"min_ratio_vs_published: ndcg@2 = 1.0000 < 1.0800"):
        evaluate_run(config=config, **kwargs)
    assert metrics_doc(s3)["published"] == {"run_id": "r0", "metrics": {"ndcg": 1.2}}


def test_gate_vs_published_reads_metrics_json_when_pointer_has_none(s3, dynamodb):
    ev = setup_run(s3)
    s3.put_object(
        Bucket=BUCKET, Key="runs/r0/evaluation/metrics.json", Body=json.dumps({"model": {"ndcg": 2.0}})
    )
    dynamodb.put_item(TableName=TABLE, Item={**versioning.POINTER_KEY, "run_id": {"S": "r0"}})
    with pytest.raises(GateFailedError, match=r"< 1\.2000"):
        evaluate_run(
            s3=s3,
            bucket=BUCKET,
            event=ev,
            config=cfg(min_ratio_vs_published=0.6),
            dynamodb=dynamodb,
            table_name=TABLE,
        )


def test_handler_with_cloudwatch(s3, dynamodb, monkeypatch):
    from pipeline_steps.evaluate import handler

    ev = setup_run(s3)
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv(
        "STEP_CONFIG",
        json.dumps(
            {
                "x": 2,
                "min_hit_rate": 0.5,
                "cloudwatch_namespace": "TopX",
                "cloudwatch_dimensions": {"Pipeline": "p1"},
            }
        ),
    )
    out = handler.handler(ev)
    assert out["passed"] is True and set(out) == {"metrics_key", "passed", "model", "baseline"}
    metrics = boto3.client("cloudwatch").list_metrics(Namespace="TopX")["Metrics"]
    names = {
        (m["MetricName"], tuple(sorted((d["Name"], d["Value"]) for d in m["Dimensions"]))) for m in metrics
    }
    assert ("precision_at_x", (("Pipeline", "p1"), ("Variant", "model"))) in names
    assert ("ndcg_at_x", (("Pipeline", "p1"), ("Variant", "baseline"))) in names


def test_related_lists_get_generic_checks_length_and_coverage(s3):
    """Item queries: self dropped, lists of related_x = 2 but one item is left one neighbour."""
    put_prepared(s3, BUCKET, "r1", users=["u0"], items=["i0", "i1", "i2", "i3"], seen=[[]], holdout=[[1]])
    put_queries_manifest(s3, BUCKET, "r1", part_sizes=[1], k=3, n_items=4, related_sizes=[4], related_x=2)
    put_transform_output(s3, BUCKET, "r1", 0, np.array([[2, 3, 1]], float), np.array([[3, 2, 1.0]]))
    labels = np.array([[1, 2, 3], [2, 1, 3], [3, 1, 2], [4, 1, 1]], float)  # item 3: itself + i0 twice
    put_transform_output(s3, BUCKET, "r1", 0, labels, np.array([[3, 2, 1.0]] * 4), related=True)
    evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, "r1"), config=cfg())
    related = metrics_doc(s3)["related"]
    assert related == {
        "related_x": 2,
        "n_items": 4,
        "mean_length": pytest.approx(7 / 4),
        "full_share": 0.75,
        "coverage": 0.75,  # i0, i1, i2 appear in some list; i3 in none
        "sample": {"parts_read": 1, "n_parts": 1},
    }


def test_no_related_section_without_item_queries(s3):
    evaluate_run(s3=s3, bucket=BUCKET, event=setup_run(s3), config=cfg())
    assert "related" not in metrics_doc(s3)


def sampled_run(s3, n_users: int = 40):
    """n_users users, 6 items; user u's held-out item is ranked first when u is even, missed when odd."""
    put_prepared(
        s3,
        BUCKET,
        "r1",
        users=[f"u{u}" for u in range(n_users)],
        items=[f"i{j}" for j in range(6)],
        seen=[[0]] * n_users,
        holdout=[[4]] * n_users,
    )
    put_queries_manifest(s3, BUCKET, "r1", part_sizes=[10] * (n_users // 10), k=3, n_items=6)
    hit, miss = [5.0, 2.0, 3.0], [2.0, 3.0, 4.0]  # ordinal 5 = item 4
    for part in range(n_users // 10):
        labels = np.array([hit if (part * 10 + r) % 2 == 0 else miss for r in range(10)])
        put_transform_output(s3, BUCKET, "r1", part, labels, np.array([[3.0, 2.0, 1.0]] * 10))
    return event(BUCKET, "r1")


def test_a_fixed_seed_sample_of_parts_with_a_cluster_interval(s3):
    ev = sampled_run(s3)
    whole = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=0))
    assert whole["model"]["hit_rate"] == 0.5
    doc = metrics_doc(s3)
    assert doc["n_eval_users"] == 40 and doc["sample"]["sampled"] is False
    # no sample: the per-user normal interval. hit rate: 20 ones, 20 zeros: s² = 40/39 * 0.25
    half = 1.959963984540054 * (0.25 * 40 / 39 / 40) ** 0.5
    assert doc["ci95"]["model"]["hit_rate"] == pytest.approx([0.5 - half, 0.5 + half])
    assert doc["ci95"]["model"]["coverage"] is None and doc["ci95"]["baseline"]["precision"] is not None

    sample = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=12, sample_seed=3))
    doc = metrics_doc(s3)
    # parts of 10 users in a seeded random order until >= 12 users: two whole parts, 20 users
    chosen = np.sort(np.random.default_rng(3).permutation(4)[:2])
    assert doc["n_eval_users"] == 20 and doc["sample"] == {
        "max_users": 12,
        "seed": 3,
        "n_eligible": 40,
        "sampled": True,
        "parts_read": 2,
        "n_parts": 4,
    }
    assert doc["ci95"]["method"].startswith("cluster sample of transform parts")
    users = np.concatenate([np.arange(10) + 10 * p for p in chosen])
    assert sample["model"]["hit_rate"] == pytest.approx(np.mean(users % 2 == 0))
    # every part has 5 hits of 10: the parts agree exactly, so the cluster interval has width 0
    assert doc["ci95"]["model"]["hit_rate"] == pytest.approx([0.5, 0.5])
    again = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=12, sample_seed=3))
    assert again["model"] == sample["model"] and metrics_doc(s3)["sample"] == doc["sample"]


def test_the_sample_parses_only_its_users_lines_and_skips_parts_without_them(s3):
    ev = sampled_run(s3)
    chosen = np.random.default_rng(3).permutation(4)[:1]  # max_users 2: one part of 10 is enough
    for part in range(4):  # garbage on every line outside the chosen part
        rows = [
            b'{"distances":[3.0,2.0,1.0],"labels":[5.0,2.0,3.0]}' if part in chosen else b"not json"
            for r in range(10)
        ]
        key = f"runs/r1/transform/users-{part:05d}.rec.out"
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"\n".join(rows) + b"\n")
    out = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=2, sample_seed=3))
    assert out["model"]["hit_rate"] == 1.0 and metrics_doc(s3)["n_eval_users"] == 10
    with pytest.raises(InputError, match="malformed JSON"):
        evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=0))


def test_the_gate_compares_the_point_estimate_not_the_interval(s3):
    ev = sampled_run(s3)
    # hit rate 0.5 with an interval reaching above 0.6: a floor of 0.6 still fails
    with pytest.raises(GateFailedError, match=r"min_hit_rate: hit_rate@2 = 0.5000 < 0.6000"):
        evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=0, min_hit_rate=0.6))
    assert metrics_doc(s3)["ci95"]["model"]["hit_rate"][1] > 0.6


def test_evaluate_never_reads_the_id_lists(s3):
    """Evaluate works on indices: the users' and items' id strings (0.6 GB at 10M users) stay unread."""
    ev = setup_run(s3)
    for name in ("users", "items"):
        s3.delete_object(Bucket=BUCKET, Key=f"runs/r1/prepared/{name}.json")
    assert evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg())["model"]["precision"] == 0.5
