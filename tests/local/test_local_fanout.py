"""The Distributed Map branch of the publish Choice (`topx:publish.fan_out_above_users` below the
run's user count) run end to end in the embedded AWS, with a transform of three instances.

Queries are cut into 100-user shards, so the transform writes three `.out` parts for the users and
three for the item queries (300 items, related items). Publish fans out over ranges of them
(decision 0015 "Publish fan-out in batches"): with `users_per_child=200` repackage's
publish-batches.json holds parts 0-1 (200 users), 2-3 (40 users + 100 items) and 4-5 (200 items),
the Map's JSON ItemReader gives one `PublishPart` child each, and `PublishFinalize` flips the pointer
once.
"""

from __future__ import annotations

import json

from .test_local_end_to_end import N_USERS, _write_interactions, run_small


def test_publish_fans_out_over_ranges_of_the_transform_parts(tmp_path, capsys, monkeypatch):
    from pipeline_steps.publish import core

    children: list[list[int]] = []
    publish_parts = core.publish_parts

    def recorded(**kw):  # the Lambdas run in this process (pipeline_steps/local/adapter.py)
        children.append(list(kw["parts"]))
        return publish_parts(**kw)

    monkeypatch.setattr(core, "publish_parts", recorded)
    ratings, held, items = _write_interactions(tmp_path)
    out = tmp_path / "out"
    code = run_small(
        ratings,
        held,
        out,
        "-c",
        "topx:repackage.users_per_shard=100",
        "-c",
        "topx:publish.fan_out_above_users=239",
        "-c",
        "topx:transform.instance_count=3",
        "-c",
        "topx:publish.users_per_child=200",
    )
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # 240 users / 100 per shard + 300 item queries / 100: the transform wrote six parts ...
    assert capsys.readouterr().out.count(" records -> s3://") == 6
    assert code == 0 and doc["status"] == "SUCCEEDED"
    assert {"PublishParts", "PublishFinalize"} <= set(doc["stage_seconds"])
    assert "Publish" not in doc["stage_seconds"]
    # one child per range, every part exactly once (the children run concurrently: any order)
    assert sorted(children) == [[0, 1], [2, 3], [4, 5]]
    # ... and finalize only flips the pointer once every part's run record says it is written
    assert doc["pointer"]["run_id"] == doc["run_id"]
    sample = doc["recommendations_sample"]
    assert sample and all(len(s["items"]) == 5 for s in sample)
    assert all({r["item_id"] for r in s["items"]} <= items for s in sample)
    assert doc["counts"]["n_users"] == N_USERS
    assert doc["related"]["items_with_related"] == 300  # the item parts were published too
