"""The project's own template and steps, end to end in the embedded AWS, on a small synthetic set.

One `python -m pipeline_steps.local run ... --rerun-epochs 1 --inject-failure fm` call: a successful
run (published, queryable, evaluated, reported), a second one on the same data with a shorter FM
(its report compares both: history, ratio, drift), then a run whose FM job fails (Catch -> SNS ->
Fail, pointer kept).
"""

from __future__ import annotations

import json
import random

import pytest

from pipeline_steps.local import cli

N_USERS, N_ITEMS, PER_USER, N_TEST = 240, 300, 30, 5


def _write_interactions(tmp_path):
    """Users in 4 taste groups, each group mostly rating its own quarter of the catalogue.

    Ids are strings with a comma and quotes inside (CSV-quoted), as the prepare step must accept.
    """
    rng = random.Random(7)
    items = [f'item "{i:03d}", ed. {i % 7}' for i in range(N_ITEMS)]
    base, test = ["user,item,rating,timestamp"], ["user,item,rating,timestamp"]
    for u in range(N_USERS):
        group = u % 4
        own = items[group * N_ITEMS // 4 : (group + 1) * N_ITEMS // 4]
        chosen = rng.sample(own, PER_USER - 6) + rng.sample(items, 6)
        chosen = list(dict.fromkeys(chosen))
        for n, item in enumerate(chosen):
            quoted = '"' + item.replace('"', '""') + '"'
            row = f"user-{u:04d},{quoted},{rng.choice([3, 4, 5])},{1_000_000 + n}"
            (test if n < N_TEST else base).append(row)
    ratings, held = tmp_path / "ratings.csv", tmp_path / "test.csv"
    ratings.write_text("\n".join(base) + "\n", encoding="utf-8")
    held.write_text("\n".join(test) + "\n", encoding="utf-8")
    return ratings, held, set(items)


def run_small(ratings, held, out, *extra: str) -> int:
    """`python -m pipeline_steps.local run` on the small set: x=5, a tiny, fast FM."""
    return cli.main(
        [
            "run",
            "--ratings",
            str(ratings),
            "--test",
            str(held),
            "--columns",
            "user,item,rating,timestamp",
            "--x",
            "5",
            "-c",
            "topx:fm.hyperparameters.epochs=3",
            "-c",
            "topx:fm.hyperparameters.num_factors=8",
            # lists of exactly x: the stored extra for read-time filters is covered by
            # test_local_filters_end_to_end
            "-c",
            "topx:publish.read_extra=0",
            *extra,
            "--out",
            str(out),
        ]
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    ratings, held, items = _write_interactions(tmp)
    out = tmp / "out"
    code = run_small(ratings, held, out, "--rerun-epochs", "1", "--inject-failure", "fm")
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return code, doc, items, out


def test_the_run_succeeds_through_every_state_and_publishes(report):
    code, doc, _, _ = report
    assert code == 0
    assert doc["status"] == "SUCCEEDED"
    for state in (
        "Guard",
        "Prepare",
        "TrainFM",
        "Repackage",
        "TrainKNN",
        "CreateModel",
        "Transform",
        "Evaluate",
        "Publish",
    ):
        assert state in doc["stage_seconds"], state
    assert doc["pointer"]["run_id"] == doc["run_id"]
    assert doc["counts"]["n_users"] == N_USERS
    assert doc["counts"]["holdout_pairs"] > 0


def test_a_query_returns_top_x_original_item_ids(report):
    _, doc, items, _ = report
    sample = doc["recommendations_sample"]
    assert sample, "no user was queried"
    first = sample[0]
    assert first["run_id"] == doc["run_id"] and first["fallback"] is False
    ids = [r["item_id"] for r in first["items"]]
    assert len(ids) == 5 and set(ids) <= items
    scores = [r["score"] for r in first["items"]]
    assert scores == sorted(scores, reverse=True)


def test_related_items_are_published_and_shown(report):
    _, doc, items, _ = report
    related = doc["related"]
    assert related["items_with_related"] == len(items)
    for item_id, entries in related["sample"].items():
        ids = [e["item_id"] for e in entries]
        assert item_id not in ids and 0 < len(ids) <= 10 and set(ids) <= items


def test_metrics_file_and_baseline_are_reported(report):
    _, doc, _, out = report
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["run_id"] == doc["run_id"] and metrics["x"] == 5
    for name in ("precision", "recall", "ndcg", "coverage"):
        assert 0.0 <= doc["metrics"][name] <= 1.0
        assert 0.0 <= doc["baseline"][name] <= 1.0
    fm = {"fm_test": doc["metrics"]["fm_test"], "fm_train": doc["metrics"]["fm_train"]}
    assert doc["metrics"] == {**metrics["model"], "x": 5, **fm}
    assert fm["fm_test"] and all(name.startswith("test:") for name in fm["fm_test"])


def test_the_report_state_wrote_the_run_report_page(report):
    _, doc, _, out = report
    assert "Report" in doc["stage_seconds"] and doc["report_html"] == "report.html"
    first = (out / f"report-{doc['run_id']}.html").read_text(encoding="utf-8")
    assert "no earlier run to compare with" in first  # the first run has no previous run
    page = (out / "report.html").read_text(encoding="utf-8")  # the second run's
    for section in ("metrics", "history", "activity", "coverage", "scores", "training", "drift", "stages"):
        assert f'<section id="{section}">' in page, section
    assert "http://" not in page and "https://" not in page
    # every section has its figure: metrics, history, activity, coverage, scores, training, drift, stages
    assert page.count("data:image/png;base64,") == 8
    rerun = doc["rerun"]
    assert rerun["status"] == "SUCCEEDED" and rerun["run_id"] in page and doc["run_id"] in page
    # the second run's report read the first run's lists (S3), the run records (Query) and the
    # execution history, and put its metrics, all under its role's IAM policies
    assert rerun["previous_run_id"] == doc["run_id"]
    assert rerun["ratio_vs_previous"] == pytest.approx(rerun["metrics"]["ndcg"] / doc["metrics"]["ndcg"])
    drift = rerun["drift"]
    assert drift["users_compared"] == N_USERS and 0 <= drift["mean_overlap_at_x"] < 1
    assert sum(drift["overlap_counts"]) == N_USERS and len(drift["overlap_counts"]) == 6  # 0..x, x = 5


def test_injected_fm_failure_takes_the_catch_path_and_keeps_the_pointer(report):
    _, doc, _, _ = report
    failure = doc["failure_injection"]
    assert failure["status"] == "FAILED"
    assert failure["path"][-2:] == ["NotifyFailure", "RunFailed"]
    assert "Publish" not in failure["path"]
    train = next(f for f in failure["failures"] if f["state"] == "TrainFM")
    assert train["error"] == "States.TaskFailed"
    assert "epochs" in json.loads(train["cause"])["FailureReason"]
    assert train["reason"] == json.loads(train["cause"])["FailureReason"]
    messages = [json.loads(m["message"]) for m in failure["notifications"]]
    assert [m["run"] for m in messages] == [failure["run_id"]]
    assert messages[0]["error"] == "States.TaskFailed"
    assert failure["pointer_unchanged"] is True
    current = doc["rerun"]["run_id"]  # the second successful run is the one published last
    assert failure["pointer_after"]["run_id"] == current
    assert failure["query_after"][0]["run_id"] == current
