"""Training labels: binary / regression from ratings, or implicit with sampled negatives."""

from __future__ import annotations

import numpy as np

MAX_REJECTION_ROUNDS = 32


def uniform_negatives(
    users: np.ndarray, indptr: np.ndarray, indices: np.ndarray, n_items: int, rng: np.random.Generator
) -> np.ndarray:
    """One item per entry of `users`, uniform over the items that user has NOT interacted with.

    Exact and vectorised (no rejection): with the user's sorted seen items s_0 < s_1 < ...,
    the r-th unseen item is r + #{k : s_k - k <= r}. Every user passed must have an unseen item.
    """
    deg = np.diff(indptr)
    n_unseen = n_items - deg[users]
    r = (rng.random(len(users)) * n_unseen).astype(np.int64)
    r = np.minimum(r, n_unseen - 1)  # guards the (measure-zero) rounding of random() * n up to n
    seen_u = np.repeat(np.arange(len(deg)), deg)
    adj = indices.astype(np.int64) - (np.arange(len(indices)) - indptr[seen_u])
    stride = n_items + 1
    keys = seen_u * stride + adj  # non-decreasing: users ascending, adj non-decreasing per user
    pos = np.searchsorted(keys, users * stride + r, side="right") - indptr[users]
    return r + pos


def popularity_negatives(
    users: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    n_items: int,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Items drawn with probability proportional to popularity among the user's unseen items.

    Rejection sampling against the seen pairs; entries still rejected after a number of rounds
    (users who saw nearly all popular items) fall back to uniform over their unseen items.
    """
    weights = popularity.astype(np.float64)
    cdf = np.cumsum(weights)
    out = np.empty(len(users), dtype=np.int64)
    todo = np.arange(len(users))
    seen_codes = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)) * n_items + indices
    if cdf[-1] > 0:
        for _ in range(MAX_REJECTION_ROUNDS):
            if len(todo) == 0:
                break
            draw = np.searchsorted(cdf, rng.random(len(todo)) * cdf[-1], side="right")
            draw = np.minimum(draw, n_items - 1)
            code = users[todo].astype(np.int64) * n_items + draw
            pos = np.minimum(np.searchsorted(seen_codes, code), max(len(seen_codes) - 1, 0))
            hit = seen_codes[pos] == code if len(seen_codes) else np.zeros(len(todo), dtype=bool)
            out[todo[~hit]] = draw[~hit]
            todo = todo[hit]
    if len(todo):
        out[todo] = uniform_negatives(users[todo], indptr, indices, n_items, rng)
    return out


def sample_negatives(
    pos_users: np.ndarray,
    ratio: int,
    exclude: tuple[np.ndarray, np.ndarray],
    n_items: int,
    mode: str,
    popularity: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """`ratio` negatives per positive row of each user (users who saw every item get none)."""
    indptr, indices = exclude
    users = np.repeat(pos_users.astype(np.int64), ratio)
    users = users[np.diff(indptr)[users] < n_items]
    # Ascending users make the binary searches below walk memory in order: several times faster
    # than random queries on large inputs (the order does not matter: training rows are shuffled).
    users.sort()
    if mode == "popularity":
        items = popularity_negatives(users, indptr, indices, n_items, popularity, rng)
    else:
        items = uniform_negatives(users, indptr, indices, n_items, rng)
    return users, items


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
