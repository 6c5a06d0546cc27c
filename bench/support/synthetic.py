"""Synthetic interaction data shared by the benchmarks (bench/prepare.py, steps_memory.py, scale.py).

As a command, the CSV of one `bench/scale.py` size, e.g. for the local runner on a 10M slice:

    .venv/bin/python -m bench.support.synthetic interactions.csv --rows 10000000 --seed 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def power_law_seen(n: int, n_users: int, n_items: int, rng) -> list[list[int]]:
    """~n distinct (user, item) pairs: Pareto activity per user, Zipf-like item popularity."""
    activity = rng.pareto(1.2, n_users) + 1.0
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_p /= item_p.sum()
    users = rng.choice(n_users, size=int(n * 1.6), p=activity / activity.sum())
    items = rng.choice(n_items, size=users.size, p=item_p)
    codes = np.unique(users.astype(np.int64) * n_items + items)[:n]
    rows = np.split((codes % n_items).astype(int), np.searchsorted(codes // n_items, np.arange(1, n_users)))
    return [r.tolist() for r in rows]


def pareto_activity(n_users: int, seed: int) -> np.ndarray:
    """Per-user probabilities of a row: Pareto(1.2) + 1 activity (the shape of `power_law_seen`)."""
    activity = np.random.default_rng(seed).pareto(1.2, n_users) + 1.0
    return activity / activity.sum()


def interactions_csv(
    path: Path,
    rows: int,
    *,
    n_users: int,
    n_items: int,
    seed: int = 7,
    user_p: np.ndarray | None = None,
    item_exponent: float = 0.8,
) -> None:
    """CSV with header, Amazon-like string ids (14-char reviewer ids, 10-char ASINs), ratings, unix time.

    Rows are drawn with replacement (a pair can repeat: prepare keeps the latest). Users uniform, or
    by ``user_p`` (e.g. `pareto_activity`); items Zipf-like with ``item_exponent``. Built as a
    fixed-width byte matrix per block (fast to generate; the parser does not know that).
    """
    rng = np.random.default_rng(seed)
    alnum = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
    user_ids = np.concatenate(
        [np.full((n_users, 1), ord("A"), np.uint8), alnum[rng.integers(0, 36, (n_users, 13))]], axis=1
    )
    item_ids = np.concatenate(
        [np.full((n_items, 2), [ord("B"), ord("0")], np.uint8), alnum[rng.integers(0, 36, (n_items, 8))]],
        axis=1,
    )
    item_p = 1.0 / np.arange(1, n_items + 1) ** item_exponent
    item_p /= item_p.sum()
    with path.open("wb") as f:
        f.write(b"user_id,item_id,rating,timestamp\n")
        for start in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - start)
            line = np.empty((n, 14 + 1 + 10 + 1 + 1 + 1 + 10 + 1), dtype=np.uint8)
            users = rng.integers(0, n_users, n) if user_p is None else rng.choice(n_users, n, p=user_p)
            line[:, 0:14] = user_ids[users]
            line[:, 14] = ord(",")
            line[:, 15:25] = item_ids[rng.choice(n_items, n, p=item_p)]
            line[:, 25] = ord(",")
            line[:, 26] = ord("1") + rng.integers(0, 5, n)
            line[:, 27] = ord(",")
            ts = rng.integers(1_000_000_000, 1_700_000_000, n)
            for k in range(10):
                line[:, 37 - k] = ord("0") + (ts // 10**k) % 10
            line[:, 38] = ord("\n")
            f.write(line.tobytes())


# bench/scale.py's shape (issue 12's probe: 10M rows, ~295k users, 30k items)
USERS_PER_ROW, ITEMS_PER_ROW = 0.03, 0.003


def scale_csv(path: Path, rows: int, seed: int) -> tuple[int, int]:
    """The CSV `bench/scale.py` writes for `rows` with `seed`: (users, items) of the id pools."""
    n_users, n_items = max(round(rows * USERS_PER_ROW), 10), max(round(rows * ITEMS_PER_ROW), 10)
    interactions_csv(
        path, rows, n_users=n_users, n_items=n_items, seed=seed, user_p=pareto_activity(n_users, seed + 1)
    )
    return n_users, n_items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write bench/scale.py's synthetic CSV of one size")
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n_users, n_items = scale_csv(args.out, args.rows, args.seed)
    print(f"{args.out}: {args.rows:,} rows, {n_users:,} user ids, {n_items:,} item ids")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
