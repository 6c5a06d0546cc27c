"""From k-NN neighbours to a user's top x (or an item's related items): explicit sort (in knn_output),
drop seen (filtered, or the item itself) items, cut to x."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common.runio import Csr, InputError, RunInputs, iter_lines
from pipeline_steps.formats import knn_output

if TYPE_CHECKING:
    from pipeline_steps.common.filters import Filters


def top_x(
    labels: np.ndarray,
    scores: np.ndarray,
    seen: np.ndarray,
    *,
    x: int,
    n_items: int,
    where: str,
    excluded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best-first neighbours (labels = item ordinals 1..n_items) -> (item indices, scores), len <= x.

    `seen`: item indices to drop for this query; `excluded`: bool mask (n_items,) of items dropped for
    every query (the business filters, common/filters.py).
    """
    items = np.asarray(labels, dtype=np.int64) - 1
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise InputError(f"{where}: label outside 1..{n_items} (labels must be item ordinals)")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{where}: a distance is not a finite number")
    keep = ~np.isin(items, seen) if seen.size else np.ones(items.size, dtype=bool)
    if excluded is not None:
        keep &= ~excluded[items]
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
    filters: Filters | None = None,
    keep: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(user index, item indices, scores) for every query line of one transform output part.

    Blank lines (SageMaker's newline after each mini-batch) are skipped by the parser; the part must
    hold exactly ``n_users`` result lines, one per query, in order. With `filters`, the user's own
    exclusions and the globally excluded items are dropped too.
    """

    def drop(u: int) -> np.ndarray:
        return seen.row(u) if filters is None else filters.user_drop(u, seen.row(u))

    return _iter_top(
        lines,
        metric=metric,
        drop=drop,
        first=first_user,
        count=n_users,
        x=x,
        n_items=n_items,
        where=where,
        excluded=None if filters is None else filters.excluded,
        keep=keep,
    )


def iter_related_top_x(
    lines: Iterable[bytes | str],
    *,
    metric: str,
    first_item: int,
    n_queries: int,
    x: int,
    n_items: int,
    where: str,
    excluded: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(item index, related item indices, scores) per line of an item-query part; the item itself dropped."""
    return _iter_top(
        lines,
        metric=metric,
        drop=lambda i: np.array([i], dtype=np.int64),
        first=first_item,
        count=n_queries,
        x=x,
        n_items=n_items,
        where=where,
        excluded=excluded,
    )


def _iter_top(
    lines: Iterable[bytes | str],
    *,
    metric: str,
    drop: Callable[[int], np.ndarray],
    first: int,
    count: int,
    x: int,
    n_items: int,
    where: str,
    excluded: np.ndarray | None,
    keep: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """`keep`: bool mask over query indices; lines of other queries are counted, never parsed."""
    offset = 0
    for lineno, line in enumerate(lines, 1):
        if knn_output.is_blank(line):
            continue
        if offset >= count:
            raise InputError(
                f"{where} line {lineno}: more than the {count} result lines expected for this part"
            )
        q = first + offset
        offset += 1
        if keep is not None and not keep[q]:
            continue
        try:
            labels, scores = knn_output.parse_result(lineno, line, metric)
        except knn_output.KnnOutputError as exc:
            raise InputError(f"{where}: {exc}") from None
        where_line = f"{where} line {lineno}"
        yield (
            q,
            *top_x(labels, scores, drop(q), x=x, n_items=n_items, where=where_line, excluded=excluded),
        )
    if offset != count:
        raise InputError(f"{where}: {offset} result lines, expected {count} (one per query)")


def iter_run_part(
    s3: Any,
    inputs: RunInputs,
    part: int,
    *,
    metric: str,
    x: int,
    filters: Filters | None = None,
    keep: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(user index, item indices, scores) best first, seen (and filtered) items dropped, one part.

    `keep` (bool per user): only these users' lines are parsed (evaluate's sample); the part is
    still streamed line by line, so memory stays one line whatever the part's size.
    """
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
        filters=filters,
        keep=keep,
    )


def iter_related_run_part(
    s3: Any, inputs: RunInputs, part: int, *, metric: str, x: int, excluded: np.ndarray | None = None
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(item index, related item indices, scores) best first, self dropped, for one item-query part."""
    rp, key = inputs.queries.related_parts[part], inputs.related_out_keys[part]
    return iter_related_top_x(
        iter_lines(s3, inputs.bucket, key),
        metric=metric,
        first_item=rp.first_item,
        n_queries=rp.n_items,
        x=x,
        n_items=inputs.manifest.n_items,
        where=f"s3://{inputs.bucket}/{key}",
        excluded=excluded,
    )
