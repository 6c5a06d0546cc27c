"""Row-level rules on parsed interactions: duplicates, minimum counts, id remapping, holdout split."""

from __future__ import annotations

import numpy as np

from pipeline_steps.prepare.ids import final_order


def latest_per_pair(users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_items: int) -> np.ndarray:
    """Indices of the rows to keep: one per (user, item) pair, the latest by timestamp, then row order.

    Rows arrive in input order (files sorted by key, then line order), so "row order" means "the
    later line / later file wins" when timestamps tie or are absent.
    """
    n = len(users)
    pair = users.astype(np.int64) * n_items + items
    sorted_pairs = np.sort(pair)
    dup_values = sorted_pairs[1:][sorted_pairs[1:] == sorted_pairs[:-1]]
    if len(dup_values) == 0:
        return np.arange(n)
    dup_values = np.unique(dup_values)
    # Cheap prefilter (one gather per row into a bitmap), then an exact check on the candidates.
    bitmap = np.zeros(1 << 24, dtype=bool)
    bitmap[dup_values & 0xFFFFFF] = True
    cand = np.flatnonzero(bitmap[pair & 0xFFFFFF])
    pos = np.minimum(np.searchsorted(dup_values, pair[cand]), len(dup_values) - 1)
    involved = cand[dup_values[pos] == pair[cand]]
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


def dense_map(codes: np.ndarray, registry) -> tuple[np.ndarray, list[str]]:
    """(lookup provisional code -> dense index or -1, original ids in dense-index order).

    Only ids that occur in `codes` get an index; the order is `ids.final_order` (numeric ids
    numerically, others by UTF-8 bytes), so it does not depend on file order.
    """
    used = np.flatnonzero(np.bincount(codes, minlength=len(registry)))
    raw = [registry.ids[c] for c in used.tolist()]
    names = [b.decode("utf-8") for b in raw]
    order = np.asarray(final_order(names, raw), dtype=np.int64)
    lut = np.full(len(registry), -1, dtype=np.int32)  # int32 halves the per-row arrays
    lut[used[order]] = np.arange(len(order))
    return lut, [names[k] for k in order.tolist()]


def last_n_split(users: np.ndarray, ts: np.ndarray, n_users: int, n: int) -> np.ndarray:
    """Boolean mask of held-out rows: per user, the last `n` by timestamp (ties: later row).

    Users with `n` or fewer interactions keep everything in training (they would have no
    training signal otherwise), so each held-out user still has at least one training row.
    Sorting keys (not an argsort) finds each user's n-th latest timestamp; only rows tied with
    that threshold need an order, and they are few.
    """
    held = np.zeros(len(users), dtype=bool)
    if len(users) == 0:
        return held
    t = ts - ts.min()
    span = int(t.max()) + 1
    if n_users * span >= 2**62:  # timestamps too spread to pack with the user: use their ranks
        t = np.unique(ts, return_inverse=True)[1].reshape(-1)
        span = int(t.max()) + 1
    key = users.astype(np.int64) * span + t
    counts = np.bincount(users, minlength=n_users)
    ends = np.cumsum(counts)
    many = counts > n
    thr = np.full(n_users, np.iinfo(np.int64).max, dtype=np.int64)
    thr[many] = np.sort(key)[ends[many] - n]  # key of each user's n-th latest row
    row_thr = thr[users]
    held[:] = key > row_thr
    tied = np.flatnonzero(key == row_thr)
    if len(tied):
        # Per user, hold the latest (last in input order) tied rows until n rows are held.
        room = n - np.bincount(users[held], minlength=n_users)
        tu = users[tied]
        order = np.argsort(tu, kind="stable")
        tu_sorted = tu[order]
        group_end = np.searchsorted(tu_sorted, tu_sorted, side="right")
        rank_from_end = group_end - np.arange(len(order))  # 1 = last tied row of the user
        held[tied[order]] = rank_from_end <= room[tu_sorted]
    return held


def csr_from_pairs(
    users: np.ndarray, items: np.ndarray, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) of the set of pairs, rows sorted by item."""
    codes = np.sort(users.astype(np.int64) * n_items + items)
    if len(codes) > 1:
        codes = codes[np.concatenate([[True], codes[1:] != codes[:-1]])]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes // n_items, minlength=n_users), out=indptr[1:])
    return indptr, (codes % n_items).astype(np.int32)
