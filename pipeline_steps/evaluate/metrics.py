"""Top-x ranking metrics over users with held-out interactions (binary relevance).

precision = hits / x; recall = hits / |holdout|; NDCG with log2 discounts, ideal = min(|holdout|, x)
hits at the top; MAP = mean over users of sum(precision@i at each hit i) / min(|holdout|, x);
hit rate = share of users with >= 1 hit; coverage = distinct recommended items / n_items over all users.
"""

from __future__ import annotations

import numpy as np

from pipeline_steps.common.runio import Csr

METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


class MetricAccumulator:
    def __init__(self, *, x: int, n_items: int) -> None:
        self.x, self.n_items = x, n_items
        self._discount = 1.0 / np.log2(np.arange(2, x + 2))
        self._ideal = np.cumsum(self._discount)
        self._sums = dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate"), 0.0)
        self.n_users = 0
        self._covered = np.zeros(n_items, dtype=bool)

    def add(self, recommended: np.ndarray, relevant: np.ndarray) -> None:
        """One user's best-first list (item indices, <= x) and held-out items (may be empty)."""
        rec = np.asarray(recommended)[: self.x]
        self._covered[rec] = True
        if relevant.size == 0:
            return
        hit = np.isin(rec, relevant)
        hits = int(hit.sum())
        n_ideal = min(relevant.size, self.x)
        s = self._sums
        s["precision"] += hits / self.x
        s["recall"] += hits / relevant.size
        s["ndcg"] += float(self._discount[: rec.size][hit].sum()) / float(self._ideal[n_ideal - 1])
        if hits:
            ranks = np.flatnonzero(hit) + 1
            s["map"] += float((np.arange(1, hits + 1) / ranks).sum()) / n_ideal
            s["hit_rate"] += 1.0
        self.n_users += 1

    def result(self) -> dict[str, float]:
        out = {k: (v / self.n_users if self.n_users else float("nan")) for k, v in self._sums.items()}
        out["coverage"] = float(self._covered.sum()) / self.n_items
        return out


def popular_order(popularity: np.ndarray) -> np.ndarray:
    """Item indices, most popular first (ties by index, so the baseline is deterministic)."""
    return np.lexsort((np.arange(popularity.size), -popularity))


def popular_top_x(order: np.ndarray, seen_row: np.ndarray, x: int) -> np.ndarray:
    """The x most popular items the user has not interacted with."""
    candidates = order[: x + seen_row.size]
    if seen_row.size:
        candidates = candidates[~np.isin(candidates, seen_row)]
    return candidates[:x]


def baseline_metrics(
    popularity: np.ndarray, seen: Csr, holdout: Csr, *, x: int
) -> tuple[dict[str, float], int]:
    acc = MetricAccumulator(x=x, n_items=popularity.size)
    order = popular_order(popularity)
    for u in range(seen.indptr.size - 1):
        acc.add(popular_top_x(order, seen.row(u), x), holdout.row(u))
    return acc.result(), acc.n_users
