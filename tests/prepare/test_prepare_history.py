"""The history field (decision 0018, SVD++/FISM form): the user's training items as a user-side field."""

from __future__ import annotations

import numpy as np

from pipeline_steps.common.manifest import Manifest
from pipeline_steps.formats import recordio
from tests.prepare.test_prepare_features import ITEMS, RATINGS, USERS, _side

# u1..u4 rate i1..i4 (12 pairs), with distinct timestamps: last_n 1 holds out each user's latest
FILES = {
    "input/ratings.csv": RATINGS,
    "meta/items/items.tsv": ITEMS,
    "meta/users/users.csv": USERS + "u7,nurse\n",
}
FEATURES = {
    "item_features": "meta/items/",
    "item_feature_columns": "genres:multi:pipe,year:numeric:2",
    "user_features": "meta/users/",
    "user_feature_columns": "occupation:categorical",
}


def _check_rows(run, us: np.ndarray, it: np.ndarray, n_users: int) -> None:
    """Every FM row is user_side[u] + item_side[i], columns sorted."""
    dim = run.manifest["feature_dim"]
    for key in run.manifest["train_shards"] + run.manifest["test_shards"]:
        data, indices, indptr, shape, _ = recordio.read_sparse(run.path(key).read_bytes())
        assert shape[1] == dim
        for r in range(len(indptr) - 1):
            cols, vals = indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]]
            assert np.all(np.diff(cols) > 0)
            row = np.zeros(dim, np.float32)
            row[cols] = vals
            np.testing.assert_array_equal(row, us[int(cols[0])] + it[int(cols[1]) - n_users])


def test_history_columns_are_the_training_items_weighted_1_over_sqrt_n(run_prepare) -> None:
    run = run_prepare(
        FILES, split="last_n", holdout_n=1, label_mode="implicit", user_history=True, **FEATURES
    )
    m = run.manifest
    Manifest.from_json(m, key="manifest.json")
    assert m["config"]["user_history"] is True
    n_users, n_items = m["n_users"], m["n_items"]
    assert run.users[-1] == "u7"  # a cold user (metadata only)
    base = n_users + n_items
    history = m["features"]["fields"][-1]
    assert [f["name"] for f in m["features"]["fields"]] == ["occupation", "genres", "year", "history"]
    start = base + 8  # after the user field (3 columns: doctor, nurse, writer) and the item fields (5)
    assert history == {
        "name": "history",
        "side": "user",
        "kind": "history",
        "start": start,
        "stop": start + n_items,
        "missing": 1,  # the cold user
    }
    assert m["feature_dim"] == start + n_items and m["features"]["columns"] == 8 + n_items
    us, it = _side(run, "user_side"), _side(run, "item_side")
    seen, holdout = run.csr("seen"), run.csr("holdout")
    assert holdout  # the split held something out
    for u, user in enumerate(run.users):
        mine = seen.get(user, set())
        expect = np.zeros(n_items, np.float32)
        for item in mine:
            expect[run.items.index(item)] = np.float32(1 / np.sqrt(len(mine)))
        np.testing.assert_array_equal(us[u, start:], expect)
        if mine:
            assert abs(float(np.sum(us[u, start:].astype(np.float64) ** 2)) - 1) < 1e-6  # squared norm 1
        for item in holdout.get(user, set()):
            assert us[u, start + run.items.index(item)] == 0  # a held-out item never appears
    assert not us[-1, start:].any()  # the cold user has no history
    assert not it[:, start:].any()  # the field is on the user side only
    assert run.report["features"]["history"]["entries"] == sum(len(v) for v in seen.values())
    _check_rows(run, us, it, n_users)


def test_history_without_metadata(run_prepare) -> None:
    run = run_prepare({"input/ratings.csv": RATINGS}, split="none", label_mode="binary", user_history=True)
    m = run.manifest
    Manifest.from_json(m, key="manifest.json")
    assert [f["name"] for f in m["features"]["fields"]] == ["history"]
    assert m["feature_dim"] == 8 + 4 and m["features"]["columns"] == 4
    assert set(m["files"]) >= {"user_side", "item_side"}
    us, it = _side(run, "user_side"), _side(run, "item_side")
    seen = run.csr("seen")
    for u, user in enumerate(run.users):
        cols = {run.items[c - 8] for c in np.flatnonzero(us[u, 8:]) + 8}
        assert cols == seen[user]
    _check_rows(run, us, it, m["n_users"])


def test_history_off_changes_no_byte(run_prepare) -> None:
    for extra in ({}, FEATURES):
        files = FILES if extra else {"input/ratings.csv": RATINGS}
        plain = run_prepare(files, split="none", label_mode="implicit", **extra)
        off = run_prepare(files, split="none", label_mode="implicit", user_history=False, **extra)
        assert "user_history" not in plain.manifest["config"]
        files_out = sorted(p.relative_to(plain.out) for p in plain.out.rglob("*") if p.is_file())
        assert files_out == sorted(p.relative_to(off.out) for p in off.out.rglob("*") if p.is_file())
        for rel in files_out:
            assert (plain.out / rel).read_bytes() == (off.out / rel).read_bytes(), rel
