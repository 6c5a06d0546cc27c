"""RunLayout spells the keys of docs/contracts.md; its wildcard form is what the IAM policies use."""

from __future__ import annotations

from pipeline_steps.common.layout import RunLayout


def test_keys_of_one_run() -> None:
    run = RunLayout("r1")
    assert run.manifest == "runs/r1/prepared/manifest.json"
    assert (run.train, run.test) == ("runs/r1/prepared/train/", "runs/r1/prepared/test/")
    assert run.prepared_files() == {
        "users": "runs/r1/prepared/users.json",
        "items": "runs/r1/prepared/items.json",
        "seen": "runs/r1/prepared/seen.npz",
        "holdout": "runs/r1/prepared/holdout.npz",
        "popularity": "runs/r1/prepared/popularity.npy",
        "report": "runs/r1/prepared/report.json",
    }
    assert run.fm == "runs/r1/fm/"
    assert run.knn_train_items == "runs/r1/knn/train/items.rec"
    assert run.queries_manifest == "runs/r1/knn/queries/manifest.json"
    assert run.queries_input == "runs/r1/knn/queries/users-"
    assert run.query_part(3, 5) == "runs/r1/knn/queries/users-00003.rec"
    # publish's slices: beside the ranges, not under the transform's input prefix `users-`
    assert run.publish_slice(17) == "runs/r1/knn/queries/publish-slice-00017.npz"
    assert run.publish_slice(123_456) == "runs/r1/knn/queries/publish-slice-123456.npz"
    assert run.knn_model == "runs/r1/knn/model/"
    assert run.transform == "runs/r1/transform/"
    assert run.metrics == "runs/r1/evaluation/metrics.json"
    assert RunLayout("r1", root="out/").manifest == "out/runs/r1/prepared/manifest.json"


def test_wildcard_gives_the_iam_key_patterns() -> None:
    any_run = RunLayout.wildcard()
    assert any_run.prepared == "runs/*/prepared/"
    assert any_run.knn_model == "runs/*/knn/model/"
    assert any_run.evaluation == "runs/*/evaluation/"
