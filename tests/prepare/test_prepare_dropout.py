"""ID dropout (decision 0018, DropoutNet): a share of the training rows leave out their user one-hot."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.manifest import Manifest
from pipeline_steps.formats import recordio
from pipeline_steps.prepare.config import PrepareConfig

# 40 users x 30 items; u0..u29 have an occupation, u30..u34 an empty one, u35..u39 no metadata row
RATINGS = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{i},5,{100 * u + i}\n" for u in range(40) for i in range(30) if (u + 2 * i) % 5 < 2
)
USERS = (
    "user_id,occupation\n"
    + "".join(f"u{u},job{u % 4}\n" for u in range(30))
    + "".join(f"u{u},\n" for u in range(30, 35))
)
FILES = {"input/ratings.csv": RATINGS, "meta/users/users.csv": USERS}
FEATURES = {"user_features": "meta/users/", "user_feature_columns": "occupation:categorical"}


def _rows(run, channel: str) -> list[tuple[np.ndarray, np.ndarray, float]]:
    out = []
    for key in run.manifest[f"{channel}_shards"]:
        data, indices, indptr, _, labels = recordio.read_sparse(run.path(key).read_bytes())
        for r in range(len(indptr) - 1):
            lo, hi = indptr[r], indptr[r + 1]
            out.append((indices[lo:hi].astype(np.int64), data[lo:hi], float(labels[r])))
    return out


def test_dropout_leaves_out_only_the_user_one_hot_of_about_its_share(run_prepare) -> None:
    config = {"split": "last_n", "holdout_n": 2, "label_mode": "implicit", "shard_rows": 700, **FEATURES}
    plain = run_prepare(FILES, **config)
    run = run_prepare(FILES, user_id_dropout=0.3, **config)
    Manifest.from_json(run.manifest, key="manifest.json")
    assert run.manifest["config"]["user_id_dropout"] == 0.3
    n_users = run.manifest["n_users"]
    with_feature = {u for u, ident in enumerate(run.users) if int(ident[1:]) < 30}
    before, after = _rows(plain, "train"), _rows(run, "train")
    assert len(before) == len(after) == run.manifest["counts"]["train_rows"] > 1000
    assert len(run.manifest["train_shards"]) > 1  # the draw is sliced with the shards
    dropped = eligible = 0
    for (cols, vals, y), (cols2, vals2, y2) in zip(before, after, strict=True):
        assert y == y2
        user = int(cols[0])
        assert user < n_users  # every training row has its user one-hot first
        eligible += user in with_feature
        if len(cols2) == len(cols):
            np.testing.assert_array_equal(cols2, cols)
            np.testing.assert_array_equal(vals2, vals)
            continue
        assert user in with_feature  # a user without a feature column keeps its one-hot
        np.testing.assert_array_equal(cols2, cols[1:])  # only the one-hot is gone
        np.testing.assert_array_equal(vals2, vals[1:])
        assert cols2[0] >= n_users
        dropped += 1
    assert dropped == run.manifest["counts"]["train_rows_without_user_id"]
    assert abs(dropped / eligible - 0.3) < 0.05, (dropped, eligible)
    assert eligible < len(before)  # some rows were not eligible
    # the test channel and the side matrices (serving) are unchanged
    for name in ("user_side", "item_side"):
        assert run.path(run.manifest["files"][name]).read_bytes() == (
            plain.path(plain.manifest["files"][name]).read_bytes()
        )
    for a, b in zip(run.manifest["test_shards"], plain.manifest["test_shards"], strict=True):
        assert run.path(a).read_bytes() == plain.path(b).read_bytes()


def test_dropout_with_the_history_field_keeps_the_rest_of_the_row(run_prepare) -> None:
    config = {"split": "last_n", "holdout_n": 2, "label_mode": "implicit", "user_history": True}
    plain = run_prepare({"input/ratings.csv": RATINGS}, **config)
    run = run_prepare({"input/ratings.csv": RATINGS}, user_id_dropout=0.5, **config)
    dropped = 0
    for (cols, vals, _), (cols2, vals2, _) in zip(_rows(plain, "train"), _rows(run, "train"), strict=True):
        k = len(cols) - len(cols2)
        assert k in (0, 1)
        np.testing.assert_array_equal(cols2, cols[k:])
        np.testing.assert_array_equal(vals2, vals[k:])
        dropped += k
    assert dropped == run.manifest["counts"]["train_rows_without_user_id"] > 0


def test_dropout_zero_changes_no_byte(run_prepare) -> None:
    for extra in ({}, FEATURES):
        files = FILES if extra else {"input/ratings.csv": RATINGS}
        plain = run_prepare(files, split="none", label_mode="implicit", **extra)
        off = run_prepare(files, split="none", label_mode="implicit", user_id_dropout=0.0, **extra)
        assert "user_id_dropout" not in plain.manifest["config"]
        assert "train_rows_without_user_id" not in off.manifest["counts"]
        files_out = sorted(p.relative_to(plain.out) for p in plain.out.rglob("*") if p.is_file())
        assert files_out == sorted(p.relative_to(off.out) for p in off.out.rglob("*") if p.is_file())
        for rel in files_out:
            assert (plain.out / rel).read_bytes() == (off.out / rel).read_bytes(), rel


def test_dropout_without_features_drops_nothing(run_prepare) -> None:
    run = run_prepare({"input/ratings.csv": RATINGS}, split="none", user_id_dropout=0.5)
    assert run.manifest["config"]["user_id_dropout"] == 0.5
    assert all(len(cols) == 2 for cols, _, _ in _rows(run, "train"))


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan")])
def test_dropout_out_of_bounds_is_named(value: float) -> None:
    with pytest.raises(ConfigError, match=r"user_id_dropout: must be in \[0, 1\)"):
        PrepareConfig(user_id_dropout=value)
    with pytest.raises(ConfigError, match="user_id_dropout"):
        PrepareConfig.from_dict({"user_id_dropout": str(value)})
