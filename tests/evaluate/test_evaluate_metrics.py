"""Ranking metrics by hand, the popularity baseline and every gate mode (pure, no AWS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.runio import Csr
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.gate import check, failure_message
from pipeline_steps.evaluate.metrics import MetricAccumulator, baseline_metrics, popular_top_x


def csr(rows: list[list[int]]) -> Csr:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return Csr(indptr=indptr, indices=indices)


def test_metrics_by_hand():
    acc = MetricAccumulator(x=3, n_items=8)
    acc.add(np.array([3, 1, 2]), np.array([1, 5]))  # one hit at rank 2 of 2 relevant
    acc.add(np.array([0, 4, 5]), np.array([], dtype=np.int32))  # no holdout: coverage only
    acc.add(np.array([4]), np.array([4]))  # short list, hit at rank 1
    got = acc.result()
    ndcg_u0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert acc.n_users == 2
    assert got["precision"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert got["recall"] == pytest.approx((0.5 + 1.0) / 2)
    assert got["ndcg"] == pytest.approx((ndcg_u0 + 1.0) / 2)
    assert got["map"] == pytest.approx((0.5 / 2 + 1.0) / 2)
    assert got["hit_rate"] == pytest.approx(1.0)
    assert got["coverage"] == pytest.approx(6 / 8)


def test_metrics_without_holdout_users_are_undefined():
    acc = MetricAccumulator(x=2, n_items=3)
    acc.add(np.array([0, 1]), np.array([], dtype=np.int32))
    got = acc.result()
    assert math.isnan(got["precision"]) and got["coverage"] == pytest.approx(2 / 3)


def test_popular_baseline_excludes_seen():
    popularity = np.array([5, 9, 9, 1, 0])
    order = np.lexsort((np.arange(5), -popularity))
    assert popular_top_x(order, np.array([1], dtype=np.int32), 2).tolist() == [2, 0]
    seen, holdout = csr([[1], [0, 2]]), csr([[2], [3]])
    metrics, n = baseline_metrics(popularity, seen, holdout, x=2)
    # user 0 gets [2, 0] (hit at rank 1), user 1 gets [1, 3] (hit at rank 2)
    assert n == 2
    assert metrics["precision"] == pytest.approx(0.5)
    assert metrics["hit_rate"] == pytest.approx(1.0)
    assert metrics["coverage"] == pytest.approx(4 / 5)


MODEL = {"precision": 0.20, "recall": 0.1, "ndcg": 0.30, "map": 0.1, "hit_rate": 0.6, "coverage": 0.3}
BASE = {"precision": 0.15, "recall": 0.1, "ndcg": 0.25, "map": 0.1, "hit_rate": 0.5, "coverage": 0.01}


def cfg(**kw) -> EvaluateConfig:
    return config_from_dict(EvaluateConfig, kw, where="STEP_CONFIG")


@pytest.mark.parametrize(
    ("config", "published", "passed"),
    [
        ({}, None, True),
        ({"min_precision": 0.19}, None, True),
        ({"min_precision": 0.21}, None, False),
        ({"min_ndcg": 0.1, "min_hit_rate": 0.7}, None, False),
        ({"min_lift_vs_baseline": 1.1}, None, True),  # 0.30 >= 1.1 * 0.25
        ({"min_lift_vs_baseline": 1.3}, None, False),
        ({"min_ratio_vs_published": 0.95}, {"ndcg": 0.31}, True),
        ({"min_ratio_vs_published": 0.99}, {"ndcg": 0.31}, False),
        ({"min_ratio_vs_published": 0.99}, None, True),  # first publish: nothing to compare
        ({"min_lift_vs_baseline": 1.0, "gate_metric": "precision"}, None, True),
        ({"min_lift_vs_baseline": 1.5, "gate_metric": "precision"}, None, False),
    ],
)
def test_gate_modes(config, published, passed):
    checks = check(cfg(**config), MODEL, BASE, published, "r0" if published else None)
    assert all(c["passed"] for c in checks) is passed
    if not passed:
        message = failure_message("r1", 10, checks)
        assert message.startswith("run r1 failed the gate (") and "nothing is published" in message


def test_gate_never_passes_undefined_metrics():
    undefined = {**MODEL, "precision": float("nan")}
    checks = check(cfg(min_precision=0.0), undefined, BASE, None, None)
    assert checks[0]["passed"] is False
    assert "undefined" in failure_message("r", 10, checks)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"min_precison": 0.1}, "unknown key"),
        ({"x": "10"}, r"STEP_CONFIG.x: expected an integer"),
        ({"x": 0}, r"STEP_CONFIG.x: must be in 1..1000"),
        ({"min_precision": 2}, "min_precision: must be in"),
        ({"gate_metric": "auc"}, "gate_metric: 'auc' is not one of 'precision'"),
        ({"index_metric": "DOT"}, "index_metric: 'DOT' is not one of 'INNER_PRODUCT'"),
    ],
)
def test_evaluate_config_errors(data, match):
    with pytest.raises(InputError, match=match):
        cfg(**data)
