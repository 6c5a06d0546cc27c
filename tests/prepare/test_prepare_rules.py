"""Row rules: duplicates keep the latest, min-count filters until stable, holdout splits, id order."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from pipeline_steps.datasets.movielens import ua_split
from pipeline_steps.prepare import query
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.engine import Engine

REG = {"label_mode": "regression", "split": "none", "shuffle": False}
# seq is the input order (files appended in key order): any seq of a later file exceeds an earlier one's.
STRIDE = 10**12


def _engine(tmp_path, users, items, ts=None, files=None) -> Engine:
    """An engine holding table `t` shaped like the parsed rows (row k has ord k within its file)."""
    engine = Engine(PrepareConfig(), str(tmp_path))
    n = len(users)
    ts = np.zeros(n, dtype=np.int64) if ts is None else ts
    files = np.zeros(n, dtype=np.int64) if files is None else files
    engine.sql("CREATE TABLE t (seq BIGINT, u VARCHAR, i VARCHAR, rating FLOAT, ts BIGINT, reason TINYINT)")
    seq = files * STRIDE + np.arange(n)
    rows = [(int(seq[k]), str(users[k]), str(items[k]), 1.0, int(ts[k]), None) for k in range(n)]
    engine.con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
    return engine


def _ords(engine: Engine, sql: str) -> list[int]:
    return sorted(r[0] % STRIDE for r in engine.sql(f"SELECT seq FROM ({sql})").fetchall())


def test_duplicates_keep_latest_by_timestamp_then_file_order(tmp_path):
    users = np.array([0, 0, 0, 1, 1, 0])
    items = np.array([5, 5, 5, 2, 2, 7])
    ts = np.array([10, 30, 20, 5, 5, 1])
    engine = _engine(tmp_path, users, items, ts)
    keep = _ords(engine, query.LATEST.format(source="t"))
    assert keep == [1, 4, 5]  # (0,5): ts 30 wins; (1,2): tie -> later row; (0,7) unique


def test_a_later_file_wins_a_tie_over_a_later_line(tmp_path):
    engine = _engine(tmp_path, ["u", "u"], ["a", "a"], np.array([5, 5]), files=np.array([1, 0]))
    (seq,) = engine.sql(f"SELECT seq FROM ({query.LATEST.format(source='t')})").fetchone()
    assert seq // STRIDE == 1


def test_duplicates_end_to_end(run_prepare):
    data = "user,item,rating,timestamp\nu,a,1,100\nu,a,2,300\nu,a,3,200\nv,b,4,7\nv,b,5,7\n"
    r = run_prepare({"input/a.csv": data}, **REG)
    assert sorted(r.rows("train")) == [("u", "a", 2.0), ("v", "b", 5.0)]
    assert r.manifest["counts"]["duplicates"] == 3


def test_min_count_filters_apply_until_stable(tmp_path):
    # u0 has 2 items; item 2 only seen by u1 who has 2 interactions... removing item 2 (count 1)
    # drops u1 below 2, which drops item 1 below 2, which drops u0 below 2: nothing survives.
    users = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    items = np.array([0, 1, 1, 2, 0, 3, 0, 3])
    engine = _engine(tmp_path, users, items)
    keep = _ords(engine, f"SELECT * FROM {engine.min_counts('t', 2, 2)}")
    u, i = users[keep], items[keep]
    assert np.all(np.bincount(u)[u] >= 2) and np.all(np.bincount(i)[i] >= 2)
    assert sorted(zip(u.tolist(), i.tolist(), strict=True)) == [(2, 0), (2, 3), (3, 0), (3, 3)]


def test_filters_end_to_end_and_error_when_empty(run_prepare):
    data = "user,item\n" + "".join(f"u{k},i{k}\n" for k in range(5)) + "a,x\na,y\nb,x\nb,y\n"
    r = run_prepare({"input/a.csv": data}, label_mode="implicit", split="none", min_user_interactions=2)
    assert set(r.users) == {"a", "b"} and set(r.items) == {"x", "y"}
    assert r.manifest["counts"]["filtered"] == 5
    with pytest.raises(ValueError, match="no interactions left"):
        run_prepare({"input/a.csv": data}, label_mode="implicit", split="none", min_item_interactions=3)


def _held(tmp_path, users, ts, n: int) -> np.ndarray:
    engine = _engine(tmp_path, users, np.arange(len(users)), ts)
    held = np.zeros(len(users), dtype=bool)
    held[_ords(engine, f"SELECT * FROM ({query.LAST_N.format(source='t', n=n)}) WHERE held")] = True
    return held


def test_last_n_split_by_timestamp_with_ties_and_small_users(tmp_path):
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    ts = np.array([4, 1, 3, 2, 9, 8, 5, 5, 5])
    held = _held(tmp_path, users, ts, 2)
    # user 0: ts 4 and 3 held; user 1 has only 2 rows -> all train; user 2: all tied -> last 2 rows.
    assert held.tolist() == [True, False, True, False, False, False, False, True, True]


def test_last_n_split_matches_a_reference_sort(tmp_path):
    rng = np.random.default_rng(3)
    users = rng.integers(0, 50, 3000)
    ts = rng.integers(0, 40, 3000)  # many ties
    held = _held(tmp_path, users, ts, 5)
    for u in range(50):
        idx = np.flatnonzero(users == u)
        ref = sorted(idx, key=lambda k: (ts[k], k))[-5:] if len(idx) > 5 else []
        assert sorted(np.flatnonzero(held & (users == u)).tolist()) == sorted(ref)


def test_last_n_end_to_end_without_timestamps_uses_file_order(run_prepare):
    data = "user,item\n" + "".join(f"u,i{k}\n" for k in range(6)) + "v,i4\nv,i5\n"
    r = run_prepare({"input/a.csv": data}, label_mode="implicit", split="last_n", holdout_n=2)
    assert r.csr("holdout") == {"u": {"i4", "i5"}}  # v has only 2 rows: all in training
    assert r.csr("seen") == {"u": {"i0", "i1", "i2", "i3"}, "v": {"i4", "i5"}}


def test_ua_split_with_an_explicit_test_file(run_prepare):
    """The MovieLens ua rule: per user the first 10 ratings in u.data order are the test set."""
    rng = np.random.default_rng(5)
    lines = [
        f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + k}"
        for k, (u, i) in enumerate(
            dict.fromkeys((int(rng.integers(1, 31)), int(rng.integers(1, 80))) for _ in range(1500))
        )
    ]
    base, test = ua_split(lines)
    r = run_prepare(
        {"ml/ua.base": "\n".join(base) + "\n", "ml/ua.test": "\n".join(test) + "\n"},
        input_prefix="ml/ua.base",
        test_prefix="ml/ua.test",
        label_mode="binary",
        shuffle=False,
    )
    expected_test = {}
    for line in test:
        u, i = line.split("\t")[:2]
        expected_test.setdefault(u, set()).add(i)
    expected_seen = {}
    for line in base:
        u, i = line.split("\t")[:2]
        expected_seen.setdefault(u, set()).add(i)
    seen_items = {i for s in expected_seen.values() for i in s}
    # Held-out items never seen in training cannot be scored: dropped and counted.
    expected_holdout = {u: {i for i in s if i in seen_items} for u, s in expected_test.items()}
    expected_holdout = {u: s for u, s in expected_holdout.items() if s and u in expected_seen}
    assert r.csr("seen") == expected_seen
    assert r.csr("holdout") == expected_holdout
    assert r.report["split"] == "explicit"
    n_dropped = sum(len(s) for s in expected_test.values()) - sum(len(s) for s in expected_holdout.values())
    assert r.report["test"]["holdout_unscorable"] == n_dropped
    test_rows = r.rows("test")
    assert {(u, i) for u, i, _ in test_rows} == {(u, i) for u, s in expected_holdout.items() for i in s}
    ratings = {tuple(x.split("\t")[:2]): int(x.split("\t")[2]) for x in test}
    assert all(y == float(ratings[(u, i)] >= 4) for u, i, y in test_rows)


def test_test_pairs_present_in_training_are_dropped(run_prepare):
    r = run_prepare(
        {"in/train.csv": "user,item\nu,a\nu,b\nv,a\n", "in/test.csv": "user,item\nu,a\nv,b\nw,a\n"},
        input_prefix="in/train",
        test_prefix="in/test",
    )
    assert r.csr("holdout") == {"v": {"b"}}
    assert r.report["test"]["in_train"] == 1 and r.report["test"]["holdout_unscorable"] == 1


def final_order(ids: list[str]) -> list[int]:
    """Positions of `ids` in query.ID_ORDER's order."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (u VARCHAR, reason TINYINT)")
    con.executemany("INSERT INTO t VALUES (?, NULL)", [(x,) for x in ids])
    order = con.execute(
        f"SELECT id FROM ({query.ID_ORDER.format(col='u', source='t')}) ORDER BY ix"
    ).fetchall()
    return [ids.index(x) for (x,) in order]


def test_final_order():
    assert [["10", "9", "100"][k] for k in final_order(["10", "9", "100"])] == ["9", "10", "100"]
    ids = ["b", "a", "10", "é", "Z", "007"]  # not all canonical integers -> code point order
    assert [ids[k] for k in final_order(ids)] == ["007", "10", "Z", "a", "b", "é"]
    ids = ["-5", "12", "3", "-40", "0"]
    assert [ids[k] for k in final_order(ids)] == ["-40", "-5", "0", "3", "12"]


def test_final_order_matches_code_point_order_on_random_unicode():
    rng = np.random.default_rng(9)
    alphabet = [*"aZ0 ,\"'éÉ東京🙂-", "\x00"]
    for with_nul in (False, True):
        ids = list(
            {
                "".join(rng.choice(alphabet[: len(alphabet) - (not with_nul)], rng.integers(1, 6)))
                for _ in range(400)
            }
        )
        assert [ids[k] for k in final_order(ids)] == sorted(ids)


def test_explicit_test_file_needs_ratings_for_rating_labels(run_prepare):
    with pytest.raises(ValueError, match="needs a rating column in the test file"):
        run_prepare(
            {"in/train.csv": "user,item,rating\nu,a,4\nv,b,3\n", "in/test.csv": "user,item\nu,b\n"},
            input_prefix="in/train",
            test_prefix="in/test",
            label_mode="binary",
        )


def test_a_test_file_under_the_input_prefix_is_not_trained_on_with_separate_store_objects(tmp_path):
    # The CLI builds one LocalStorage/S3Storage per path: `--input data/ --test data/test.csv`
    # used to read test.csv as training data too (all of the holdout leaked into train).
    from pipeline_steps.prepare.config import PrepareConfig
    from pipeline_steps.prepare.core import prepare
    from pipeline_steps.prepare.storage import LocalStorage

    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.csv").write_text("user,item\nu1,i1\nu1,i2\nu2,i1\nu2,i3\n")
    (tmp_path / "data/test.csv").write_text("user,item\nu1,i3\nu2,i2\n")
    m = prepare(
        PrepareConfig(input_prefix="", test_prefix="test.csv", label_mode="implicit"),
        source=LocalStorage(tmp_path / "data"),
        test_source=LocalStorage(tmp_path / "data"),
        sink=LocalStorage(tmp_path / "out"),
        run_id="r",
        out_prefix="runs/r/prepared/",
    )
    assert [(o["key"], o["channel"]) for o in m["input"]["objects"]] == [
        ("train.csv", "train"),
        ("test.csv", "test"),
    ]
    assert m["counts"]["train_interactions"] == 4 and m["counts"]["holdout_pairs"] == 2


def test_input_order_is_argsort_of_seq():
    from pipeline_steps.prepare.core import _input_order

    rng = np.random.default_rng(3)
    for n, k in ((40, 17), (1000, 1000), (5, 1)):
        seq = rng.permutation(n)[:k].astype(np.int64)  # unique row ids, some rows gone (rules)
        assert np.array_equal(_input_order(seq), np.argsort(seq))
    assert len(_input_order(np.empty(0, np.int64))) == 0


def test_row_id_is_the_input_order_across_files_and_row_groups(tmp_path):
    from pipeline_steps.prepare.engine import LocalFile

    n = 1_000_000  # 15 MB a file: several CSV buffers and row groups (122,880 rows), two threads
    paths = []
    for k, header in enumerate(("user,item,rating\n", "")):
        path = tmp_path / f"part-{k}.csv"
        path.write_text(header + "".join(f"u{k},{k * n + j},1\n" for j in range(n)))
        paths.append(LocalFile(path.name, str(path)))
    engine = Engine(PrepareConfig(), str(tmp_path))
    engine.load(paths, "parsed", "train")
    got = engine.numpy(f"SELECT seq, i FROM {query.with_seq('parsed', 'reason IS NULL')} ORDER BY seq")
    assert np.array_equal(got["i"].astype(np.int64), np.arange(2 * n))  # header row left out
    assert engine.starts["parsed"] == [(0, True), (n + 1, False)]
