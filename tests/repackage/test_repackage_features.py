"""Repackage with side features (decision 0018): <query_u, item_i> = FM score(u, i) - a per-user constant."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline_steps.common.manifest import Manifest
from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
from pipeline_steps.prepare.outputs import npz_bytes
from pipeline_steps.repackage.core import (
    FeatureDimMismatchError,
    SideMatrix,
    knn_vectors,
    repackage,
    side_vectors,
)
from tests.conftest import BUCKET
from tests.repackage.test_repackage import N_ITEMS, N_USERS, cfg, random_model, read, setup

USER_COLS, ITEM_COLS = 3, 4
DIM = N_USERS + N_ITEMS + USER_COLS + ITEM_COLS


def random_side(rng, n_rows: int, one_hot_start: int, start: int, width: int) -> np.ndarray:
    """Dense side rows: the one-hot, then 0 to `width` active feature columns with random weights."""
    side = np.zeros((n_rows, DIM), dtype=np.float32)
    side[np.arange(n_rows), one_hot_start + np.arange(n_rows)] = 1.0
    for r in range(n_rows):
        active = rng.choice(width, size=rng.integers(0, width + 1), replace=False)
        side[r, start + active] = rng.choice([0.25, 0.5, 1.0, 1.5], size=len(active)).astype(np.float32)
    return side


def side_npz(dense: np.ndarray) -> bytes:
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
    return npz_bytes(
        indptr=indptr,
        indices=cols.astype(np.int32),
        data=dense[rows, cols],
        shape=np.array(dense.shape, dtype=np.int64),
    )


def fm_predict(model, x: np.ndarray) -> float:
    """The FM's own prediction on the full row: w0 + w.x + sum_{a<b} <v_a, v_b> x_a x_b (float64)."""
    V, w = model.V.astype(np.float64), model.w.astype(np.float64)
    x = x.astype(np.float64)
    nz = np.flatnonzero(x)
    pair = sum(float(V[a] @ V[b]) * x[a] * x[b] for n, a in enumerate(nz) for b in nz[n + 1 :])
    return model.w0 + float(w @ x) + pair


def put_features(s3, user_side: np.ndarray, item_side: np.ndarray) -> None:
    key = "runs/r1/prepared/manifest.json"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    base = N_USERS + N_ITEMS
    manifest["feature_dim"] = DIM
    manifest["features"] = {
        "columns": USER_COLS + ITEM_COLS,
        "fields": [
            {
                "name": "occupation",
                "side": "user",
                "kind": "categorical",
                "start": base,
                "stop": base + USER_COLS,
            },
            {"name": "genres", "side": "item", "kind": "multi", "start": base + USER_COLS, "stop": DIM},
        ],
    }
    for name, dense in (("user_side", user_side), ("item_side", item_side)):
        manifest["files"][name] = f"runs/r1/prepared/{name}.npz"
        s3.put_object(Bucket=BUCKET, Key=manifest["files"][name], Body=side_npz(dense))
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_product_is_the_fm_prediction_minus_a_per_user_constant(s3, seed):
    rng = np.random.default_rng(seed)
    model = random_model(rng, feature_dim=DIM)
    event = setup(s3, rng, fm_model_bytes(model, mtime=0))
    base = N_USERS + N_ITEMS
    user_side = random_side(rng, N_USERS, 0, base, USER_COLS)
    item_side = random_side(rng, N_ITEMS, N_USERS, base + USER_COLS, ITEM_COLS)
    put_features(s3, user_side, item_side)
    out = repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=2, users_per_shard=3, related_x=2))
    assert out["feature_dim"] == str(model.V.shape[1] + 1)

    items, labels = read(s3, "runs/r1/knn/train/items.rec")
    assert labels.reshape(-1).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    queries = np.vstack([read(s3, p["key"])[0] for p in qm["parts"]])
    assert queries.shape == (N_USERS, model.V.shape[1] + 1) and np.all(queries[:, -1] == 1.0)
    ip = queries.astype(np.float64) @ items.astype(np.float64).T
    for u in range(N_USERS):
        # the per-user constant: w0 + the user's linear terms + the pairs within the user's row
        constant = fm_predict(model, user_side[u])
        for i in range(N_ITEMS):
            score = fm_predict(model, user_side[u] + item_side[i])
            assert ip[u, i] == pytest.approx(score - constant, rel=1e-5, abs=1e-5)
        scores = [fm_predict(model, user_side[u] + item_side[i]) for i in range(N_ITEMS)]
        assert int(np.argmax(ip[u])) == int(np.argmax(scores))
    # item queries [S_i, 0]: the interaction of the two items' rows
    related = np.vstack([read(s3, p["key"])[0] for p in qm["related_parts"]])
    S = item_side.astype(np.float64) @ model.V.astype(np.float64)
    np.testing.assert_allclose(related[:, :-1], S, rtol=1e-5, atol=1e-6)
    assert np.all(related[:, -1] == 0.0)


def test_one_hot_sides_give_exactly_the_one_hot_vectors():
    rng = np.random.default_rng(4)
    dim = N_USERS + N_ITEMS
    model = random_model(rng, feature_dim=dim)
    doc = {"run_id": "r", "n_users": N_USERS, "n_items": N_ITEMS, "feature_dim": dim, "files": {}}
    manifest = Manifest.from_json(doc, key="m.json")
    eye = np.eye(dim, dtype=np.float32)

    def side(rows: np.ndarray) -> SideMatrix:
        return SideMatrix(side_npz(rows), name="s.npz", n_rows=rows.shape[0], feature_dim=dim)

    got = side_vectors(model, manifest, side(eye[:N_USERS]), side(eye[N_USERS:]))
    want = knn_vectors(model, manifest)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and g.tobytes() == w.tobytes()


def test_a_model_of_another_width_is_rejected(s3):
    rng = np.random.default_rng(6)
    model = random_model(rng)  # one-hot width: trained without the feature columns
    event = setup(s3, rng, fm_model_bytes(model, mtime=0))
    base = N_USERS + N_ITEMS
    put_features(
        s3, random_side(rng, N_USERS, 0, base, USER_COLS), random_side(rng, N_ITEMS, N_USERS, base + 3, 4)
    )
    with pytest.raises(FeatureDimMismatchError, match=r"feature_dim 19 .*7 feature columns"):
        repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=2))


def test_a_side_matrix_of_the_wrong_shape_is_named(s3):
    with pytest.raises(Exception, match=r"s.npz: indptr has shape \(3,\), expected \(4,\)"):
        SideMatrix(side_npz(np.eye(2, DIM, dtype=np.float32)), name="s.npz", n_rows=3, feature_dim=DIM)


def test_blocks_of_side_rows_give_the_same_vectors(monkeypatch):
    from pipeline_steps.repackage import core

    rng = np.random.default_rng(8)
    model = random_model(rng, feature_dim=DIM)
    doc = {"run_id": "r", "n_users": N_USERS, "n_items": N_ITEMS, "feature_dim": DIM, "files": {}}
    base = N_USERS + N_ITEMS
    doc["features"] = {"columns": DIM - base, "fields": [{"name": "f", "start": base, "stop": DIM}]}
    manifest = Manifest.from_json(doc, key="m.json")
    sides = [
        SideMatrix(
            side_npz(random_side(rng, n, start, base, DIM - base)), name="s", n_rows=n, feature_dim=DIM
        )
        for n, start in ((N_USERS, 0), (N_ITEMS, N_USERS))
    ]
    whole = side_vectors(model, manifest, *sides)
    monkeypatch.setattr(core, "SIDE_CHUNK_ROWS", 2)  # 7 users, 5 items, 19 V rows: uneven blocks
    for a, b in zip(side_vectors(model, manifest, *sides), whole, strict=True):
        assert a.tobytes() == b.tobytes()


def test_the_identity_holds_on_prepare_rows_with_the_history_field(tmp_path):
    """prepare's own side matrices with the history field (user-side columns after the item
    fields'): the repackaged inner product is the FM's prediction on user_side[u] + item_side[i]
    (the serving form, the whole history) minus a per-user constant, for every pair and on each row
    of the test channel, which is written in that form. (Training rows leave their own item out of
    the history, decision 0018: they are not what the index ranks.)"""
    from pipeline_steps.formats import recordio
    from pipeline_steps.prepare.config import PrepareConfig
    from pipeline_steps.prepare.core import prepare
    from pipeline_steps.prepare.storage import LocalStorage

    src = tmp_path / "src"
    (src / "input").mkdir(parents=True)
    (src / "meta").mkdir()
    rows = [(u, i) for u in range(5) for i in range(6) if (u * 7 + i) % 3]
    (src / "input" / "r.csv").write_text(
        "user_id,item_id,rating,timestamp\n" + "".join(f"u{u},i{i},4,{n}\n" for n, (u, i) in enumerate(rows))
    )
    (src / "meta" / "items.csv").write_text("item_id,genre\n" + "".join(f"i{i},g{i % 2}\n" for i in range(6)))
    config = PrepareConfig.from_dict(
        {
            "input_prefix": "input/",
            "split": "last_n",
            "holdout_n": 1,
            "user_history": True,
            "item_features": "meta/",
            "item_feature_columns": "genre:categorical",
        }
    )
    sink = LocalStorage(tmp_path / "out")
    doc = prepare(config, source=LocalStorage(src), sink=sink, run_id="r", out_prefix="p/")
    manifest = Manifest.from_json(doc, key="m.json")
    dim, n_users, n_items = manifest.feature_dim, manifest.n_users, manifest.n_items
    assert dim == n_users + n_items + 2 + n_items
    sides = [
        SideMatrix(sink.read_bytes(manifest.file_key(f)), name=f, n_rows=n, feature_dim=dim)
        for f, n in (("user_side", n_users), ("item_side", n_items))
    ]
    dense = []
    for f, n in (("user_side", n_users), ("item_side", n_items)):
        z = np.load(tmp_path / "out" / manifest.file_key(f))
        d = np.zeros((n, dim), np.float32)
        for r in range(n):
            d[r, z["indices"][z["indptr"][r] : z["indptr"][r + 1]]] = z["data"][
                z["indptr"][r] : z["indptr"][r + 1]
            ]
        dense.append(d)
    assert dense[0][:, n_users + n_items + 2 :].any()  # the history is there
    model = random_model(np.random.default_rng(11), feature_dim=dim)
    items, _, users = side_vectors(model, manifest, *sides)
    ip = users.astype(np.float64) @ items.astype(np.float64).T
    for u in range(n_users):
        for i in range(n_items):
            score = fm_predict(model, dense[0][u] + dense[1][i]) - fm_predict(model, dense[0][u])
            assert ip[u, i] == pytest.approx(score, rel=1e-5, abs=1e-4)
    checked = 0
    for key in manifest.test_shards:
        data, indices, indptr, _, _ = recordio.read_sparse(sink.read_bytes(key))
        for r in range(len(indptr) - 1):
            x = np.zeros(dim, np.float32)
            x[indices[indptr[r] : indptr[r + 1]]] = data[indptr[r] : indptr[r + 1]]
            u, i = int(indices[indptr[r]]), int(indices[indptr[r] + 1]) - n_users
            np.testing.assert_array_equal(x, dense[0][u] + dense[1][i])  # the serving form
            score = fm_predict(model, x) - fm_predict(model, dense[0][u])
            assert ip[u, i] == pytest.approx(score, rel=1e-5, abs=1e-4)
            checked += 1
    assert checked == manifest.counts["test_rows"] > 0


def cold_tail(rng, n_rows: int, one_hot_start: int, start: int, width: int, n_cold: int) -> np.ndarray:
    """`random_side` whose last `n_cold` rows are cold ids: feature columns only, at least one."""
    side = random_side(rng, n_rows, one_hot_start, start, width)
    for r in range(n_rows - n_cold, n_rows):
        side[r, one_hot_start + r] = 0.0
        if not side[r, start : start + width].any():
            side[r, start + int(rng.integers(width))] = 1.0
    return side


def side_matrices(*dense: np.ndarray) -> list[SideMatrix]:
    return [SideMatrix(side_npz(d), name="s", n_rows=len(d), feature_dim=DIM) for d in dense]


@pytest.mark.parametrize("users, items", [(True, False), (False, True), (True, True), (False, False)])
def test_a_cold_id_gets_the_warm_ids_mean_factors_and_weight(users, items):
    """The oracle: the FM's own prediction on a model with one more column, holding the mean factors
    and mean linear weight of the side's warm one-hots, active (value 1) in each cold id's row."""
    rng = np.random.default_rng(21)
    model = random_model(rng, feature_dim=DIM)
    base = N_USERS + N_ITEMS
    n_cold_users, n_cold_items = 2, 2
    user_side = cold_tail(rng, N_USERS, 0, base, USER_COLS, n_cold_users)
    item_side = cold_tail(rng, N_ITEMS, N_USERS, base + USER_COLS, ITEM_COLS, n_cold_items)
    doc = {"run_id": "r", "n_users": N_USERS, "n_items": N_ITEMS, "feature_dim": DIM, "files": {}}
    doc["features"] = {
        "columns": DIM - base,
        "fields": [{"name": "f", "start": base, "stop": DIM}],
        "user": {"cold": n_cold_users},
        "item": {"cold": n_cold_items},
    }
    manifest = Manifest.from_json(doc, key="m.json")
    sides = side_matrices(user_side, item_side)
    items_v, _, queries = side_vectors(model, manifest, *sides, mean_id=(users, items))
    warm_u, warm_i = N_USERS - n_cold_users, N_ITEMS - n_cold_items
    V = np.vstack([model.V, model.V[:warm_u].mean(0), model.V[N_USERS : N_USERS + warm_i].mean(0)])
    w = np.concatenate([model.w, [model.w[:warm_u].mean(), model.w[N_USERS : N_USERS + warm_i].mean()]])
    wide = FMModel(w0=model.w0, w=w.astype(np.float32), V=V, feature_dim=DIM + 2, hyperparameters={})
    user_rows = np.hstack([user_side, np.zeros((N_USERS, 2), np.float32)])
    item_rows = np.hstack([item_side, np.zeros((N_ITEMS, 2), np.float32)])
    if users:
        user_rows[warm_u:, DIM] = 1.0
    if items:
        item_rows[warm_i:, DIM + 1] = 1.0
    ip = queries.astype(np.float64) @ items_v.astype(np.float64).T
    for u in range(N_USERS):
        constant = fm_predict(wide, user_rows[u])
        for i in range(N_ITEMS):
            score = fm_predict(wide, user_rows[u] + item_rows[i]) - constant
            assert ip[u, i] == pytest.approx(score, rel=1e-5, abs=1e-4)
    # the warm rows are those of `mean_id` off, to the byte
    plain_items, _, plain_queries = side_vectors(model, manifest, *sides)
    assert items_v[:warm_i].tobytes() == plain_items[:warm_i].tobytes()
    assert queries[:warm_u].tobytes() == plain_queries[:warm_u].tobytes()
    assert (queries[warm_u:].tobytes() == plain_queries[warm_u:].tobytes()) is not users
    assert (items_v[warm_i:].tobytes() == plain_items[warm_i:].tobytes()) is not items


@pytest.mark.parametrize("overrides", [{}, {"cold_users_mean_id": False, "cold_items_mean_id": True}])
def test_repackage_passes_the_mean_id_switches(s3, overrides):
    """Defaults: cold users get the mean id, cold items do not; the switches reach `side_vectors`."""
    rng = np.random.default_rng(22)
    model = random_model(rng, feature_dim=DIM)
    event = setup(s3, rng, fm_model_bytes(model, mtime=0))
    base = N_USERS + N_ITEMS
    user_side = cold_tail(rng, N_USERS, 0, base, USER_COLS, 2)
    item_side = cold_tail(rng, N_ITEMS, N_USERS, base + USER_COLS, ITEM_COLS, 1)
    put_features(s3, user_side, item_side)
    key = "runs/r1/prepared/manifest.json"
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    doc["features"].update(user={"cold": 2}, item={"cold": 1})
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(doc).encode())
    out = repackage(s3=s3, bucket=BUCKET, event=event, config=cfg(x=2, **overrides))

    items, _ = read(s3, "runs/r1/knn/train/items.rec")
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=out["queries_manifest_key"])["Body"].read())
    queries = np.vstack([read(s3, p["key"])[0] for p in qm["parts"]])
    manifest = Manifest.from_json(doc, key=key)
    sides = side_matrices(user_side, item_side)
    switches = (overrides.get("cold_users_mean_id", True), overrides.get("cold_items_mean_id", False))
    want_items, _, want_queries = side_vectors(model, manifest, *sides, mean_id=switches)
    assert queries.tobytes() == want_queries.tobytes() and items.tobytes() == want_items.tobytes()
    other_items, _, other_queries = side_vectors(model, manifest, *sides, mean_id=(False, False))
    assert (queries.tobytes() == other_queries.tobytes()) is not switches[0]
    assert (items.tobytes() == other_items.tobytes()) is not switches[1]
