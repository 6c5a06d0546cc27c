"""Row-level rules on parsed interactions: duplicates, minimum counts, id remapping, holdout split."""

from __future__ import annotations

import numpy as np


def latest_per_pair(users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_items: int) -> np.ndarray:
    """Indices of the rows to keep: one per (user, item) pair, the latest by timestamp, then row order.

    Rows arrive in input order (files sorted by key, then line order), so "row order" means "the
    later line / later file wins" when timestamps tie or are absent.
    """
    n = len(users)
    pair = users * n_items + items
    sorted_pairs = np.sort(pair)
    dup_values = sorted_pairs[1:][sorted_pairs[1:] == sorted_pairs[:-1]]
    if len(dup_values) == 0:
        return np.arange(n)
    involved = np.flatnonzero(np.isin(pair, dup_values))
    # Stable sorts: by timestamp, then by pair; within a pair the last row is the latest, ties broken
    # by input order (the stable sort keeps later rows after earlier ones).
    order = involved[np.argsort(ts[involved], kind="stable")]
    order = order[np.argsort(pair[order], kind="stable")]
    p = pair[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = p[:-1] != p[1:]
    drop = np.ones(n, dtype=bool)
    drop[involved] = False
    drop[order[last]] = True
    return np.flatnonzero(drop)


def filter_min_counts(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, min_user: int, min_item: int
) -> np.ndarray:
    """Indices of rows surviving both minimum-count filters, re-applied until nothing changes."""
    keep = np.arange(len(users))
    if min_user <= 1 and min_item <= 1:
        return keep
    while True:
        u, i = users[keep], items[keep]
        ok = (np.bincount(u, minlength=n_users)[u] >= min_user) & (
            np.bincount(i, minlength=n_items)[i] >= min_item
        )
        if ok.all():
            return keep
        keep = keep[ok]


def dense_map(codes: np.ndarray, n_codes: int, order_of) -> tuple[np.ndarray, np.ndarray]:
    """(lookup provisional code -> dense index or -1, provisional codes in dense order).

    `order_of(used_codes)` returns the positions of `used_codes` in canonical order.
    """
    used = np.flatnonzero(np.bincount(codes, minlength=n_codes))
    ordered = used[np.asarray(order_of(used), dtype=np.int64)] if len(used) else used
    lut = np.full(n_codes, -1, dtype=np.int64)
    lut[ordered] = np.arange(len(ordered))
    return lut, ordered


def last_n_split(users: np.ndarray, ts: np.ndarray, n_users: int, n: int) -> np.ndarray:
    """Boolean mask of held-out rows: per user, the last `n` by timestamp (ties: later row).

    Users with `n` or fewer interactions keep everything in training (they would have no
    training signal otherwise), so each held-out user still has at least one training row.
    """
    order = np.argsort(ts, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    u = users[order]
    rank_from_end = counts[u] - (np.arange(len(order)) - starts[u])  # 1 = the user's latest row
    held = np.zeros(len(users), dtype=bool)
    held[order] = (rank_from_end <= n) & (counts[u] > n)
    return held


def csr_from_pairs(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) of the set of pairs, rows sorted by item."""
    codes = np.unique(users.astype(np.int64) * n_items + items)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes // n_items, minlength=n_users), out=indptr[1:])
    return indptr, (codes % n_items).astype(np.int32)
