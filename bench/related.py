"""Benchmark: which item query vector makes the k-NN's item -> item lists mean "similar items".

The FM is trained as the pipeline trains it by default (ua.base, implicit labels: every observed
pair a positive, `negative_ratio` = 4 uniform unseen items per positive, `negative_draws` = 4
draws; num_factors 64, epochs 8, mini_batch_size 1000, factors_lr 0.001, linear_lr 0.01: cdk.json).
The k-NN index holds the pipeline's item vectors [V_j, w_j] (INNER_PRODUCT). Query options for
item i (self match dropped, the top `related_x` = 10 kept):

- "factors": [V_i, 0]  -> <V_i, V_j>            (same index; the pipeline's choice)
- "factors+bias": [V_i, 1] -> <V_i, V_j> + w_j  (same index; the user query's form)
- "cosine": V_i / |V_i| against V_j / |V_j|     (needs a second index with COSINE)
- "popular": the 10 most popular other items for every item (no model: a reference)

Genre share = share of (item, related item) pairs that share at least one MovieLens genre; the
random share is the same over every pair of distinct items. Last stdout line: JSON.

    .venv/bin/python bench/related.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline_steps.datasets.movielens import CITATION, genre_share, load
from pipeline_steps.local_algorithms import fm
from pipeline_steps.local_algorithms.hyperparameters import parse_fm

RELATED_X = 10
NEGATIVE_RATIO, NEGATIVE_DRAWS = 4, 4
HYPER = {"num_factors": "64", "epochs": "8", "mini_batch_size": "1000", "factors_lr": "0.001"}


def implicit_rows(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, seed: int = 0):
    """Positives + uniform unseen negatives, `NEGATIVE_DRAWS` times (prepare's default labels)."""
    rng = np.random.default_rng(seed)
    seen = set(zip(users.tolist(), items.tolist(), strict=True))
    us, its, ys = [], [], []
    for _ in range(NEGATIVE_DRAWS):
        us.append(users)
        its.append(items)
        ys.append(np.ones(users.size, np.float32))
        neg_u = np.repeat(users, NEGATIVE_RATIO)
        neg_i = rng.integers(0, n_items, neg_u.size)
        clash = np.array([(u, i) in seen for u, i in zip(neg_u.tolist(), neg_i.tolist(), strict=True)])
        while clash.any():  # redraw the negatives that hit a seen pair
            neg_i[clash] = rng.integers(0, n_items, int(clash.sum()))
            again = zip(neg_u[clash].tolist(), neg_i[clash].tolist(), strict=True)
            clash[clash] = [(u, i) in seen for u, i in again]
        us.append(neg_u)
        its.append(neg_i)
        ys.append(np.zeros(neg_u.size, np.float32))
    u, i, y = np.concatenate(us), np.concatenate(its), np.concatenate(ys)
    cols = np.stack([u, n_users + i], axis=1).ravel()
    X = sp.csr_matrix(
        (np.ones(cols.size, np.float32), cols.astype(np.int32), np.arange(0, cols.size + 1, 2)),
        shape=(u.size, n_users + n_items),
    )
    return X, y


def top_related(scores: np.ndarray, x: int) -> np.ndarray:
    """Best-first indices of each row's x highest scores, the row's own item excluded."""
    scores = scores.copy()
    np.fill_diagonal(scores, -np.inf)
    part = np.argpartition(-scores, x, axis=1)[:, :x]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def main() -> None:
    print(CITATION)
    ml = load()
    rows = np.loadtxt(ml.ua_base, dtype=np.int64, usecols=(0, 1))
    user_ids, users = np.unique(rows[:, 0], return_inverse=True)
    item_ids, items = np.unique(rows[:, 1], return_inverse=True)
    n_users, n_items = user_ids.size, item_ids.size
    X, y = implicit_rows(users, items, n_users, n_items)
    config = parse_fm({**HYPER, "feature_dim": str(n_users + n_items), "predictor_type": "binary_classifier"})
    started = time.perf_counter()
    params = fm.train(X, y, config)
    print(f"FM: {X.shape[0]:,} rows, {time.perf_counter() - started:.1f}s")
    V, w = params.V[n_users:].astype(np.float64), params.w[n_users:].astype(np.float64)
    unit = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    popularity = np.bincount(items, minlength=n_items)
    popular = np.argsort(-popularity, kind="stable")[: RELATED_X + 1]
    options = {
        "factors": top_related(V @ V.T, RELATED_X),
        "factors+bias": top_related(V @ V.T + w[None, :], RELATED_X),
        "cosine": top_related(unit @ unit.T, RELATED_X),
        "popular": np.array([[j for j in popular if j != i][:RELATED_X] for i in range(n_items)]),
    }
    names = [str(i) for i in item_ids]
    result: dict[str, object] = {"n_items": n_items, "related_x": RELATED_X}
    for name, lists in options.items():
        related = {names[i]: [names[j] for j in lists[i]] for i in range(n_items)}
        share = genre_share(related, ml.genres)
        distinct = np.unique(lists).size
        result[name] = {
            "genre_share": round(float(share["related_share"]), 4),
            "distinct_related_items": int(distinct),
            "mean_popularity_of_related": round(float(popularity[lists].mean()), 1),
        }
        result["random_pairs_genre_share"] = round(float(share["random_share"]), 4)
        print(f"  {name:<14} genre share {share['related_share']:.4f}  distinct related items {distinct}")
    print(f"  random pairs   genre share {result['random_pairs_genre_share']:.4f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
