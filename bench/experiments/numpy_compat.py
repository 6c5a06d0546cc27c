"""The Spark prepare's executor code under another numpy: digests to compare across interpreters.

AWS's Spark processing container runs the executors on numpy 1.26.4 (decision 0016); the project's
environment has numpy 2. This script runs what the executors run (`spark_shards.route` / `shard` for
both sampling modes, `spark_engine._partition_arrays`) on a fixed synthetic input with numpy only
(no Spark) and prints one JSON line: numpy's version and a digest per output. Run it in the
project's venv and in one with numpy 1.26.4; the outputs other than the version must be equal:

    .venv/bin/python bench/experiments/numpy_compat.py
    python3.11 -m venv np126 && np126/bin/pip install numpy==1.26.4
    np126/bin/python bench/experiments/numpy_compat.py
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_steps.prepare import spark_engine, spark_shards


def main() -> None:
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
    print(
        json.dumps(
            {
                "numpy": np.__version__,
                "shards": shards,
                "partition_arrays": [[a.dtype.str, repr(a.tolist())] for a in arrays],
            }
        )
    )


if __name__ == "__main__":
    main()
