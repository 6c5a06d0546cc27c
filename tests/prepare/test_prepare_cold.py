"""Cold ids in prepare (decision 0018, "Cold start and protocols"): metadata-only users/items join the
id maps after the warm ids, with side rows of their feature columns only."""

from __future__ import annotations

import numpy as np

from pipeline_steps.common.manifest import Manifest
from pipeline_steps.formats import recordio
from pipeline_steps.prepare.config import PrepareConfig

RATINGS = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{i},5,{10 * u + i}\n" for u in range(1, 5) for i in range(1, 5) if (u + i) % 3
)
ITEMS = (
    "item_id\tgenres\tyear\n"
    "i1\tAction|Comedy\t1990\n"
    "i2\tComedy\t2000\n"
    "i3\t\t1995\n"
    "i9\tDrama\t1980\n"  # metadata only: cold with cold_items
    "i8\t\t\n"  # metadata only but no value at all: no row to compute a vector from
)
USERS = "user_id,occupation\nu1,writer\nu2,doctor\nu3,writer\nu4,\nu7,doctor\nu6,\n"  # u7 cold, u6 empty


def _run(run_prepare, **extra):
    files = {"input/ratings.csv": RATINGS, "meta/items/items.tsv": ITEMS, "meta/users/users.csv": USERS}
    config = {
        "item_features": "meta/items/",
        "item_feature_columns": "genres:multi:pipe,year:numeric:2",
        "user_features": "meta/users/",
        "user_feature_columns": "occupation:categorical",
        "split": "none",
        "label_mode": "implicit",
        "negative_ratio": 2,
        "negative_draws": 3,
    }
    return run_prepare(files, **(config | extra))


def _side(run, name: str) -> np.ndarray:
    z = np.load(run.path(run.manifest["files"][name]))
    dense = np.zeros(tuple(z["shape"]), dtype=np.float32)
    for r in range(dense.shape[0]):
        dense[r, z["indices"][z["indptr"][r] : z["indptr"][r + 1]]] = z["data"][
            z["indptr"][r] : z["indptr"][r + 1]
        ]
    return dense


def test_cold_defaults_users_on_items_off() -> None:
    # A user with metadata gets a personalised list by default; a cold item competing in every list
    # is a catalogue decision, off unless asked for.
    assert PrepareConfig().cold_users is True and PrepareConfig().cold_items is False


def test_cold_ids_join_the_maps_after_the_warm_ids(run_prepare) -> None:
    warm = _run(run_prepare, cold_users=False)
    run = _run(run_prepare, cold_items=True)
    assert warm.users == ["u1", "u2", "u3", "u4"] and warm.items == ["i1", "i2", "i3", "i4"]
    # the warm numbering is unchanged; u6 / i8 (every field empty) stay out, counted as metadata-only
    assert run.users == ["u1", "u2", "u3", "u4", "u7"]
    assert run.items == ["i1", "i2", "i3", "i4", "i9"]
    m = run.manifest
    assert m["n_users"] == 5 and m["n_items"] == 5
    assert m["features"]["user"] == {"with_metadata": 4, "without_metadata": 0, "metadata_only": 2, "cold": 1}
    assert m["features"]["item"] == {"with_metadata": 3, "without_metadata": 1, "metadata_only": 2, "cold": 1}
    assert m["config"]["cold_users"] is True and m["config"]["cold_items"] is True
    Manifest.from_json(m, key="manifest.json")

    base = 10  # 5 users + 5 items
    us, it = _side(run, "user_side"), _side(run, "item_side")
    # occupation (doctor, writer) at base, base + 1; genres (Action, Comedy, Drama) base + 2..4; year 2 bins
    expect_u7 = np.zeros(m["feature_dim"], np.float32)
    expect_u7[base] = 1  # doctor, no one-hot
    np.testing.assert_array_equal(us[4], expect_u7)
    expect_i9 = np.zeros(m["feature_dim"], np.float32)
    expect_i9[base + 4] = 1  # Drama
    expect_i9[base + 5] = 1  # 1980: bin 0
    np.testing.assert_array_equal(it[4], expect_i9)
    # warm rows: their one-hot (in the wider column space) and the same features as without cold ids
    np.testing.assert_array_equal(us[:4, :4], np.eye(4, dtype=np.float32))
    np.testing.assert_array_equal(it[:4, 5:9], np.eye(4, dtype=np.float32))

    # no seen / holdout rows, popularity 0, and never in a training row (not even as a negative)
    seen = np.load(run.path(m["files"]["seen"]))
    assert seen["indptr"][-1] == seen["indptr"][4] and not np.any(seen["indices"] == 4)
    assert np.load(run.path(m["files"]["popularity"])).tolist()[4] == 0
    rows = 0
    for key in m["train_shards"]:
        _, indices, _, _, _ = recordio.read_sparse(run.path(key).read_bytes())
        assert not np.isin(indices, [4, 5 + 4]).any()  # u7's and i9's one-hot columns
        rows += 1
    assert rows and m["counts"] == warm.manifest["counts"]


def test_cold_off_keeps_the_metadata_only_ids_out(run_prepare) -> None:
    run = _run(run_prepare, cold_users=False)
    assert run.manifest["features"]["user"] == {"with_metadata": 4, "without_metadata": 0, "metadata_only": 2}
    assert "cold" not in run.manifest["features"]["item"]
    assert run.manifest["n_users"] == 4


def test_the_recorded_config_has_cold_keys_only_with_that_sides_features() -> None:
    assert "cold_users" not in PrepareConfig().to_dict() and "cold_items" not in PrepareConfig().to_dict()
    items_only = PrepareConfig(item_features="meta/", item_feature_columns="genres:multi:pipe")
    assert "cold_users" not in items_only.to_dict() and items_only.to_dict()["cold_items"] is False
    assert not items_only.cold("user") and not items_only.cold("item")
