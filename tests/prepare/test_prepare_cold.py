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


def _csr_pairs(run, name: str) -> set[tuple[str, str]]:
    z = np.load(run.path(run.manifest["files"][name]))
    users, items = run.users, run.items
    return {
        (users[u], items[i])
        for u in range(len(users))
        for i in z["indices"][z["indptr"][u] : z["indptr"][u + 1]]
    }


BIG_RATINGS = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{i},5,{100 * u + i}\n" for u in range(40) for i in range(30) if (u * 7 + i * 3) % 5 < 2
)
BIG_ITEMS = "item_id,genre\n" + "".join(f"i{i},g{i % 4}\n" for i in range(30))
BIG_USERS = "user_id,occupation\n" + "".join(f"u{u},o{u % 3}\n" for u in range(40))


def _protocol_run(run_prepare, **extra):
    files = {"input/r.csv": BIG_RATINGS, "meta/items/i.csv": BIG_ITEMS, "meta/users/u.csv": BIG_USERS}
    config = {
        "item_features": "meta/items/",
        "item_feature_columns": "genre:categorical",
        "user_features": "meta/users/",
        "user_feature_columns": "occupation:categorical",
        "split": "last_n",
        "holdout_n": 2,
        "cold_protocols": True,
    }
    return run_prepare(files, **(config | extra))


def test_the_cold_protocols_hold_out_ten_percent_of_users_and_items_entirely(run_prepare) -> None:
    plain = _protocol_run(run_prepare, cold_protocols=False)
    run = _protocol_run(run_prepare)
    m = run.manifest
    p = m["features"]["protocols"]
    n_users, n_items = plain.manifest["n_users"], plain.manifest["n_items"]
    assert (n_users, n_items) == (40, 25)  # the other items are in the holdout only
    assert p["user"]["stop"] - p["user"]["start"] == 4 and p["item"]["stop"] - p["item"]["start"] == 2
    assert (p["user"]["stop"], p["item"]["stop"]) == (m["n_users"], m["n_items"]) == (n_users, n_items)
    assert m["features"]["user"]["cold"] == 4 and m["features"]["item"]["cold"] == 2
    held_users = set(run.users[p["user"]["start"] :])
    held_items = set(run.items[p["item"]["start"] :])
    # every interaction of the plain run lands in exactly one place
    every = _csr_pairs(plain, "seen") | _csr_pairs(plain, "holdout")
    assert {u for u, _ in every} >= held_users and {i for _, i in every} >= held_items
    seen, holdout = _csr_pairs(run, "seen"), _csr_pairs(run, "holdout")
    cold_users, cold_items = _csr_pairs(run, "cold_users_holdout"), _csr_pairs(run, "cold_items_holdout")
    assert cold_users == {(u, i) for u, i in every if u in held_users and i not in held_items}
    assert cold_items == {(u, i) for u, i in every if u not in held_users and i in held_items}
    assert seen | holdout == {(u, i) for u, i in every if u not in held_users and i not in held_items}
    assert p["dropped_pairs"] == len({(u, i) for u, i in every if u in held_users and i in held_items})
    trained_users, trained_items = {u for u, _ in seen}, {i for _, i in seen}
    assert p["kept_without_training"] == {
        "user": p["user"]["start"] - len(trained_users),
        "item": p["item"]["start"] - len(trained_items),
    }
    assert p["user"]["pairs"] == len(cold_users) and cold_users and cold_items
    # held-out ids: no training row, no one-hot, popularity 0
    pop = np.load(run.path(m["files"]["popularity"]))
    assert not pop[p["item"]["start"] :].any()
    us = _side(run, "user_side")
    assert (
        not us[p["user"]["start"] :, :40].any() and us[p["user"]["start"] :].sum(axis=1).tolist() == [1.0] * 4
    )
    for key in m["train_shards"]:
        _, indices, _, _, _ = recordio.read_sparse(run.path(key).read_bytes())
        assert not np.isin(indices, np.r_[36:40, 40 + 23 : 40 + 25]).any()
    # the same draw on a rerun (fixed seed)
    again = _protocol_run(run_prepare)
    assert again.users == run.users and again.items == run.items


def test_without_metadata_the_cold_switches_change_no_byte(run_prepare) -> None:
    files = {"input/ratings.csv": RATINGS}
    plain = run_prepare(files, split="none", label_mode="implicit")
    switched = run_prepare(files, split="none", label_mode="implicit", cold_users=False, cold_items=True)
    assert "cold_users" not in plain.manifest["config"] and "features" not in plain.manifest
    for name, key in plain.manifest["files"].items():
        assert plain.path(key).read_bytes() == switched.path(key).read_bytes(), name
    for channel in ("train_shards", "test_shards"):
        for a, b in zip(plain.manifest[channel], switched.manifest[channel], strict=True):
            assert plain.path(a).read_bytes() == switched.path(b).read_bytes()
    key = "runs/r1/prepared/manifest.json"
    assert plain.path(key).read_bytes() == switched.path(key).read_bytes()


def test_kept_ids_that_lose_every_training_row_are_counted(run_prepare) -> None:
    first = _protocol_run(run_prepare)
    p = first.manifest["features"]["protocols"]
    held_user = first.users[p["user"]["start"]]
    # i99 (no metadata: never drawn) rated only by a held-out user, early (a training row)
    files = {
        "input/r.csv": BIG_RATINGS + f"{held_user},i99,5,0\n",
        "meta/items/i.csv": BIG_ITEMS,
        "meta/users/u.csv": BIG_USERS,
    }
    config = {
        "item_features": "meta/items/",
        "item_feature_columns": "genre:categorical",
        "user_features": "meta/users/",
        "user_feature_columns": "occupation:categorical",
        "split": "last_n",
        "holdout_n": 2,
        "cold_protocols": True,
    }
    second = run_prepare(files, **config)
    q = second.manifest["features"]["protocols"]
    assert "i99" in second.items[: q["item"]["start"]]  # kept (warm)
    assert q["kept_without_training"]["item"] == p["kept_without_training"]["item"] + 1
