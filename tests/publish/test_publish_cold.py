"""Cold ids through prepare -> repackage -> publish -> query (decision 0018, "Cold start and protocols").

A cold user (metadata only) gets a list from their feature query, not the popularity fallback; a
cold item gets a vector from its features and can appear in lists; both are flagged in DynamoDB and
in the query result. The FM is written by hand: a `doctor` user column and the `Drama` item column
share a factor, `writer` and `Comedy` another; every one-hot factor and weight is 0.
"""

from __future__ import annotations

import json

import numpy as np

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
from pipeline_steps.formats.recordio import read_dense
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import S3Storage
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.query import clear_pointer_cache, get_recommendations, get_related
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import repackage
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import event, put_transform_output

NOW = 1_700_000_000.0
WRITERS, DOCTORS = ["u1", "u2", "u3", "u4"], ["u5", "u6"]
COMEDIES, DRAMAS = ["c1", "c2", "c3"], ["d1", "d2", "d3"]
RATINGS = "user_id,item_id,rating\n" + "".join(
    [f"{u},{i},5\n" for u in WRITERS for i in COMEDIES] + ["u5,d1,5\n", "u6,d2,5\n", "u1,d3,5\n"]
)
ITEMS = (
    "item_id,genres\n"
    + "".join(f"{i},Comedy\n" for i in COMEDIES)
    + "".join(f"{i},Drama\n" for i in [*DRAMAS, "d9"])
)  # d9: metadata only (cold)
USERS = (
    "user_id,occupation\n"
    + "".join(f"{u},writer\n" for u in WRITERS)
    + "".join(f"{u},doctor\n" for u in [*DOCTORS, "u9"])
)  # u9: metadata only (cold)


def _prepare(s3, **extra) -> dict:
    for key, body in {"input/r.csv": RATINGS, "meta/items/i.csv": ITEMS, "meta/users/u.csv": USERS}.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    config = PrepareConfig.from_dict(
        {
            "split": "none",
            "label_mode": "binary",
            "item_features": "meta/items/",
            "item_feature_columns": "genres:categorical",
            "user_features": "meta/users/",
            "user_feature_columns": "occupation:categorical",
            **extra,
        }
    )
    store = S3Storage(BUCKET, s3)
    return prepare(
        config, source=store, sink=store, run_id="r1", out_prefix="runs/r1/prepared/", bucket=BUCKET
    )


def _model(manifest: dict) -> FMModel:
    dim = manifest["feature_dim"]
    V = np.zeros((dim, 2), np.float32)
    fields = {f["name"]: f for f in manifest["features"]["fields"]}
    doctor, writer = fields["occupation"]["start"], fields["occupation"]["start"] + 1  # sorted values
    comedy, drama = fields["genres"]["start"], fields["genres"]["start"] + 1
    V[doctor, 0] = V[drama, 0] = 1.0
    V[writer, 1] = V[comedy, 1] = 1.0
    return FMModel(w0=0.0, w=np.zeros(dim, np.float32), V=V, feature_dim=dim)


def _exact_transform(s3, run_id: str, queries_manifest: dict) -> None:
    """What the k-NN transform returns: the k best items by inner product, per query line."""
    layout = RunLayout(run_id)
    items, _ = read_dense(s3.get_object(Bucket=BUCKET, Key=layout.knn_train_items)["Body"].read())
    k = int(queries_manifest["k"])
    families = [(p, False) for p in queries_manifest["parts"]]
    families += [(p, True) for p in queries_manifest.get("related_parts", [])]
    counters = {False: 0, True: 0}
    for part, related in families:
        queries, _ = read_dense(s3.get_object(Bucket=BUCKET, Key=part["key"])["Body"].read())
        scores = queries.astype(np.float64) @ items.astype(np.float64).T
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        put_transform_output(
            s3,
            BUCKET,
            run_id,
            counters[related],
            best + 1,
            np.take_along_axis(scores, best, axis=1),
            related=related,
        )
        counters[related] += 1


def _pipeline(s3, dynamodb, **prepare_extra) -> dict:
    manifest = _prepare(s3, **prepare_extra)
    s3.put_object(
        Bucket=BUCKET, Key="runs/r1/fm/j/output/model.tar.gz", Body=fm_model_bytes(_model(manifest))
    )
    rp_config = config_from_dict(RepackageConfig, {"read_extra": 0, "related_x": 3}, where="t")
    out = repackage(
        s3=s3,
        bucket=BUCKET,
        event={
            "run_id": "r1",
            "manifest_key": "runs/r1/prepared/manifest.json",
            "model_s3_uri": f"s3://{BUCKET}/runs/r1/fm/j/output/model.tar.gz",
        },
        config=rp_config,
    )
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    _exact_transform(s3, "r1", qm)
    pub = config_from_dict(
        PublishConfig,
        {"base_backoff_seconds": 0.0, "max_backoff_seconds": 0.0, "read_extra": 0, "related_x": 3, "x": 4},
        where="t",
    )
    core.publish_run(
        s3=s3,
        dynamodb=dynamodb,
        bucket=BUCKET,
        table_name=TABLE,
        event=event(BUCKET, "r1"),
        config=pub,
        now=NOW,
    )
    clear_pointer_cache()
    return manifest


def test_a_cold_user_gets_a_personalised_list_and_cold_items_are_recommended(s3, dynamodb):
    manifest = _pipeline(s3, dynamodb, cold_items=True)
    assert manifest["features"]["user"]["cold"] == 1 and manifest["features"]["item"]["cold"] == 1

    cold = get_recommendations("u9", table_name=TABLE, dynamodb=dynamodb)
    assert cold["cold"] is True and cold["fallback"] is False
    # a doctor: the four dramas (the cold d9 among them), not the popularity order (comedies first)
    assert {i["item_id"] for i in cold["items"]} == {"d1", "d2", "d3", "d9"}
    assert [i.get("cold", False) for i in cold["items"] if i["item_id"] == "d9"] == [True]
    assert not any(i.get("cold") for i in cold["items"] if i["item_id"] != "d9")
    unknown = get_recommendations("nobody", table_name=TABLE, dynamodb=dynamodb)
    assert unknown["fallback"] is True and "cold" not in unknown
    assert [i["item_id"] for i in unknown["items"]][:3] == COMEDIES
    assert [i["item_id"] for i in cold["items"]] != [i["item_id"] for i in unknown["items"]]

    # a warm doctor who has seen d1 gets the other dramas, d9 flagged; no user flag
    warm = get_recommendations("u5", table_name=TABLE, dynamodb=dynamodb)
    assert "cold" not in warm
    assert {i["item_id"] for i in warm["items"][:3]} == {"d2", "d3", "d9"}
    # the cold item has related items from its features (the other dramas), and is flagged
    related = get_related("d9", table_name=TABLE, dynamodb=dynamodb)
    assert related["cold"] is True and {i["item_id"] for i in related["items"]} == {"d1", "d2", "d3"}
    assert "cold" not in get_related("d1", table_name=TABLE, dynamodb=dynamodb)

    stored = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "u#u9"}, "sk": {"S": "r1"}})["Item"]
    assert stored["cold"] == {"BOOL": True}
    assert ["d9", 1.0, 1] in json.loads(stored["items"]["S"])
    warm_item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "u#u1"}, "sk": {"S": "r1"}})["Item"]
    assert "cold" not in warm_item


def test_without_cold_items_the_metadata_only_item_is_never_listed(s3, dynamodb):
    manifest = _pipeline(s3, dynamodb)  # the defaults: cold users on, cold items off
    assert "cold" not in manifest["features"]["item"] and manifest["n_items"] == 6
    cold = get_recommendations("u9", table_name=TABLE, dynamodb=dynamodb)
    assert cold["cold"] is True and {i["item_id"] for i in cold["items"][:3]} == set(DRAMAS)
    assert not any(i.get("cold") for i in cold["items"])


def test_with_cold_users_off_a_metadata_only_user_gets_the_fallback(s3, dynamodb):
    _pipeline(s3, dynamodb, cold_users=False)
    result = get_recommendations("u9", table_name=TABLE, dynamodb=dynamodb)
    assert result["fallback"] is True and "cold" not in result
