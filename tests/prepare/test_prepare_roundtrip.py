"""Round trip on a messy synthetic input, byte idempotency, manifest reuse and conflicts."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import pytest

from pipeline_steps.prepare.core import PrepareConflictError

NAMES = ["B00X1", "3f2504e0-4f89-11d3-9a0c-0305e82c3301", "Crème, brûlée", 'The "Best" one', "東京", "a b c"]


def messy_inputs(seed: int = 0) -> tuple[dict[str, bytes], dict[tuple[str, str], tuple[float, int]]]:
    """Several files exercising every variation, and the expected (user, item) -> (rating, ts)."""
    rng = random.Random(seed)
    users = [f"user {k}" for k in range(25)] + ["zoë", "A2Z9", "d7e4-uuid"]
    items = [*NAMES, *(f"item-{k}" for k in range(30))]
    expected: dict[tuple[str, str], tuple[float, int]] = {}
    records = []
    for _ in range(900):
        u, i = rng.choice(users), rng.choice(items)
        rating, ts = float(rng.randint(1, 5)), 1_500_000_000 + rng.randrange(10**6)
        records.append((u, i, rating, ts))
    files: dict[str, bytes] = {}
    # File 1: CSV with header, quoted fields, CRLF, BOM, gzip.
    out = ["\ufeffuserId,movieId,rating,timestamp"]
    for u, i, r, t in records[:300]:
        q = '"' + i.replace('"', '""') + '"'
        out.append(f"{u},{q},{r:g},{t}")
    out += ["broken line without fields", "user 1,,3,1500000000"]  # 2 bad rows
    files["input/a/part-1.csv.gz"] = gzip.compress(("\r\n".join(out) + "\r\n").encode("utf-8"))
    # File 2: TSV without header, u.data style, ISO timestamps (no quotes in the ids used here).
    out = []
    for u, i, r, t in records[300:600]:
        i2 = i.replace('"', "'")
        iso = np.datetime_as_string(np.datetime64(t, "s")) + "Z"
        out.append(f"{u}\t{i2}\t{r:g}\t{iso}")
        records[records.index((u, i, r, t))] = (u, i2, r, t)
    files["input/b/part-2.tsv"] = ("\n".join(out) + "\n").encode("utf-8")
    # File 3: semicolon CSV with an unknown header word order, no final newline.
    out = ["timestamp;rating;item_id;user_id"]
    for u, i, r, t in records[600:]:
        i3 = i.replace('"', "'").replace(";", ",")
        out.append(f"{t};{r:g};{i3};{u}")
        records[records.index((u, i, r, t))] = (u, i3, r, t)
    files["input/c/part-3.txt"] = "\n".join(out).encode("utf-8")
    # Later file / later timestamp wins a duplicate.
    order = {}
    for pos, (u, i, r, t) in enumerate(records):
        order.setdefault((u, i), []).append((t, pos, r))
    for key, seen in order.items():
        t, _pos, r = max(seen)
        expected[key] = (r, t)
    return files, expected


def test_round_trip_rows_labels_and_id_maps(run_prepare):
    files, expected = messy_inputs()
    r = run_prepare(
        files, label_mode="regression", split="none", shuffle=True, max_bad_fraction=0.01, shard_rows=97
    )
    got = r.rows("train")
    assert sorted((u, i) for u, i, _ in got) == sorted(expected)
    assert all(y == expected[(u, i)][0] for u, i, y in got)
    assert set(r.users) == {u for u, _ in expected} and set(r.items) == {i for _, i in expected}
    m = r.manifest
    assert m["feature_dim"] == len(r.users) + len(r.items) == m["n_users"] + m["n_items"]
    assert len(m["train_shards"]) == -(-len(expected) // 97)
    assert m["counts"]["bad_rows"] == 2 and m["counts"]["rows_read"] == 902
    assert m["counts"]["duplicates"] == 900 - len(expected)
    assert [f["delimiter"] for f in r.report["files"]] == [",", "\t", ";"]
    pop = np.load(r.path(m["files"]["popularity"]))
    assert pop.dtype == np.int64 and pop.tolist() == [
        sum(1 for _, i in expected if i == it) for it in r.items
    ]
    seen = r.csr("seen")
    assert seen == {u: {i for uu, i in expected if uu == u} for u in {u for u, _ in expected}}
    z = np.load(r.path(m["files"]["seen"]))
    assert z["indptr"].dtype == np.int64 and z["indices"].dtype == np.int32
    assert z["indptr"].shape == (m["n_users"] + 1,)


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_input_and_config_give_the_same_bytes(run_prepare, tmp_path):
    files, _ = messy_inputs(1)
    a = run_prepare(files, out=tmp_path / "A", max_bad_fraction=0.01)
    b = run_prepare(files, out=tmp_path / "B", max_bad_fraction=0.01)
    ta, tb = _tree(tmp_path / "A"), _tree(tmp_path / "B")
    assert ta == tb and len(ta) >= 9
    assert a.manifest == b.manifest


def test_completed_run_is_reused_and_never_overwritten(run_prepare, tmp_path):
    files, _ = messy_inputs(2)
    out = tmp_path / "O"
    first = run_prepare(files, out=out, max_bad_fraction=0.01)
    before = _tree(out)
    again = run_prepare(files, out=out, max_bad_fraction=0.01)
    assert again.manifest == first.manifest and _tree(out) == before
    with pytest.raises(PrepareConflictError, match="already prepared from a different input or config"):
        run_prepare(files, out=out, max_bad_fraction=0.01, seed=99)
    changed = dict(files)
    changed["input/b/part-2.tsv"] = files["input/b/part-2.tsv"] + b"new-user\tnew-item\t5\t2020-01-01\n"
    with pytest.raises(PrepareConflictError):
        run_prepare(changed, out=out, max_bad_fraction=0.01)
    assert _tree(out) == before


def test_incomplete_run_leftovers_are_replaced(run_prepare, tmp_path):
    out = tmp_path / "O"
    stale = out / "runs/r1/prepared/train/part-00007.rec"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from a crashed attempt")
    r = run_prepare({"input/a.csv": "user,item\nu,a\nv,b\n"}, out=out, split="none")
    assert not stale.exists()
    assert json.loads((out / "runs/r1/prepared/manifest.json").read_text())["run_id"] == r.manifest["run_id"]
    assert r.manifest["train_shards"] == ["runs/r1/prepared/train/part-00000.rec"]


def test_manifest_is_written_last(tmp_path):
    from pipeline_steps.prepare.config import PrepareConfig
    from pipeline_steps.prepare.core import prepare
    from pipeline_steps.prepare.storage import LocalStorage

    class Recording(LocalStorage):
        def __init__(self, root):
            super().__init__(root)
            self.writes: list[str] = []

        def write_bytes(self, key, data):
            self.writes.append(key)
            super().write_bytes(key, data)

    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text("user,item\n" + "".join(f"u{k % 9},i{k % 13}\n" for k in range(200)))
    sink = Recording(tmp_path / "out")
    m = prepare(
        PrepareConfig.from_dict({"input_prefix": "", "holdout_n": 2}),
        source=LocalStorage(tmp_path / "in"),
        sink=sink,
        run_id="r",
        out_prefix="runs/r/prepared/",
    )
    assert sink.writes[-1] == "runs/r/prepared/manifest.json"
    assert set(sink.writes[:-1]) == set(m["files"].values()) | set(m["train_shards"]) | set(m["test_shards"])
