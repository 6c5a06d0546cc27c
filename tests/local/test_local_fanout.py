"""The Distributed Map branch of the publish Choice (`topx:publish.fan_out_above_users` below the
run's user count) run end to end in the embedded AWS, with a transform of three instances.

Queries are cut into 100-user shards, so the transform writes three `.out` parts for the users and
three for the item queries (300 items, related items), and publish fans out over all six (one
`PublishPart` per part: S3 lists the user parts first), then `PublishFinalize` flips the pointer once.
"""

from __future__ import annotations

import json

from .test_local_end_to_end import N_USERS, _write_interactions, run_small


def test_publish_fans_out_over_every_transform_part(tmp_path, capsys):
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
    )
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    # 240 users / 100 per shard + 300 item queries / 100: the transform wrote six parts ...
    assert capsys.readouterr().out.count(" records -> s3://") == 6
    assert code == 0 and doc["status"] == "SUCCEEDED"
    assert {"PublishParts", "PublishFinalize"} <= set(doc["stage_seconds"])
    assert "Publish" not in doc["stage_seconds"]
    # ... and finalize only flips the pointer once every part's run record says it is written
    assert doc["pointer"]["run_id"] == doc["run_id"]
    sample = doc["recommendations_sample"]
    assert sample and all(len(s["items"]) == 5 for s in sample)
    assert all({r["item_id"] for r in s["items"]} <= items for s in sample)
    assert doc["counts"]["n_users"] == N_USERS
    assert doc["related"]["items_with_related"] == 300  # the item parts were published too
