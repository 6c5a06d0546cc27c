"""Repackage: FM model -> k-NN items/queries; inner product == FM score - w0 - w_u, both layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.formats import mxnet_params
from pipeline_steps.formats.artifact import Member, model_tar_gz, stored_zip
from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
from pipeline_steps.formats.recordio import read_dense
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import FeatureDimMismatchError, choose_k, repackage
from tests.conftest import BUCKET
from tests.prepared_run import put_prepared

N_USERS, N_ITEMS, FACTORS = 7, 5, 3


def random_model(rng, feature_dim=N_USERS + N_ITEMS) -> FMModel:
    return FMModel(
        w0=float(rng.normal()),
        w=rng.normal(size=feature_dim).astype(np.float32),
        V=rng.normal(size=(feature_dim, FACTORS)).astype(np.float32),
        feature_dim=feature_dim,
        hyperparameters={"predictor_type": "binary_classifier", "epochs": "1"},
    )


def layout_b_bytes(model: FMModel) -> bytes:
    """The (k, N) / (1, N) FullyConnected layout some FM artifacts use (docs/formats.md §2)."""
    meta = {"training_parameters": {"feature_dim": str(model.feature_dim)}, "version": 1, "epoch_number": 1}
    params = mxnet_params.dump(
        {
            "arg:v": np.ascontiguousarray(model.V.T),
            "arg:Linear_Plus_Bias_weight": model.w.reshape(1, -1),
            "arg:Linear_Plus_Bias_bias": np.array([model.w0], np.float32),
        }
    )
    zipped = stored_zip(
        [("meta.json", json.dumps(meta).encode()), ("symbol.json", b"{}"), ("params", params)]
    )
    return model_tar_gz([Member("model_algo-1", zipped, 0)])


def fm_score(model: FMModel, u: int, i: int) -> float:
    """Rendle's formula on the one-hot row of (user u, item i), independent of the repackaging."""
    x = np.zeros(model.feature_dim)
    x[u] = x[N_USERS + i] = 1.0
    V = model.V.astype(np.float64)
    pair = 0.5 * float(((x @ V) ** 2 - (x**2) @ (V**2)).sum())
    return model.w0 + float(x @ model.w) + pair


def setup(s3, rng, body: bytes, seen=None):
    seen = seen if seen is not None else [[0], [1, 2, 3], [], [4], [], [0, 1], []]
    put_prepared(
        s3,
        BUCKET,
        "r1",
        users=[f"u{i}" for i in range(N_USERS)],
        items=[f"i{j}" for j in range(N_ITEMS)],
        seen=seen,
    )
    s3.put_object(Bucket=BUCKET, Key="runs/r1/fm/r1-fm/output/model.tar.gz", Body=body)
    return {
        "run_id": "r1",
        "manifest_key": "runs/r1/prepared/manifest.json",
        "model_s3_uri": f"s3://{BUCKET}/runs/r1/fm/r1-fm/output/model.tar.gz",
    }


def cfg(**kw) -> RepackageConfig:
    """Related items and the read-time extra off unless a test turns them on (the k of older tests)."""
    return config_from_dict(RepackageConfig, {"read_extra": 0, "related_x": 0, **kw}, where="STEP_CONFIG")


def read(s3, key):
    return read_dense(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.mark.parametrize("layout", ["A", "B"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_product_is_fm_score_minus_user_constants(s3, layout, seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    body = fm_model_bytes(model, mtime=0) if layout == "A" else layout_b_bytes(model)
    out = repackage(s3=s3, bucket=BUCKET, event=setup(s3, rng, body), config=cfg(x=2, users_per_shard=3))

    items, labels = read(s3, "runs/r1/knn/train/items.rec")
    assert items.dtype == np.float32 and items.shape == (N_ITEMS, FACTORS + 1)
    assert labels.dtype == np.float32 and labels.reshape(-1).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    assert [(p["key"], p["first_user"], p["n_users"]) for p in qm["parts"]] == [
        ("runs/r1/knn/queries/users-00000.rec", 0, 3),
        ("runs/r1/knn/queries/users-00001.rec", 3, 3),
        ("runs/r1/knn/queries/users-00002.rec", 6, 1),
    ]
    queries = []
    for p in qm["parts"]:
        q, q_labels = read(s3, p["key"])
        assert q_labels is None
        queries.append(q)
    queries = np.vstack(queries)
    assert queries.shape == (N_USERS, FACTORS + 1) and np.all(queries[:, -1] == 1.0)

    ip = queries.astype(np.float64) @ items.astype(np.float64).T
    for u in range(N_USERS):
        for i in range(N_ITEMS):
            expected = fm_score(model, u, i) - model.w0 - float(model.w[u])
            assert ip[u, i] == pytest.approx(expected, rel=1e-5, abs=1e-5)
        # ranking by inner product == ranking by FM score for the user
        scores = [fm_score(model, u, i) for i in range(N_ITEMS)]
        assert np.argmax(ip[u]) == int(np.argmax(scores))


def test_returns_contract_strings_and_separate_keys(s3):
    rng = np.random.default_rng(5)
    out = repackage(
        s3=s3, bucket=BUCKET, event=setup(s3, rng, fm_model_bytes(random_model(rng))), config=cfg(x=1)
    )
    assert out == {
        "knn_train_s3_uri": f"s3://{BUCKET}/runs/r1/knn/train/",
        "queries_s3_uri": f"s3://{BUCKET}/runs/r1/knn/queries/users-",
        "feature_dim": str(FACTORS + 1),
        "k": "4",  # x 1 + max seen 3, < n_items 5
        "sample_size": str(N_ITEMS),
        "queries_manifest_key": "runs/r1/knn/queries/manifest.json",
        "n_users": N_USERS,  # an integer: the state machine's publish Choice compares it
        "n_parts": 1,
        "publish_batches_key": "runs/r1/knn/queries/publish-batches.json",
    }
    listed = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/queries/users-")["Contents"]
    ]
    assert listed == ["runs/r1/knn/queries/users-00000.rec"]  # the manifest is not transform input


def test_feature_dim_mismatch_is_rejected(s3):
    rng = np.random.default_rng(3)
    body = fm_model_bytes(random_model(rng, feature_dim=N_USERS + N_ITEMS + 2))
    with pytest.raises(
        FeatureDimMismatchError, match=r"feature_dim 14 .* feature_dim 12 = 7 users \+ 5 items"
    ):
        repackage(s3=s3, bucket=BUCKET, event=setup(s3, rng, body), config=cfg())
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/")


def test_handler(s3, monkeypatch):
    from pipeline_steps.repackage import handler

    rng = np.random.default_rng(4)
    ev = setup(s3, rng, fm_model_bytes(random_model(rng)))
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"x": 10, "max_k": 20}))
    assert handler.handler(ev)["k"] == "5"  # capped at n_items


@pytest.mark.parametrize(
    ("seen", "x", "n_items", "max_k", "k", "over"),
    [
        ([0, 3, 1], 10, 100, 1000, 13, 0),  # x + max seen
        ([0, 3, 1], 10, 11, 1000, 11, 1),  # capped at the catalogue: the heavy user may get < x
        ([0, 900, 5], 20, 5000, 500, 500, 1),  # capped at max_k
        ([], 3, 2, 10, 2, 0),
    ],
)
def test_k_rule(seen, x, n_items, max_k, k, over):
    assert choose_k(np.array(seen), x=x, n_items=n_items, max_k=max_k) == (k, over)


def test_config_errors():
    with pytest.raises(ValueError, match=r"STEP_CONFIG.max_k: must be >= x"):
        cfg(x=20, max_k=10)
    with pytest.raises(ValueError, match=r"STEP_CONFIG.response_budget_bytes: must be in 1..6553500"):
        cfg(response_budget_bytes=6_553_501)
    with pytest.raises(ValueError, match=r"STEP_CONFIG.max_payload_mb: must be in 1..100"):
        cfg(max_payload_mb=0)


def test_parts_are_sized_from_k_so_each_response_fits_the_budget(s3):
    rng = np.random.default_rng(6)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)))
    # k = x 1 + max seen 3 = 4: a worst-case line is 35 * 4 + 69 = 209 bytes; 500 bytes hold 2 users
    out = repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=1, response_budget_bytes=500))
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    assert [(p["key"][-15:], p["first_user"], p["n_users"]) for p in qm["parts"]] == [
        ("users-00000.rec", 0, 2),
        ("users-00001.rec", 2, 2),
        ("users-00002.rec", 4, 2),
        ("users-00003.rec", 6, 1),
    ]
    assert qm["sizing"] == {
        "users_per_part": 2,
        "limited_by": "response_budget_bytes",
        "by_response": 2,
        "by_payload": 6_000_000 // 40,  # 4 float32 values: a 40-byte record
        "users_per_shard": 100_000,
        "response_bytes_per_query": 209,
        "request_bytes_per_query": 40,
    }


def test_no_user_fitting_a_request_is_an_error_naming_the_keys(s3):
    from pipeline_steps.repackage.core import PartSizeError

    rng = np.random.default_rng(6)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)))
    with pytest.raises(PartSizeError, match=r"k=4 is 209 bytes \(budget response_budget_bytes=208\)"):
        repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=1, response_budget_bytes=208))
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/")


def test_part_keys_widen_past_99999_parts(s3, monkeypatch):
    from pipeline_steps.common import sizing

    widths = []

    def width(n_parts):
        widths.append(n_parts)
        return 6

    monkeypatch.setattr(sizing, "part_key_width", width)
    rng = np.random.default_rng(6)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)))
    repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=1, users_per_shard=4))
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/queries/")["Contents"]]
    assert widths == [2] and "runs/r1/knn/queries/users-000001.rec" in listed


def test_item_queries_are_factor_vectors_against_the_same_index_sized_like_user_parts(s3):
    rng = np.random.default_rng(8)
    model = random_model(rng)
    event = setup(s3, rng, fm_model_bytes(model))
    # k = max(x 1 + read_extra 2 + max seen 3, related_x 2 + 1) = 6, capped at n_items 5
    out = repackage(
        s3=s3, bucket=BUCKET, event=event, config=cfg(x=1, read_extra=2, related_x=2, users_per_shard=2)
    )
    assert out["k"] == "5"
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    assert qm["related_x"] == 2 and qm["read_extra"] == 2
    assert [(p["key"], p["first_item"], p["n_items"]) for p in qm["related_parts"]] == [
        ("runs/r1/knn/queries/users-related-00000.rec", 0, 2),
        ("runs/r1/knn/queries/users-related-00001.rec", 2, 2),
        ("runs/r1/knn/queries/users-related-00002.rec", 4, 1),
    ]
    items, _ = read(s3, "runs/r1/knn/train/items.rec")
    queries = np.vstack([read(s3, p["key"])[0] for p in qm["related_parts"]])
    assert queries.shape == items.shape and np.all(queries[:, -1] == 0.0)
    assert np.array_equal(queries[:, :-1], items[:, :-1])
    V = model.V[N_USERS:].astype(np.float64)
    np.testing.assert_allclose(
        queries.astype(np.float64) @ items.astype(np.float64).T, V @ V.T, rtol=1e-5, atol=1e-5
    )
    # the one transform job reads both families (same input prefix); S3 lists users first
    listed = [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/queries/users-")["Contents"]
    ]
    assert listed == [p["key"] for p in qm["parts"]] + [p["key"] for p in qm["related_parts"]]


def test_publish_batches_are_ranges_of_the_user_then_item_parts_within_users_per_child(s3):
    """Decision 0015 "Publish fan-out in batches": the publish Map reads these ranges (one child
    each); part p is publish's part p (user parts, then item-query parts)."""
    rng = np.random.default_rng(8)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)))
    config = cfg(x=1, read_extra=2, related_x=2, users_per_shard=2, users_per_child=3)
    out = repackage(s3=s3, bucket=BUCKET, event=event, config=config)
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    sizes = [p["n_users"] for p in qm["parts"]] + [p["n_items"] for p in qm["related_parts"]]
    assert sizes == [2, 2, 2, 1, 2, 2, 1]  # 7 users then 5 items, 2 per part
    batches = json.loads(s3.get_object(Bucket=BUCKET, Key=out["publish_batches_key"])["Body"].read())
    assert batches == [
        {"first_part": 0, "last_part": 0, "n_lists": 2},
        {"first_part": 1, "last_part": 1, "n_lists": 2},
        {"first_part": 2, "last_part": 3, "n_lists": 3},  # the last user part and ...
        {"first_part": 4, "last_part": 4, "n_lists": 2},  # ... the item parts: ranges, never split
        {"first_part": 5, "last_part": 6, "n_lists": 3},
    ]
    assert out["n_parts"] == 7 == batches[-1]["last_part"] + 1
    # each range holding user parts has its users' slice (decision 0015 "A child holds its own users")
    from pipeline_steps.common.slices import read_slice

    slices = {}
    for first in (0, 1, 2):
        key = f"runs/r1/knn/queries/publish-slice-{first:05d}.npz"
        slices[first] = read_slice(
            s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), key=key, n_items=N_ITEMS
        )
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/queries/publish-slice-")["Contents"]
    assert len(listed) == 3  # none for the item-query-only ranges 4 and 5-6
    got = slices[2]  # parts 2-3: users 4, 5 and 6
    assert [got.users[u] for u in (4, 5, 6)] == ["u4", "u5", "u6"]
    assert [got.seen.row(u).tolist() for u in (4, 5, 6)] == [[], [0, 1], []]
    assert (slices[1].users.first, len(slices[1].users), slices[1].seen.row(3).tolist()) == (2, 2, [4])
    assert got.exclusions.key == "" and got.exclusions.rows.indices.size == 0


@pytest.mark.parametrize(
    ("seen", "x", "min_k", "k", "over"),
    [
        ([0, 3, 1], 10, 1, 13, 0),
        ([0, 3, 1], 10, 30, 30, 0),  # the item queries need related_x + 1 + |G|
        ([0, 3, 1], 10, 2000, 1000, 0),  # still capped at max_k
    ],
)
def test_k_rule_takes_the_item_queries_need(seen, x, min_k, k, over):
    assert choose_k(np.array(seen), x=x, n_items=5000, max_k=1000, min_k=min_k) == (k, over)


def test_k_counts_read_extra_and_the_filters(s3):
    rng = np.random.default_rng(9)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)), seen=[[0], [1, 2], [], [4], [], [0, 1], []])
    s3.put_object(Bucket=BUCKET, Key="filters/unavailable.txt", Body=b"i3\n")
    s3.put_object(Bucket=BUCKET, Key="filters/mine.csv", Body=b"user_id,item_id\nu2,i0\nu1,i3\n")
    config = cfg(
        x=1,
        read_extra=1,
        filter_exclude_items_key="filters/unavailable.txt",
        filter_user_exclusions_key="filters/mine.csv",
    )
    out = repackage(s3=s3, bucket=BUCKET, event=event, config=config)
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    # d(u1) = |{1, 2} ∪ {3} ∪ G={3}| = 3 is the largest: k = x 1 + read_extra 1 + 3 = 5
    assert out["k"] == "5"
    assert qm["filters"] == {
        "excluded_by_list": 1,
        "excluded_items": 1,
        "user_exclusions": 2,
        "max_dropped": 3,
    }
    from pipeline_steps.common.slices import read_slice  # publish's slice carries the exclusions read here

    key = "runs/r1/knn/queries/publish-slice-00000.npz"
    got = read_slice(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), key=key, n_items=N_ITEMS)
    assert got.exclusions.key == "filters/mine.csv"
    assert [got.exclusions.rows.row(u).tolist() for u in range(N_USERS)] == [[], [3], [0], [], [], [], []]


def test_a_bad_filter_file_fails_before_anything_is_written(s3):
    from pipeline_steps.common.errors import InputError

    rng = np.random.default_rng(9)
    event = setup(s3, rng, fm_model_bytes(random_model(rng)))
    s3.put_object(Bucket=BUCKET, Key="filters/unavailable.txt", Body=b"i3\n\nnope\n")
    with pytest.raises(
        InputError, match=r"filter_exclude_items_key s3://.*/filters/unavailable.txt line 3: item id 'nope'"
    ):
        repackage(
            s3=s3, bucket=BUCKET, event=event, config=cfg(filter_exclude_items_key="filters/unavailable.txt")
        )
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/")


@pytest.mark.parametrize(
    ("instances", "sizes"), [(1, [7]), (2, [4, 3]), (3, [3, 3, 1]), (7, [1] * 7), (9, [1] * 7)]
)
def test_at_least_one_user_part_per_transform_instance(s3, instances, sizes):
    """Batch transform maps whole S3 objects to instances: fewer parts than instances idle some."""
    rng = np.random.default_rng(6)
    config = cfg(x=1, transform_instance_count=instances)
    out = repackage(
        s3=s3, bucket=BUCKET, event=setup(s3, rng, fm_model_bytes(random_model(rng))), config=config
    )
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    assert [p["n_users"] for p in qm["parts"]] == sizes and out["n_parts"] == len(sizes)
