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


def _expected_row(us: np.ndarray, it: np.ndarray, u: int, i: int, start: int | None) -> np.ndarray:
    """user_side[u] + item_side[i]; with `start` (a training row), FISM's rule: item i left out of
    u's history field, the other items weighted 1/sqrt(n_u - 1)."""
    user = us[u].copy()
    if start is not None and user[start + i]:
        user[start + i] = 0
        history = user[start:]
        rest = np.count_nonzero(history)
        history[history != 0] = np.float32(1 / np.sqrt(rest)) if rest else 0
    return user + it[i]


def _check_rows(run, us: np.ndarray, it: np.ndarray, n_users: int) -> int:
    """Every test row is user_side[u] + item_side[i] (the serving form), every training row the
    same with its own item out of its history; columns sorted. Returns the training rows changed."""
    dim = run.manifest["feature_dim"]
    start = run.manifest["features"]["fields"][-1]["start"]
    changed = 0
    for keys, own_out in ((run.manifest["train_shards"], True), (run.manifest["test_shards"], False)):
        for key in keys:
            data, indices, indptr, shape, labels = recordio.read_sparse(run.path(key).read_bytes())
            assert shape[1] == dim
            for r in range(len(indptr) - 1):
                cols, vals = indices[indptr[r] : indptr[r + 1]], data[indptr[r] : indptr[r + 1]]
                assert np.all(np.diff(cols) > 0)
                row = np.zeros(dim, np.float32)
                row[cols] = vals
                u, i = int(cols[0]), int(cols[1]) - n_users
                expect = _expected_row(us, it, u, i, start if own_out else None)
                np.testing.assert_array_equal(row, expect)
                if own_out and us[u, start + i]:
                    assert labels[r] == 1  # only an observed pair has its item in the history
                    assert row[start + i] == 0  # never its own item
                    changed += 1
                elif own_out and labels[r] == 0:
                    np.testing.assert_array_equal(row[start:], us[u, start:])  # a negative: whole
    return changed


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
    positives = run.manifest["label_stats"]["positives"]
    assert _check_rows(run, us, it, n_users) == positives > 0  # every positive left its item out


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
    assert _check_rows(run, us, it, m["n_users"]) == m["counts"]["train_rows"]  # binary: all observed


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


def test_own_item_out_with_user_fields_above_the_items_and_a_single_item_history() -> None:
    """fm_rows' training form by hand: the user suffix holds a user field and the history (no item
    fields); a user with one item gets an empty history on that item's row, and a row of an item
    outside the history (a negative) keeps the whole field."""
    from pipeline_steps.prepare.features import Csr, fm_rows

    # 2 users, 3 items: one-hots [0, 5), a user field at 5, the history at [6, 9)
    third, half = np.float32(1 / np.sqrt(3)), np.float32(1 / np.sqrt(2))
    user_side = Csr(
        np.array([0, 5, 7], np.int64),
        np.array([0, 5, 6, 7, 8, 1, 7], np.int32),  # u0: field, items 0, 1, 2; u1: item 1 only
        np.array([1, 1, third, third, third, 1, 1], np.float32),
        (2, 9),
    )
    item_side = Csr(
        np.arange(4, dtype=np.int64), np.array([2, 3, 4], np.int32), np.ones(3, np.float32), (3, 9)
    )
    users, items = np.array([0, 0, 1, 1]), np.array([1, 2, 1, 0])
    whole = fm_rows(users, items, user_side, item_side)
    data, indices, indptr = fm_rows(users, items, user_side, item_side, history_start=6)
    rows = [
        (indices[indptr[r] : indptr[r + 1]].tolist(), data[indptr[r] : indptr[r + 1]].tolist())
        for r in range(4)
    ]
    assert rows == [
        ([0, 3, 5, 6, 8], [1, 1, 1, half, half]),  # u0 x item 1: item 1 out, 1/sqrt(2)
        ([0, 4, 5, 6, 7], [1, 1, 1, half, half]),  # u0 x item 2
        ([1, 3], [1, 1]),  # u1 x item 1: its only item, no history left
        ([1, 2, 7], [1, 1, 1]),  # u1 x item 0 (not in the history): unchanged
    ]
    assert indices[indptr[3] :].tolist() == whole[1][whole[2][3] :].tolist()
    assert whole[2].tolist() == [0, 6, 12, 15, 18]  # without history_start: the whole field


def test_wide_rows_are_cut_into_shards_by_their_non_zeros(run_prepare, monkeypatch) -> None:
    """A shard also holds at most core.SHARD_NONZEROS non-zeros (at the rows' mean width): history
    rows are ~100x wider than one-hot rows, and a shard's encoding is held in memory."""
    from pipeline_steps.prepare import core

    kwargs = {"split": "last_n", "holdout_n": 1, "label_mode": "implicit", "user_history": True, **FEATURES}
    whole = run_prepare(FILES, **kwargs)
    assert len(whole.manifest["train_shards"]) == 1  # shard_rows 1,000,000: one shard
    monkeypatch.setattr(core, "SHARD_NONZEROS", 60)
    cut = run_prepare(FILES, **kwargs)
    keys = cut.manifest["train_shards"]
    sizes = []
    for key in keys:
        _, indices, indptr, _, _ = recordio.read_sparse(cut.path(key).read_bytes())
        sizes.append((len(indptr) - 1, len(indices)))
    rows, nonzeros = sum(r for r, _ in sizes), sum(n for _, n in sizes)
    assert rows == cut.manifest["counts"]["train_rows"] and len(keys) == -(-rows // (60 * rows // nonzeros))
    assert len(keys) > 1 and max(r for r, _ in sizes) <= 60 * rows // nonzeros + 1
    us, it = _side(cut, "user_side"), _side(cut, "item_side")
    _check_rows(cut, us, it, cut.manifest["n_users"])  # the same rows, cut differently


def test_one_hot_rows_keep_shard_rows() -> None:
    from pipeline_steps.prepare.core import rows_per_shard

    assert rows_per_shard((np.zeros(5, np.int64), np.zeros(5, np.int64)), 1_000_000, None) == 1_000_000
