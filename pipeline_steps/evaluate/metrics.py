"""Top-x ranking metrics over users with held-out interactions (binary relevance).

precision = hits / x; recall = hits / |holdout|; NDCG with log2 discounts, ideal = min(|holdout|, x)
hits at the top; MAP = mean over users of sum(precision@i at each hit i) / min(|holdout|, x);
hit rate = share of users with >= 1 hit; coverage = distinct recommended items / n_items over all users.

`intervals()`: the 95% interval of each per-user mean. Every user scored (no sample): the normal
approximation, mean ± 1.96 s/√n (s the sample standard deviation of the per-user values). A cluster
sample (evaluate scores every eligible user of a random set of transform parts, decision 0015): the
users of one part are not independent draws, so the interval is the ratio estimator's over parts,
r ± 1.96 √v with r = Σ y_p / Σ m_p, v = Σ (y_p − r m_p)² / (n (n − 1) m̄²) (y_p the part's sum of the
metric, m_p its users scored, n parts, m̄ = Σ m_p / n; the linearised variance of a ratio, Cochran,
Sampling Techniques, 3rd ed., ch. 6). Neither has a finite-population correction: the interval speaks
of users like these, not only of this run's. Coverage is not a per-user mean and gets none.
"""

from __future__ import annotations

import numpy as np

from pipeline_steps.common.runio import Csr

METRIC_NAMES = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
PER_USER = METRIC_NAMES[:-1]
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def ratio_interval(totals: np.ndarray, counts: np.ndarray) -> list[float] | None:
    """95% interval of Σ totals / Σ counts from a simple random sample of clusters (module docstring).

    totals: each sampled cluster's sum of the per-user values; counts: its users. None below two
    clusters or without users.
    """
    totals, counts = np.asarray(totals, dtype=float), np.asarray(counts, dtype=float)
    n = counts.size
    if n < 2 or counts.sum() <= 0:
        return None
    r = float(totals.sum() / counts.sum())
    residual = totals - r * counts
    mean_count = float(counts.mean())
    var = float(residual @ residual) / (n * (n - 1) * mean_count * mean_count)
    half = Z95 * var**0.5
    return [r - half, r + half]


class MetricAccumulator:
    def __init__(self, *, x: int, n_items: int) -> None:
        self.x, self.n_items = x, n_items
        self._discount = 1.0 / np.log2(np.arange(2, x + 2))
        self._ideal = np.cumsum(self._discount)
        self._sums = dict.fromkeys(PER_USER, 0.0)
        self._squares = dict.fromkeys(PER_USER, 0.0)
        self.n_users = 0
        self._covered = np.zeros(n_items, dtype=bool)
        # cluster -> [users, sum of each PER_USER metric] (a cluster sample: intervals over parts)
        self._clusters: dict[int, np.ndarray] = {}

    def add(self, recommended: np.ndarray, relevant: np.ndarray, cluster: int | None = None) -> None:
        """One user's best-first list (item indices, <= x) and held-out items (may be empty).

        `cluster`: the sampled part the user belongs to (evaluate's cluster sample), or None.
        """
        rec = np.asarray(recommended)[: self.x]
        self._covered[rec] = True
        if relevant.size == 0:
            return
        hit = np.isin(rec, relevant)
        hits = int(hit.sum())
        n_ideal = min(relevant.size, self.x)
        values = {
            "precision": hits / self.x,
            "recall": hits / relevant.size,
            "ndcg": float(self._discount[: rec.size][hit].sum()) / float(self._ideal[n_ideal - 1]),
            "map": 0.0,
            "hit_rate": 1.0 if hits else 0.0,
        }
        if hits:
            ranks = np.flatnonzero(hit) + 1
            values["map"] = float((np.arange(1, hits + 1) / ranks).sum()) / n_ideal
        for name, value in values.items():
            self._sums[name] += value
            self._squares[name] += value * value
        self.n_users += 1
        if cluster is not None:
            row = self._clusters.setdefault(cluster, np.zeros(1 + len(PER_USER)))
            row[0] += 1
            row[1:] += [values[name] for name in PER_USER]

    @property
    def clustered(self) -> bool:
        return bool(self._clusters)

    def intervals(self) -> dict[str, list[float] | None]:
        """[low, high] of each per-user metric (module docstring); None below two users (clusters)."""
        out: dict[str, list[float] | None] = {}
        n = self.n_users
        if self._clusters:
            table = np.array([self._clusters[c] for c in sorted(self._clusters)])
            for j, name in enumerate(PER_USER, start=1):
                out[name] = ratio_interval(table[:, j], table[:, 0])
            out["coverage"] = None
            return out
        for name in PER_USER:
            if n < 2:
                out[name] = None
                continue
            mean = self._sums[name] / n
            var = max(self._squares[name] - n * mean * mean, 0.0) / (n - 1)
            half = Z95 * (var / n) ** 0.5
            out[name] = [mean - half, mean + half]
        out["coverage"] = None
        return out

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
    popularity: np.ndarray, seen: Csr, holdout: Csr, *, x: int, users: np.ndarray | None = None
) -> tuple[dict[str, float], int]:
    acc = baseline_accumulator(popularity, seen, holdout, x=x, users=users)
    return acc.result(), acc.n_users


def baseline_accumulator(
    popularity: np.ndarray,
    seen: Csr,
    holdout: Csr,
    *,
    x: int,
    users: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> MetricAccumulator:
    """Most-popular unseen top x of every user (or of `users`, evaluate's sample).

    `clusters` (one per user of `users`): the sampled part of each, for the cluster interval.
    """
    acc = MetricAccumulator(x=x, n_items=popularity.size)
    order = popular_order(popularity)
    if users is None:
        users = np.arange(seen.indptr.size - 1)
    for j, u in enumerate(users):
        cluster = None if clusters is None else int(clusters[j])
        acc.add(popular_top_x(order, seen.row(int(u)), x), holdout.row(int(u)), cluster)
    return acc
