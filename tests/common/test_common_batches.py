"""Publish's fan-out ranges (common/batches.py): every part exactly once, in order, at most
`users_per_child` lists per range unless one part alone is larger, item-query parts included."""

from __future__ import annotations

import pytest

from pipeline_steps.common.batches import check_range, publish_batches
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.layout import RunLayout


def _covered(batches: list[dict[str, int]]) -> list[int]:
    return [p for b in batches for p in range(b["first_part"], b["last_part"] + 1)]


def test_ranges_cover_every_part_once_in_order_within_the_budget() -> None:
    # 10M users in parts of ~590 (the transform's request budget) then 1M items' related parts
    sizes = [590] * 16_949 + [10] + [600] * 1_667
    batches = publish_batches(sizes, 100_000)
    assert _covered(batches) == list(range(len(sizes)))
    assert all(b["n_lists"] <= 100_000 for b in batches)
    assert all(b["n_lists"] == sum(sizes[b["first_part"] : b["last_part"] + 1]) for b in batches)
    assert sum(b["n_lists"] for b in batches) == sum(sizes)
    # greedy, parts never split: each range but the last holds more than 100,000 - 600 lists, so
    # children ~ ceil(lists / users_per_child) (111 for 11M lists), not one per part (18,617)
    assert -(-sum(sizes) // 100_000) <= len(batches) <= -(-sum(sizes) // (100_000 - 600))
    assert len(batches) == 111


def test_user_and_item_query_parts_share_ranges_in_publish_part_order() -> None:
    users, items = [3, 3, 3], [2, 2]  # parts 0-2 users, 3-4 related lists (publish.core.n_parts order)
    assert publish_batches(users + items, 6) == [
        {"first_part": 0, "last_part": 1, "n_lists": 6},
        {"first_part": 2, "last_part": 3, "n_lists": 5},
        {"first_part": 4, "last_part": 4, "n_lists": 2},
    ]


def test_a_part_larger_than_the_budget_is_a_range_of_its_own() -> None:
    assert publish_batches([5, 20, 5], 10) == [
        {"first_part": 0, "last_part": 0, "n_lists": 5},
        {"first_part": 1, "last_part": 1, "n_lists": 20},
        {"first_part": 2, "last_part": 2, "n_lists": 5},
    ]
    assert publish_batches([1] * 7, 1) == [{"first_part": p, "last_part": p, "n_lists": 1} for p in range(7)]


def test_everything_in_one_range_and_no_parts() -> None:
    assert publish_batches([4, 4, 4], 100_000) == [{"first_part": 0, "last_part": 2, "n_lists": 12}]
    assert publish_batches([], 10) == []


@pytest.mark.parametrize(("sizes", "per", "message"), [([1], 0, "users_per_child"), ([1, -1], 5, "part 1")])
def test_bad_arguments_are_errors(sizes: list[int], per: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        publish_batches(sizes, per)


def test_check_range_accepts_a_range_inside_the_parts_only() -> None:
    assert check_range(2, 4, 5, where="ev") == range(2, 5)
    for first, last in ((-1, 2), (3, 2), (0, 5)):
        with pytest.raises(
            InputError, match=rf"ev: parts {first}\.\.{last} are not a range inside the run's 5"
        ):
            check_range(first, last, 5, where="ev")


def test_the_object_sits_beside_the_queries_manifest_outside_the_transform_input() -> None:
    layout = RunLayout("r1")
    assert layout.publish_batches == "runs/r1/knn/queries/publish-batches.json"
    assert not layout.publish_batches.startswith(layout.queries_input)
    assert RunLayout.wildcard().publish_batches == "runs/*/knn/queries/publish-batches.json"
