"""From k-NN neighbours to a user's top x: explicit sort (in knn_output), drop seen items, cut to x."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from pipeline_steps.common.runio import Csr, InputError, RunInputs, iter_lines
from pipeline_steps.formats import knn_output


def top_x(
    labels: np.ndarray, scores: np.ndarray, seen: np.ndarray, *, x: int, n_items: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Best-first neighbours (labels = item ordinals 1..n_items) -> (item indices, scores), len <= x."""
    items = np.asarray(labels, dtype=np.int64) - 1
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise InputError(f"{where}: label outside 1..{n_items} (labels must be item ordinals)")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{where}: a distance is not a finite number")
    keep = ~np.isin(items, seen) if seen.size else np.ones(items.size, dtype=bool)
    # k-NN never returns an item twice for one query, but a hand-made file might: keep the first (best).
    items, scores = items[keep], np.asarray(scores, dtype=np.float64)[keep]
    _, first = np.unique(items, return_index=True)
    if first.size != items.size:
        first.sort()
        items, scores = items[first], scores[first]
    return items[:x], scores[:x]


def iter_part_top_x(
    lines: Iterable[bytes | str],
    *,
    metric: str,
    seen: Csr,
    first_user: int,
    n_users: int,
    x: int,
    n_items: int,
    where: str,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(user index, item indices, scores) for every query line of one transform output part.

    Blank lines (SageMaker's newline after each mini-batch) are skipped by the parser; the part must
    hold exactly ``n_users`` result lines, one per query, in order.
    """
    results = knn_output.iter_numbered_results(lines, metric)
    offset = 0
    while True:
        try:
            lineno, labels, scores = next(results)
        except StopIteration:
            break
        except knn_output.KnnOutputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if offset >= n_users:
            raise InputError(
                f"{where} line {lineno}: more than the {n_users} result lines expected for this part"
            )
        where_line = f"{where} line {lineno}"
        yield (
            first_user + offset,
            *top_x(labels, scores, seen.row(first_user + offset), x=x, n_items=n_items, where=where_line),
        )
        offset += 1
    if offset != n_users:
        raise InputError(f"{where}: {offset} result lines, expected {n_users} (one per query)")


def iter_run_part(
    s3: Any, inputs: RunInputs, part: int, *, metric: str, x: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(user index, item indices, scores) best first, seen items dropped, for one transform part."""
    qp, key = inputs.queries.parts[part], inputs.out_keys[part]
    return iter_part_top_x(
        iter_lines(s3, inputs.bucket, key),
        metric=metric,
        seen=inputs.seen,
        first_user=qp.first_user,
        n_users=qp.n_users,
        x=x,
        n_items=inputs.manifest.n_items,
        where=f"s3://{inputs.bucket}/{key}",
    )
