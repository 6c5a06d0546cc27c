"""`make demo-features` (`demo --features`): side features and the cold protocols (decision 0018),
run_local faked."""

from __future__ import annotations

import re

from pipeline_steps.datasets import movielens
from pipeline_steps.local import cli
from pipeline_steps.local import report as reporting


def _fake_demo(tmp_path, monkeypatch, *argv: str) -> dict:
    base, test = tmp_path / "ua.base", tmp_path / "ua.test"
    base.write_text("1\t1\t5\t1\n", encoding="utf-8")
    test.write_text("1\t2\t4\t2\n", encoding="utf-8")
    items, users = tmp_path / "item-features.tsv", tmp_path / "user-features.tsv"
    items.write_text("item_id\ttitle\tyear\tgenres\n1\tToy Story\t1995\tAnimation Comedy\n", encoding="utf-8")
    users.write_text("user_id\tage\tgender\toccupation\tzip_code\n1\t24\tM\twriter\t1\n", encoding="utf-8")
    ds = movielens.MovieLens100k(
        u_data=base,
        ua_base=base,
        ua_test=test,
        titles={"1": "Toy Story (1995)"},
        genres={},
        item_features=items,
        user_features=users,
    )
    monkeypatch.setattr(movielens, "load", lambda: ds)
    seen: dict = {}
    monkeypatch.setattr(cli, "run_local", lambda **kw: seen.update(kw) or {"status": "SUCCEEDED"})
    assert cli.main(["demo", "--out", str(tmp_path / "out"), *argv]) == 0
    return seen


def test_the_demo_runs_with_ml100k_features_and_the_cold_protocols(tmp_path, monkeypatch):
    seen = _fake_demo(tmp_path, monkeypatch, "--features")
    o = seen["overrides"]
    assert o["topx:prepare.item_features"] == "metadata/items/"
    assert o["topx:prepare.item_feature_columns"] == "genres:multi:space,year:numeric:5"
    assert o["topx:prepare.user_features"] == "metadata/users/"
    assert o["topx:prepare.user_feature_columns"] == "age:numeric:5,gender:categorical,occupation:categorical"
    assert o["topx:prepare.cold_protocols"] is True
    assert o["topx:prepare.feature_weight"] == 0.25  # decision 0018, "Field weight"
    keys = [key for key, _ in seen["uploads"]]
    assert {"metadata/items/item-features.tsv", "metadata/users/user-features.tsv"} <= set(keys)


def test_the_demo_protocols_can_be_turned_off(tmp_path, monkeypatch):
    seen = _fake_demo(tmp_path, monkeypatch, "--features", "-c", "topx:prepare.cold_protocols=false")
    assert seen["overrides"]["topx:prepare.cold_protocols"] is False


def test_the_demo_feature_weight_can_be_set(tmp_path, monkeypatch):
    seen = _fake_demo(tmp_path, monkeypatch, "--features", "-c", "topx:prepare.feature_weight=1")
    assert seen["overrides"]["topx:prepare.feature_weight"] == 1


def test_the_plain_demo_has_no_features(tmp_path, monkeypatch):
    seen = _fake_demo(tmp_path, monkeypatch)
    assert not [key for key in seen["overrides"] if "feature" in key or "cold" in key]
    assert not [key for key, _ in seen["uploads"] if key.startswith("metadata/")]


def test_cold_metrics_are_printed_next_to_their_baselines():
    lines: list[str] = []
    doc = {
        "x": 10,
        "cold_users": {
            "metrics": {"precision": 0.0612, "ndcg": 0.07},
            "baseline": {"precision": 0.0587, "ndcg": 0.0},
            "n_eval_users": 94,
            "candidates": 1512,
        },
        "cold_items": {
            "metrics": {"ndcg": 0.31},
            "baseline": {"ndcg": 0.22},
            "random": {"ndcg": 0.12},
            "n_eval_users": 700,
            "held_out_items": 168,
        },
    }
    reporting.print_cold_metrics(doc, lines.append)
    text = "\n".join(lines)
    assert "cold users: 94 held-out users, each ranking 1512 items" in text
    assert "0.0612" in text and "0.0587" in text
    assert re.search(r"ndcg\s+0\.0700\s+0\.0000\n", text)  # a baseline of 0 is shown as 0, not as nan
    assert "cold items: 700 users ranking the 168 held-out items" in text
    assert "0.3100" in text and "0.2200" in text and "0.1200" in text


def test_cold_list_entries_are_marked():
    lines: list[str] = []
    rec = {
        "user_id": "7",
        "run_id": "r1",
        "items": [{"item_id": "1", "score": 1.0}, {"item_id": "9", "score": 0.5, "cold": True}],
    }
    reporting.print_recommendations([rec], {"1": "Toy Story"}, lines.append)
    assert lines[-1].endswith("[cold]") and not lines[-2].endswith("[cold]")


def test_the_local_report_json_carries_the_cold_protocols():
    from pipeline_steps.local.progress import ExecutionResult
    from pipeline_steps.local.runner import RunOutcome

    metrics = {
        "x": 10,
        "model": {"precision": 0.2},
        "baseline": {"precision": 0.1},
        "cold_users": {"metrics": {"precision": 0.3}, "baseline": {"precision": 0.31}, "ci95": {}},
    }
    outcome = RunOutcome(
        run_id="r1", result=ExecutionResult(execution_arn="a", status="SUCCEEDED"), metrics=metrics
    )
    doc = reporting.build_report(
        outcome=outcome,
        dataset="d",
        deploy_seconds=1.0,
        total_seconds=2.0,
        recommendations=[],
        failure=None,
        skipped=[],
    )
    assert doc["cold_users"] == {"metrics": {"precision": 0.3}, "baseline": {"precision": 0.31}}
    assert "cold_items" not in doc and doc["metrics"]["precision"] == 0.2
    plain = reporting.build_report(
        outcome=RunOutcome(run_id="r1", result=outcome.result, metrics={"model": {}, "baseline": {}}),
        dataset="d",
        deploy_seconds=1.0,
        total_seconds=2.0,
        recommendations=[],
        failure=None,
        skipped=[],
    )
    assert "cold_users" not in plain
