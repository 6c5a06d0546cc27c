"""common/filters.py on hand-made data: the k rule's per-user drop count, fill, popularity order,
file readers (CSV quoting, TSV, header, blank lines)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_steps.common.errors import InputError
from pipeline_steps.common.filters import (
    FilterConfig,
    Filters,
    fill,
    no_filters,
    popularity_order,
    read_exclude_items,
    read_metadata,
    read_user_exclusions,
)
from pipeline_steps.common.runio import Csr

ITEMS = {"a": 0, "b,1": 1, 'c "q"': 2, "d": 3}
USERS = {"u0": 0, "u1": 1, "u2": 2}


def csr(rows: list[list[int]]) -> Csr:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    return Csr(indptr=indptr, indices=np.array([i for r in rows for i in r], dtype=np.int32))


def test_dropped_counts_are_the_union_of_seen_own_exclusions_and_global():
    seen = csr([[0, 1], [], [3]])
    filters = Filters(excluded=np.array([False, True, False, False]), user_excluded=csr([[0, 2], [], [3]]))
    # u0: {0, 1} ∪ {0, 2} ∪ G{1} = 3; u1: G = 1; u2: {3} ∪ {3} ∪ G = 2
    assert filters.dropped_counts(seen).tolist() == [3, 1, 2]
    assert no_filters(3, 4).dropped_counts(seen).tolist() == [2, 0, 1]


def test_fill_takes_the_popularity_order_minus_chosen_and_dropped():
    order = popularity_order(np.array([5, 9, 9, 1, 7]), np.array([False, False, True, False, False]))
    assert order.tolist() == [1, 4, 0, 3]  # most popular first, ties by index, item 2 excluded
    assert fill(np.array([4]), 3, order, np.array([1])).tolist() == [0, 3]
    assert fill(np.array([4, 1, 0]), 3, order, np.array([], dtype=np.int64)).size == 0
    assert fill(np.array([], dtype=np.int64), 9, order, np.array([0])).tolist() == [1, 4, 3]  # runs out


def test_readers_accept_quoted_ids_tsv_blank_lines_and_an_optional_header():
    mask = read_exclude_items(b'b,1\n\nc "q"\r\n', "w", ITEMS)
    assert mask.tolist() == [False, True, True, False]
    config = FilterConfig(
        filter_metadata_key="m", filter_metadata_column="kind", filter_metadata_include=("x",)
    )
    removed = read_metadata(b'kind\titem_id\nx\ta\ny\tb,1\nx\tc "q"\nx\tother\n', "w", ITEMS, config=config)
    assert removed.tolist() == [False, True, False, True]  # d has no value: not included
    pairs = read_user_exclusions(b'u2,"b,1"\nu0,a\n', "w", USERS, ITEMS)
    assert [pairs.row(u).tolist() for u in range(3)] == [[0], [], [1]]
    with_header = read_user_exclusions(b"user_id,item_id\nu1,d\n", "w", USERS, ITEMS)
    assert with_header.row(1).tolist() == [3]


def test_malformed_csv_names_its_line():
    with pytest.raises(InputError, match=r"w line 2: malformed CSV"):
        read_user_exclusions(b'u0,a\nu1,"d\n', "w", USERS, ITEMS)
