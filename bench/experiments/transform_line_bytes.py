"""Measure verbose k-NN JSON lines and query records against the sizing bounds (decision 0008).

Renders lines with the local transform's writer (pipeline_steps.local_algorithms.knn_lines, the format of
SageMaker's verbose JSON lines) for ML-100k-shaped data (1,682 items, 64 factors + 1, vectors like
bench/knn.py's) at k = 737 (ML-100k's k) and k = 1000 (the max_k cap), in both number styles:
"json" (17-digit doubles, SageMaker's style) and "short" (the local writer's default, 9 digits).
A second set uses the largest labels (2^24 items) and worst-case 23-character distances. Prints the
measured bytes per line next to ``sizing.response_bytes_per_query(k)``, the query record size, the
users per part and the parts at 943 and 10,000,000 users. Last stdout line: JSON.

    .venv/bin/python bench/experiments/transform_line_bytes.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_steps.common import sizing
from pipeline_steps.formats import recordio
from pipeline_steps.local_algorithms.knn_lines import format_results
from pipeline_steps.repackage.config import RepackageConfig

DEFAULTS = RepackageConfig()  # the deployed defaults (cdk.json restates them)

N_ITEMS, DIM, USERS = 1682, 65, 200


def lines(k: int, style: str, *, worst: bool) -> np.ndarray:
    rng = np.random.default_rng(k)
    if worst:
        labels = rng.integers(2**24 - 10**6, 2**24 + 1, size=(USERS, k)).astype(np.float64)
        distances = -np.abs(rng.normal(size=(USERS, k))) * 1e-30  # "-1.2345678901234567e-30"-like
        predicted = distances[:, 0]
    else:
        items = rng.normal(0, 0.1, size=(N_ITEMS, DIM)).astype(np.float32)
        users = rng.normal(0, 0.1, size=(USERS, DIM)).astype(np.float32)
        users[:, -1] = 1.0
        scores = users @ items.T
        top = np.argsort(-scores, axis=1)[:, :k]
        labels = (top + 1).astype(np.float64)
        distances = np.take_along_axis(scores, top, axis=1)
        predicted = None
    text = format_results(labels, distances, predicted, style=style)
    return np.array([len(line) + 1 for line in text.splitlines()])


def main() -> None:
    result: dict = {"request_bytes_per_query": sizing.request_bytes_per_query(DIM)}
    assert (
        result["request_bytes_per_query"] == len(recordio.encode_dense(np.zeros((10, DIM), np.float32))) // 10
    )
    print(f"query record, feature_dim {DIM}: {result['request_bytes_per_query']} bytes")
    for k in (737, 1000):
        bound = sizing.response_bytes_per_query(k)
        size = sizing.users_per_part(
            k=k,
            feature_dim=DIM,
            max_payload_mb=DEFAULTS.max_payload_mb,
            response_budget_bytes=DEFAULTS.response_budget_bytes,
            users_per_shard=DEFAULTS.users_per_shard,
        )
        row: dict = {"bound": bound, "users_per_part": size.users, "limited_by": size.limited_by}
        for data in ("ml100k", "worst"):
            for style in ("json", "short"):
                n = lines(k, style, worst=data == "worst")
                row[f"{data}_{style}"] = {"mean": round(float(n.mean())), "max": int(n.max())}
                assert n.max() <= bound, (k, data, style, int(n.max()), bound)
                print(
                    f"k={k} {data:6s} {style:5s}: mean {n.mean():8,.0f} max {n.max():7,d} bytes/line "
                    f"(bound {bound:,}; {n.max() / result['request_bytes_per_query']:.0f}x the query)"
                )
        # Before sizing: one object of up to 100,000 users; a 6 MB mini-batch holds this many records.
        per_batch = 6 * sizing.BATCH_BYTES_PER_MB // result["request_bytes_per_query"]
        typical = row["ml100k_json"]["mean"]
        row["before"] = {
            "records_per_6MB_mini_batch": per_batch,
            "ml100k_one_object_response_bytes": 943 * typical,
            "full_mini_batch_response_bytes": per_batch * typical,
        }
        print(
            f"k={k} before: 943 users in one request -> ~{943 * typical:,} bytes; a full 6 MB mini-batch "
            f"({per_batch:,} records) -> ~{per_batch * typical:,} bytes; "
            f"limit {sizing.CONTAINER_RESPONSE_LIMIT:,}"
        )
        row["parts_943_users"] = math.ceil(943 / size.users)
        row["parts_10M_users"] = math.ceil(10_000_000 / size.users)
        row["one_part_response_bytes_max"] = size.users * bound
        print(
            f"k={k}: {size.users} users/part (by {size.limited_by}), worst response "
            f"{size.users * bound:,} bytes <= budget {sizing.DEFAULT_RESPONSE_BUDGET:,}; "
            f"{row['parts_943_users']} parts at 943 users, {row['parts_10M_users']:,} at 10M"
        )
        result[f"k{k}"] = row
    print(json.dumps(result))


if __name__ == "__main__":
    main()
