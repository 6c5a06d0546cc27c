"""RecordIO-protobuf encoding: our vectorised encoder vs sagemaker 2.257.7, rows/s and identical bytes.

Cases (issue 2 §4), float32 one-hot rows with two non-zeros (user, item) and float32 labels:
  * ``ua.base``: 90,570 rows x 2,625 columns (synthetic with MovieLens' shape; ``--movielens``
    encodes the real ua.base instead);
  * ``synthetic-2M``: 2,000,000 rows, same shape; the SDK is timed on its first 100,000 rows and
    those bytes must equal the start of our full encoding.

The last line of output is one JSON object: ``speedup`` (smallest ours/SDK rows/s ratio over the
cases, each the lower of the wall-clock and the CPU-time ratio of our best of ``--repeat`` runs vs
one SDK run), ``identical`` (every case's bytes equal), ``load_average`` and ``cases``.

``--general`` also times the general vectorised writer alone (``accelerate=False``: without the
one-layout path, decision 0010) and reports ``one_layout_gain`` per case; ``--prepare-shape``
adds bench/prepare.py's headline shape (4,956,290 one-hot rows x 600,000 columns).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import scipy.sparse as sp

from pipeline_steps.formats import recordio

N_USERS, N_ITEMS = 943, 1682  # ua.base: 2,625 one-hot columns


def one_hot(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    n = users.size
    cols = np.stack([users, n_users + items], axis=1).reshape(-1).astype(np.int32)
    indptr = np.arange(0, 2 * n + 1, 2, dtype=np.int64)
    return sp.csr_matrix((np.ones(2 * n, np.float32), cols, indptr), shape=(n, n_users + n_items))


def synthetic(n: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, N_USERS, n), rng.integers(0, N_ITEMS, n)
    return one_hot(users, items, N_USERS, N_ITEMS), (rng.random(n) < 0.55).astype(np.float32)


def prepare_shape(seed: int = 3) -> tuple[sp.csr_matrix, np.ndarray]:
    """The training rows of bench/prepare.py's 10M-row binary case: 500,000 users, 100,000 items."""
    n, n_users, n_items = 4_956_290, 500_000, 100_000
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    return one_hot(users, items, n_users, n_items), (rng.random(n) < 0.5).astype(np.float32)


def movielens_ua_base() -> tuple[sp.csr_matrix, np.ndarray]:
    from pipeline_steps.datasets import movielens

    rows = np.loadtxt(movielens.load().ua_base, dtype=np.int64, delimiter="\t")
    users, items = rows[:, 0] - 1, rows[:, 1] - 1
    labels = (rows[:, 2] >= 4).astype(np.float32)
    return one_hot(users, items, int(users.max()) + 1, int(items.max()) + 1), labels


def sdk_encode(matrix: sp.csr_matrix, labels: np.ndarray) -> tuple[bytes, float, float]:
    from sagemaker.amazon.common import write_spmatrix_to_sparse_tensor

    buf = io.BytesIO()
    wall, cpu = time.perf_counter(), time.process_time()
    write_spmatrix_to_sparse_tensor(buf, matrix, labels)
    return buf.getvalue(), time.perf_counter() - wall, time.process_time() - cpu


def ours_encode(
    matrix: sp.csr_matrix, labels: np.ndarray, repeat: int, accelerate: bool = True
) -> tuple[bytes, float, float]:
    best_wall = best_cpu = float("inf")
    out = b""
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = recordio.encode_sparse(matrix, labels, accelerate=accelerate)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return out, best_wall, best_cpu


def case(
    name: str, matrix: sp.csr_matrix, labels: np.ndarray, sdk_rows: int, repeat: int, general: bool = False
) -> dict:
    n = matrix.shape[0]
    ours, t_ours, cpu_ours = ours_encode(matrix, labels, repeat)
    sample = matrix[:sdk_rows] if sdk_rows < n else matrix
    expected, t_sdk, cpu_sdk = sdk_encode(sample, labels[: sample.shape[0]])
    identical = ours[: len(expected)] == expected
    if sample.shape[0] == n:
        identical = identical and len(ours) == len(expected)
    else:  # the sample's bytes must also be what we write for the sample alone
        identical = identical and recordio.encode_sparse(sample, labels[: sample.shape[0]]) == expected
    ours_rps, sdk_rps = n / t_ours, sample.shape[0] / t_sdk
    # CPU time is less sensitive to other load on the machine; the reported speedup is the lower one
    cpu_ratio = (n / max(cpu_ours, 1e-9)) / (sample.shape[0] / max(cpu_sdk, 1e-9))
    speedup = min(ours_rps / sdk_rps, cpu_ratio)
    result = {
        "case": name,
        "rows": n,
        "cols": matrix.shape[1],
        "nnz_per_row": round(matrix.nnz / max(n, 1), 3),
        "bytes": len(ours),
        "ours_seconds": round(t_ours, 4),
        "ours_rows_per_s": round(ours_rps),
        "sdk_rows_timed": sample.shape[0],
        "sdk_seconds": round(t_sdk, 3),
        "sdk_rows_per_s": round(sdk_rps),
        "wall_speedup": round(ours_rps / sdk_rps, 1),
        "cpu_speedup": round(cpu_ratio, 1),
        "speedup": round(speedup, 1),
        "identical": bool(identical),
    }
    print(
        f"{name:>14}: {n:>9,} rows  ours {ours_rps:>12,.0f} rows/s  sdk {sdk_rps:>9,.0f} rows/s "
        f"(on {sample.shape[0]:,} rows)  speedup wall {ours_rps / sdk_rps:.1f}x cpu {cpu_ratio:.1f}x  "
        f"identical={identical}",
        flush=True,
    )
    if general:
        plain, t_plain, cpu_plain = ours_encode(matrix, labels, repeat, accelerate=False)
        result["identical"] = identical = identical and plain == ours
        result["general_seconds"] = round(t_plain, 4)
        result["general_cpu_seconds"] = round(cpu_plain, 4)
        result["ours_cpu_seconds"] = round(cpu_ours, 4)
        result["general_rows_per_s"] = round(n / t_plain)
        result["one_layout_gain"] = round(min(t_plain / t_ours, cpu_plain / max(cpu_ours, 1e-9)), 2)
        sdk_cpu_rps = sample.shape[0] / max(cpu_sdk, 1e-9)
        result["general_speedup"] = round(
            min(n / t_plain / sdk_rps, n / max(cpu_plain, 1e-9) / sdk_cpu_rps), 1
        )
        print(
            f"{'':>14}  general writer alone {n / t_plain:>12,.0f} rows/s ({cpu_plain:.2f} vs {cpu_ours:.2f} "
            f"cpu-s): one-layout gain {result['one_layout_gain']:.2f}x, general vs sdk "
            f"{result['general_speedup']:.1f}x  identical={identical}",
            flush=True,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", action="store_true", help="encode the real ua.base (downloads once)")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the large synthetic case")
    parser.add_argument(
        "--sdk-sample", type=int, default=100_000, help="rows the SDK encodes in the large case"
    )
    parser.add_argument("--repeat", type=int, default=3, help="our encoder: best of N runs")
    parser.add_argument(
        "--general", action="store_true", help="also time the writer without the one-layout path"
    )
    parser.add_argument("--prepare-shape", action="store_true", help="add bench/prepare.py's headline shape")
    args = parser.parse_args(argv)

    if args.movielens:
        base_name, (base, base_labels) = "ua.base", movielens_ua_base()
    else:
        base_name, (base, base_labels) = "ua.base-shape", synthetic(90_570, seed=1)
    cases = [
        case(base_name, base, base_labels, base.shape[0], args.repeat, args.general),
        case(
            f"synthetic-{args.rows // 1_000_000}M",
            *synthetic(args.rows, seed=2),
            args.sdk_sample,
            args.repeat,
            args.general,
        ),
    ]
    if args.prepare_shape:
        cases.append(case("prepare-shape", *prepare_shape(), args.sdk_sample, args.repeat, args.general))
    summary = {
        "benchmark": "recordio.encode_sparse vs sagemaker 2.257.7 write_spmatrix_to_sparse_tensor",
        "speedup": min(c["speedup"] for c in cases),
        "identical": all(c["identical"] for c in cases),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cases": cases,
    }
    print(json.dumps(summary))
    return 0 if summary["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
