"""Recall, quality and search time of the local k-NN's IVFFlat index against Flat (decision 0019).

Datasets, each giving FM item vectors [V_i, w_i] (the k-NN index, labels 1..I) and user queries
[V_u, 1] exactly as repackage builds them (`repackage.core.knn_vectors`'s layout), and the
pipeline's k (`repackage.core.choose_k` with cdk.json's x + read_extra, `k_quantile`, related_x
and RepackageConfig's `max_k`):

- ``ml100k``: ua.base -> ua.test through the prepare step (cdk.json's `topx:prepare`: implicit
  labels, 4 negatives x 4 draws) and the local FM with cdk.json's `topx:fm.hyperparameters`
  (8 epochs), via `fm_defaults_grid.prepare_data` / `train_channel`; every user is a query.
- ``synthetic`` at each of ``--sizes`` interactions: the CSV of bench/scale.py (same shape and seed
  rule: users 3%, items 0.3% of the rows, Pareto activity, seed ``--seed`` + size index), the
  prepare step with `negative_draws` 1 and the local FM for 1 epoch (as bench/scale.py runs them);
  queries are a seeded sample of ``--queries`` users.

Per dataset the index is built by `knn.build` (the local k-NN training: ``faiss.Flat``, then
``faiss.IVFFlat`` with `faiss_index_ivf_nlists` = each of ``--nlists``: ``auto`` (sqrt(I), AWS's
rule) or a factor of sqrt(I) like ``0.5x``) and searched by `knn.search` (the transform's search:
k neighbours, short IVF rows completed from every list) with nprobe = each of ``--nprobes``
(5 is the container's default; others set ``_faiss_index_nprobe``). Figures per setting:

- ``recall_at_k``: the share of Flat's k neighbours that IVF returns (mean over queries);
- ``recall_at_10``: the share of Flat's published list (the best 10 after removing the user's
  seen items) found in IVF's published list;
- ``p_at_10``: hits/10 of that list against the held-out items (ua.test on ML-100k; prepare's
  last-10 holdout on synthetic), mean over query users with held-out items; seen items masked, a
  list shorter than 10 after masking is filled from the most popular unseen items (publish's rule);
- ``cpu_us_per_query``: process CPU time of `knn.search` (faiss's threads included) per query,
  best of ``--repeats``; ``build_cpu_s``: CPU time of `knn.build` (IVF: k-means on the items);
- ``short_rows``: share of queries whose probed lists held fewer than k vectors (searched again
  in every list).

Ratios vs Flat of the same run: ``recall``, ``p_at_10_delta`` and ``cpu_ratio`` (IVF / Flat).
Last stdout line: one JSON object. Nothing is written to the repository.

    nice -n 10 .venv/bin/python bench/experiments/ivf_recall.py \\
        [--sizes 1000000,3000000,10000000] [--nlists auto,0.5x,2x] [--nprobes 5,10,20] \\
        [--queries 20000] [--no-ml100k] [--seed 0] [--repeats 2]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.experiments import fm_defaults_grid as grid  # noqa: E402
from bench.support.synthetic import interactions_csv, pareto_activity  # noqa: E402
from pipeline_steps.local_algorithms import fm, knn  # noqa: E402
from pipeline_steps.local_algorithms.hyperparameters import parse_fm  # noqa: E402
from pipeline_steps.prepare.config import PrepareConfig  # noqa: E402
from pipeline_steps.prepare.core import prepare  # noqa: E402
from pipeline_steps.prepare.storage import LocalStorage  # noqa: E402
from pipeline_steps.repackage.config import RepackageConfig  # noqa: E402
from pipeline_steps.repackage.core import choose_k  # noqa: E402

TOP_X = 10
USERS_PER_ROW, ITEMS_PER_ROW = 0.03, 0.003  # bench/scale.py's shape


def context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


@dataclass
class Vectors:
    name: str
    items: np.ndarray  # (I, f+1) float32: [V_i, w_i]
    users: np.ndarray  # (U, f+1) float32: [V_u, 1]
    seen: sp.csr_matrix  # (U, I) train interactions
    holdout: sp.csr_matrix  # (U, I) held-out interactions
    popularity: np.ndarray  # (I,) prepare's popularity (a count per item)
    fm_cpu_s: float


def _csr(data: bytes, n_users: int, n_items: int) -> sp.csr_matrix:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        indptr, indices = z["indptr"], z["indices"]
    return sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_users, n_items))


def _vectors(name: str, params: fm.FMParams, n_users: int, data: dict, cpu: float) -> Vectors:
    V, w = np.asarray(params.V, np.float32), np.asarray(params.w, np.float32).reshape(-1)
    items = np.hstack([V[n_users:], w[n_users:, None]])
    users = np.hstack([V[:n_users], np.ones((n_users, 1), np.float32)])
    return Vectors(name, items, users, data["seen"], data["holdout"], data["popularity"], cpu)


def _fm_hyper(feature_dim: int, epochs: int) -> dict[str, str]:
    hyper = dict(context()["topx:fm"]["hyperparameters"])
    return hyper | {"feature_dim": str(feature_dim), "epochs": str(epochs)}


def ml100k_vectors(tmp: Path) -> Vectors:
    from pipeline_steps.datasets.movielens import load

    prep = context()["topx:prepare"]
    ml = load()
    src = tmp / "ml-100k"
    src.mkdir()
    shutil.copy(ml.ua_base, src / "ua.base")
    shutil.copy(ml.ua_test, src / "ua.test")
    row = grid.Row("cdk.json", int(prep["negative_ratio"]), int(prep["negative_draws"]))
    data = grid.prepare_data(row, src, tmp)
    hyper = _fm_hyper(data.n_users + data.n_items, int(context()["topx:fm"]["hyperparameters"]["epochs"]))
    cpu = time.process_time()
    params = fm.train(data.X, data.y, parse_fm(hyper))
    cpu = time.process_time() - cpu
    parts = {"seen": data.seen, "holdout": data.holdout, "popularity": data.popularity}
    return _vectors("ml100k", params, data.n_users, parts, cpu)


def synthetic_vectors(tmp: Path, rows: int, seed: int) -> Vectors:
    """bench/scale.py's data and prepare (one draw), the local FM for 1 epoch."""
    n_users, n_items = max(round(rows * USERS_PER_ROW), 10), max(round(rows * ITEMS_PER_ROW), 10)
    src = tmp / f"src-{rows}"
    src.mkdir()
    interactions_csv(
        src / "interactions.csv", rows, n_users=n_users, n_items=n_items, seed=seed,
        user_p=pareto_activity(n_users, seed + 1),
    )  # fmt: skip
    defaults = {k: v for k, v in context()["topx:prepare"].items() if v is not None}
    config = PrepareConfig.from_dict(
        {**defaults, "input_prefix": "interactions.csv", "negative_draws": 1}, where="ivf_recall"
    )
    sink = LocalStorage(tmp / f"prepared-{rows}")
    manifest = prepare(config, source=LocalStorage(src), sink=sink, run_id="ivf", out_prefix="prepared/")
    shutil.rmtree(src, ignore_errors=True)
    nu, ni, files = manifest["n_users"], manifest["n_items"], manifest["files"]
    X, y = grid.train_channel(sink, manifest["train_shards"])
    parts = {
        "seen": _csr(sink.read_bytes(files["seen"]), nu, ni),
        "holdout": _csr(sink.read_bytes(files["holdout"]), nu, ni),
        "popularity": np.load(io.BytesIO(sink.read_bytes(files["popularity"]))),
    }
    shutil.rmtree(tmp / f"prepared-{rows}", ignore_errors=True)
    cpu = time.process_time()
    params = fm.train(X, y, parse_fm(_fm_hyper(nu + ni, 1)))
    cpu = time.process_time() - cpu
    del X, y
    return _vectors(f"synthetic-{rows}", params, nu, parts, cpu)


def pipeline_k(vec: Vectors) -> int:
    """repackage's k: x + read_extra stored per user, the k_quantile of x + seen, related_x + 1 floor."""
    ctx = context()
    publish = ctx["topx:publish"]
    seen_counts = np.diff(vec.seen.indptr)
    k, _ = choose_k(
        seen_counts,
        x=int(ctx["topx:x"]) + int(publish["read_extra"]),
        n_items=vec.items.shape[0],
        max_k=RepackageConfig().max_k,
        min_k=int(publish["related_x"]) + 1,
        quantile=float(ctx["topx:repackage"]["k_quantile"]),
    )
    return k


def published(labels: np.ndarray, seen: sp.csr_matrix, users: np.ndarray, popular: np.ndarray) -> np.ndarray:
    """(n, TOP_X) item indices: the best TOP_X neighbours not seen, then the most popular unseen
    (``popular``: item indices, most popular first)."""
    out = np.empty((labels.shape[0], TOP_X), np.int64)
    for row, (u, lab) in enumerate(zip(users.tolist(), labels, strict=True)):
        s = set(seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist())
        best = [i for i in (lab[::-1].astype(np.int64) - 1).tolist() if i not in s][:TOP_X]
        if len(best) < TOP_X:
            taken = s | set(best)
            best += [i for i in popular[: len(taken) + TOP_X].tolist() if i not in taken][: TOP_X - len(best)]
        out[row] = best
    return out


def p_at_10(lists: np.ndarray, holdout: sp.csr_matrix, users: np.ndarray) -> tuple[float, int]:
    hits = np.asarray(holdout[users[:, None], lists].sum(axis=1)).ravel()
    has = np.diff(holdout.indptr)[users] > 0
    return float(hits[has].mean() / TOP_X), int(has.sum())


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over rows of |a_row ∩ b_row| / len(b_row) (NaN labels never match)."""
    return float(
        np.mean([len(set(x) & set(y)) / len(y) for x, y in zip(a.tolist(), b.tolist(), strict=True)])
    )


def timed_search(model: knn.KNNModel, Q: np.ndarray, repeats: int) -> tuple[np.ndarray, float, float]:
    best_cpu, best_wall, labels = math.inf, math.inf, np.empty(0)
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        _, labels = knn.search(model, Q)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return labels, best_cpu, best_wall


def short_share(model: knn.KNNModel, Q: np.ndarray, k: int) -> float:
    if not isinstance(model.index, knn.faiss.IndexIVF):
        return 0.0
    _, ids = model.index.search(np.ascontiguousarray(Q, dtype=np.float32), k)
    return float((ids < 0).any(axis=1).mean())


def nlist_value(spec: str, n_items: int) -> int | None:
    """``auto`` -> None (the hyperparameter's "auto"); ``0.5x`` -> round(0.5 sqrt(I))."""
    if spec == "auto":
        return None
    return max(1, round(float(spec.rstrip("x")) * math.sqrt(n_items)))


def measure(vec: Vectors, args: argparse.Namespace, rng: np.random.Generator) -> dict:
    k = pipeline_k(vec)
    n_users, n_items = vec.users.shape[0], vec.items.shape[0]
    users = (
        np.arange(n_users)
        if n_users <= args.queries
        else np.sort(rng.choice(n_users, args.queries, replace=False))
    )
    Q = vec.users[users]
    labels = np.arange(1, n_items + 1, dtype=np.float32)
    base = {
        "feature_dim": vec.items.shape[1],
        "k": k,
        "predictor_type": knn.CLASSIFIER,
        "sample_size": n_items,
    }
    base |= {"index_metric": knn.INNER_PRODUCT}
    cpu = time.process_time()
    flat = knn.build(vec.items, labels, knn.KNNConfig(**base))
    flat_build = time.process_time() - cpu
    flat_lab, flat_cpu, flat_wall = timed_search(flat, Q, args.repeats)
    popular = np.argsort(-vec.popularity, kind="stable")  # item indices, most popular first
    flat_lists = published(flat_lab, vec.seen, users, popular)
    flat_p, n_eval = p_at_10(flat_lists, vec.holdout, users)
    out: dict[str, Any] = {
        "dataset": vec.name,
        "n_users": n_users,
        "n_items": n_items,
        "queries": int(users.size),
        "eval_users": n_eval,
        "k": k,
        "fm_cpu_s": round(vec.fm_cpu_s, 1),
        "flat": {
            "p_at_10": round(flat_p, 4),
            "cpu_us_per_query": round(1e6 * flat_cpu / users.size, 2),
            "wall_us_per_query": round(1e6 * flat_wall / users.size, 2),
            "build_cpu_s": round(flat_build, 3),
        },
        "ivf": [],
    }
    print(f"{vec.name}: {n_users} users x {n_items} items, k {k}, {users.size} queries; Flat P@10 "
          f"{flat_p:.4f}, {out['flat']['cpu_us_per_query']} us CPU/query", flush=True)  # fmt: skip
    for spec in args.nlists:
        config = knn.KNNConfig(
            **base, index_type="faiss.IVFFlat", faiss_index_ivf_nlists=nlist_value(spec, n_items)
        )
        cpu = time.process_time()
        model = knn.build(vec.items, labels, config)
        build = time.process_time() - cpu
        for nprobe in args.nprobes:
            model.index.nprobe = min(nprobe, model.index.nlist)
            lab, s_cpu, s_wall = timed_search(model, Q, args.repeats)
            lists = published(lab, vec.seen, users, popular)
            p, _ = p_at_10(lists, vec.holdout, users)
            row = {
                "nlist_spec": spec,
                "nlist": int(model.index.nlist),
                "nprobe": int(model.index.nprobe),
                "recall_at_k": round(overlap(lab, flat_lab), 4),
                "recall_at_10": round(overlap(lists, flat_lists), 4),
                "p_at_10": round(p, 4),
                "p_at_10_delta": round(p - flat_p, 4),
                "cpu_us_per_query": round(1e6 * s_cpu / users.size, 2),
                "wall_us_per_query": round(1e6 * s_wall / users.size, 2),
                "cpu_ratio": round(s_cpu / flat_cpu, 3),
                "short_rows": round(short_share(model, Q, k), 4),
                "build_cpu_s": round(build, 3),
            }
            out["ivf"].append(row)
            print(f"  nlist {row['nlist']:5d} ({spec:>4s}) nprobe {row['nprobe']:3d}: recall@k "
                  f"{row['recall_at_k']:.3f} recall@10 {row['recall_at_10']:.3f} P@10 {p:.4f} "
                  f"({row['p_at_10_delta']:+.4f}) CPU x{row['cpu_ratio']:.3f} short {row['short_rows']:.3f}",
                  flush=True)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--sizes", default="1000000,3000000,10000000", help="synthetic interactions ('' for none)"
    )
    ap.add_argument("--nlists", default="auto,0.5x,2x", help="auto and factors of sqrt(items)")
    ap.add_argument("--nprobes", default="5,10,20")
    ap.add_argument("--queries", type=int, default=20_000, help="user queries sampled per synthetic size")
    ap.add_argument("--repeats", type=int, default=2, help="searches per setting (best CPU time kept)")
    ap.add_argument("--no-ml100k", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.nlists = [s.strip() for s in args.nlists.split(",") if s.strip()]
    for spec in args.nlists:
        if spec != "auto" and not (spec.endswith("x") and spec[:-1].replace(".", "", 1).isdigit()):
            ap.error(f"--nlists: {spec!r} is neither auto nor a factor like 0.5x")
    args.nprobes = [int(v) for v in args.nprobes.split(",") if v.strip()]
    if not args.nprobes or min(args.nprobes) < 1:
        ap.error("--nprobes: positive integers")
    sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
    rng = np.random.default_rng(args.seed)
    load_before, started = os.getloadavg()[0], time.perf_counter()
    results = []
    tmp = Path(tempfile.mkdtemp(prefix="ivf-recall-"))
    try:
        if not args.no_ml100k:
            results.append(measure(ml100k_vectors(tmp), args, rng))
        for index, rows in enumerate(sizes):
            results.append(measure(synthetic_vectors(tmp, rows, args.seed + index), args, rng))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "metric": "INNER_PRODUCT on [V_i, w_i] / [V_u, 1]; recall vs faiss.Flat in the same run",
                "nlists": args.nlists,
                "nprobes": args.nprobes,
                "default_nprobe": knn.NPROBE,
                "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "seconds": round(time.perf_counter() - started, 1),
                "cpu_count": os.cpu_count(),
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
