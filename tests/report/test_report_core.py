"""The report's figures on hand-made data: per-user quality, activity groups, coverage, drift, history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from pipeline_steps.report import core


def arr(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_per_user_precision_and_ndcg_match_the_definitions() -> None:
    recommended = [arr(0, 1, 2), arr(3, 4, 5), arr(6, 7, 8)]
    relevant = [arr(2), arr(), arr(6, 7)]
    q = core.per_user_quality(recommended, relevant, x=3)
    assert q["precision"][0] == pytest.approx(1 / 3)
    assert q["ndcg"][0] == pytest.approx((1 / np.log2(4)) / 1.0)  # hit at rank 3, ideal: rank 1
    assert np.isnan(q["precision"][1]) and np.isnan(q["ndcg"][1])  # no held-out item: not counted
    assert q["precision"][2] == pytest.approx(2 / 3) and q["ndcg"][2] == pytest.approx(1.0)


def test_activity_groups_split_users_by_train_interactions_into_equal_groups() -> None:
    activity = arr(1, 50, 2, 40, 3, 30, 99)
    precision = np.array([0.0, 1.0, 0.0, 1.0, 0.2, 0.6, np.nan])  # the last user has no held-out item
    groups = core.activity_groups(activity, {"precision": precision, "ndcg": precision / 2}, bins=3)
    assert [g["users"] for g in groups] == [2, 2, 2]
    assert [(g["min_activity"], g["max_activity"]) for g in groups] == [(1, 2), (3, 30), (40, 50)]
    assert [g["precision"] for g in groups] == pytest.approx([0.0, 0.4, 1.0])
    assert groups[2]["ndcg"] == pytest.approx(0.5)
    assert core.activity_groups(arr(), {"precision": np.array([])}, bins=10) == []
    # more groups than users: one user each
    assert len(core.activity_groups(arr(5, 6), {"precision": np.array([1.0, 0.0])}, bins=10)) == 2


def test_coverage_and_long_tail_curve() -> None:
    consumed = arr(100, 50, 10, 5, 0)  # item 0 is the most consumed
    rec = core.recommendation_counts([arr(0, 1), arr(0, 2), arr(0)], 5)
    assert rec.tolist() == [3, 1, 1, 0, 0]
    cov = core.coverage(rec, consumed, points=5)
    assert cov["items_recommended"] == 3 and cov["share_recommended"] == pytest.approx(0.6)
    curve = cov["curve"]
    assert curve["item_share"] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert curve["recommended"] == pytest.approx([0.6, 0.8, 1.0, 1.0, 1.0])
    assert curve["consumed"] == pytest.approx(np.cumsum([100, 50, 10, 5, 0]) / 165)
    assert cov["head_share"] == pytest.approx({"recommended": 0.6, "consumed": 100 / 165})


def test_score_summary_histogram_and_quantiles() -> None:
    s = core.score_summary(np.array([1.0, 2.0, 3.0, 4.0]), bins=3)
    assert s["count"] == 4 and sum(s["histogram"]["counts"]) == 4
    assert s["quantiles"]["min"] == 1.0 and s["quantiles"]["max"] == 4.0 and s["mean"] == 2.5
    assert core.score_summary(np.array([]))["count"] == 0


def test_drift_overlap_changed_share_and_items_entering_and_leaving() -> None:
    previous = {"u1": ["a", "b", "c"], "u2": ["a", "b", "c"], "u3": ["d", "e", "f"], "gone": ["z"]}
    current = {"u1": ["a", "b", "c"], "u2": ["b", "a", "c"], "u3": ["g", "h", "d"], "new": ["a"]}
    d = core.drift(current, previous, x=3)
    assert d["users_compared"] == 3 and d["new_users"] == 1 and d["gone_users"] == 1
    assert d["overlap_counts"] == [0, 1, 0, 2]  # u3 keeps 1 item, u1 and u2 keep all 3
    assert d["mean_overlap_at_x"] == pytest.approx((3 + 3 + 1) / 9)
    assert d["drift_at_x"] == pytest.approx(1 - 7 / 9)
    assert d["share_users_changed"] == pytest.approx(2 / 3)  # u2's order changed, u3's items changed
    assert (d["entering_sample"], d["leaving_sample"]) == (["g", "h"], ["e", "f", "z"])
    assert (d["items_entering"], d["items_leaving"]) == (2, 3)
    empty = core.drift({"a": ["x"]}, {"b": ["y"]}, x=1)
    assert empty["mean_overlap_at_x"] is None and empty["share_users_changed"] is None


def _record(run_id: str, started: str, status: str = "complete", ndcg: float = 0.2) -> dict:
    return {"pk": "run", "sk": run_id, "status": status, "started_at": started, "metrics": {"ndcg": ndcg}}


def test_quality_history_orders_complete_runs_and_stops_at_the_reported_run() -> None:
    runs = [
        _record("r3", "2026-01-03"),
        _record("r1", "2026-01-01", ndcg=0.1),
        _record("r2", "2026-01-02", status="writing"),  # never completed: not history
        _record("r4", "2026-01-04"),
    ]
    assert [r["run_id"] for r in core.quality_history(runs, limit=10, up_to="r4")] == ["r1", "r3", "r4"]
    assert [r["run_id"] for r in core.quality_history(runs, limit=10, up_to="r3")] == ["r1", "r3"]
    assert [r["run_id"] for r in core.quality_history(runs, limit=1, up_to="r4")] == ["r4"]
    history = core.quality_history(runs, limit=10, up_to="r3")
    assert core.previous_run(history, "r3")["run_id"] == "r1"
    assert core.previous_run(history, "r1") is None
    assert core.ratio({"ndcg": 0.15}, history[0]["metrics"], "ndcg") == pytest.approx(1.5)
    assert core.ratio({"ndcg": 0.15}, None, "ndcg") is None
    assert core.ratio({"ndcg": 0.15}, {"ndcg": 0.0}, "ndcg") is None


def test_stage_seconds_pairs_entered_and_exited_events() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def ev(kind: str, name: str, s: float) -> dict:
        key = "stateEnteredEventDetails" if kind.endswith("Entered") else "stateExitedEventDetails"
        return {"type": kind, "timestamp": t0 + timedelta(seconds=s), key: {"name": name}}

    events = [
        ev("TaskStateEntered", "Prepare", 0),
        ev("TaskStateExited", "Prepare", 1.5),
        ev("TaskStateEntered", "Publish", 2),
        ev("TaskStateExited", "Publish", 4),
        ev("TaskStateEntered", "Report", 4),  # still running: left out
    ]
    assert core.stage_seconds(events) == {"Prepare": 1.5, "Publish": 2.0}


def test_training_curve_and_metric_data() -> None:
    fm_output = {
        "loss_name": "xent",
        "epoch_history": [{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.4}],
    }
    curve = core.training_curve(fm_output, {"test:rmse": 1})
    assert curve == {
        "loss_name": "xent",
        "epochs": [1, 2],
        "train_loss": [0.5, 0.4],
        "final": {"test:rmse": 1.0},
    }
    assert core.training_curve(None, {})["epochs"] == []
    doc = {"ratio_vs_previous": 0.8, "drift": {"drift_at_x": 0.3, "share_users_changed": 0.9}}
    data = core.metric_data(doc, ratio_metric="ndcg")
    assert {d["MetricName"]: d["Value"] for d in data} == {
        "ndcg_ratio_vs_previous": 0.8,
        "drift_at_x": 0.3,
        "share_users_changed": 0.9,
    }
    assert core.metric_data({"ratio_vs_previous": None, "drift": None}, ratio_metric="ndcg") == []
