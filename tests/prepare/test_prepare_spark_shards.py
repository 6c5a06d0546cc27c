"""The Spark partitions' training channel, function by function, without Spark (decision 0016):
the plan of users per partition, the routing of a map partition's rows, and one partition's
negatives, shuffle and RecordIO shard."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from pipeline_steps.formats import recordio
from pipeline_steps.prepare import spark_shards
from pipeline_steps.prepare.core import shard_bounds
from pipeline_steps.prepare.spark_shards import Sampling, route, shard, train_rows_per_user, user_starts


def test_rows_per_user_count_no_negatives_for_a_user_who_saw_every_item():
    degree = np.array([1, 3, 5, 0])
    assert train_rows_per_user(degree, 5, 4, 2).tolist() == [10, 30, 10, 0]


@pytest.mark.parametrize("parts", [1, 3, 7, 12])
def test_users_are_cut_into_contiguous_runs_of_about_equal_rows(parts):
    rows = np.random.default_rng(0).integers(1, 40, size=500)
    starts = user_starts(rows, parts)
    assert len(starts) == parts + 1 and starts[0] == 0 and starts[-1] == len(rows)
    assert (np.diff(starts) >= 0).all()
    per_part = [int(rows[a:b].sum()) for a, b in itertools.pairwise(starts)]
    target = [b - a for a, b in shard_bounds(int(rows.sum()), -(-int(rows.sum()) // parts))]
    assert len(target) == parts
    # each partition is off the equal cut by less than one user's rows
    assert max(abs(p - t) for p, t in zip(per_part, target, strict=True)) < rows.max()


def test_a_user_heavier_than_a_shard_leaves_a_partition_empty():
    starts = user_starts(np.array([1, 100, 1]), 4)
    per_part = np.diff(starts).tolist()
    assert sum(per_part) == 3 and 0 in per_part


def test_route_sends_each_users_rows_to_its_partition():
    lut_u = np.array([2, 0, 1, 3], dtype=np.int32)  # code -> dense
    lut_i = np.array([1, 0, 2], dtype=np.int32)
    starts = np.array([0, 2, 4])  # users 0-1 -> 0, 2-3 -> 1
    rows = [(0, [0, 2]), (1, [1]), (3, [0, 1, 2]), (2, [2])]
    got: dict[int, list] = {}
    for p, (u, i) in route(rows, lut_u, lut_i, starts):
        got.setdefault(p, []).extend(zip(u.tolist(), i.tolist(), strict=True))
    assert sorted(got[0]) == [(0, 0), (1, 2)]
    assert sorted(got[1]) == [(2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]


def _chunks(index: int, pairs: list[tuple[int, int]], split: int = 2):
    u = np.array([a for a, _ in pairs], dtype=np.int32)
    i = np.array([b for _, b in pairs], dtype=np.int32)
    return [(index, (u[k::split], i[k::split])) for k in range(split)]


PAIRS = [(3, 0), (3, 4), (5, 1), (5, 2), (5, 3), (7, 0), (7, 1), (7, 2), (7, 3), (7, 4), (7, 5)]


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_each_draw_has_ratio_negatives_per_positive_unobserved_and_in_range(mode):
    s = Sampling(n_users=9, n_items=6, ratio=3, draws=3, mode=mode, seed=5, shuffle=False)
    popularity = np.array([5, 4, 3, 2, 1, 1])
    index, rows, negatives, body = shard(2, _chunks(2, PAIRS), s, popularity)
    _, indices, _, _, y = recordio.read_sparse(body)
    u, i = indices[0::2], indices[1::2] - s.n_users
    positives = len(PAIRS) - 6  # user 7 saw every item: no negatives
    per_draw = len(PAIRS) + 3 * positives
    assert (index, rows, negatives) == (2, 3 * per_draw, 3 * 3 * positives)
    observed = set(PAIRS)
    for d in range(3):  # unshuffled: the draws in order, positives then negatives
        du, di, dy = (a[d * per_draw : (d + 1) * per_draw] for a in (u, i, y))
        assert sorted(zip(du[dy == 1].tolist(), di[dy == 1].tolist(), strict=True)) == sorted(PAIRS)
        neg = list(zip(du[dy == 0].tolist(), di[dy == 0].tolist(), strict=True))
        assert len(neg) == 3 * positives and not observed & set(neg)
        assert {a: sum(1 for x, _ in neg if x == a) for a in (3, 5, 7)} == {3: 6, 5: 9, 7: 0}
        assert all(0 <= b < s.n_items for _, b in neg)


def test_the_shard_does_not_depend_on_the_order_of_its_chunks_and_is_shuffled():
    s = Sampling(n_users=9, n_items=6, ratio=2, draws=2, mode="uniform", seed=1, shuffle=True)
    one = shard(0, _chunks(0, PAIRS), s, np.empty(0))
    other = shard(0, _chunks(0, PAIRS[::-1], split=3)[::-1], s, np.empty(0))
    assert one == other
    assert shard(1, _chunks(1, PAIRS), s, np.empty(0))[3] != one[3]  # the rng is per partition
    plain = shard(0, _chunks(0, PAIRS), dataclasses.replace(s, shuffle=False), np.empty(0))
    assert plain[:3] == one[:3] and plain[3] != one[3]  # the same rows, shuffled


def test_rows_routed_to_another_partition_are_refused():
    s = Sampling(n_users=9, n_items=6, ratio=1, draws=1, mode="uniform", seed=1, shuffle=True)
    with pytest.raises(AssertionError, match="routed to 1"):
        shard(0, _chunks(1, PAIRS), s, np.empty(0))


def test_an_empty_partition_gives_an_empty_shard():
    s = Sampling(n_users=9, n_items=6, ratio=1, draws=2, mode="uniform", seed=1, shuffle=True)
    assert shard(4, [], s, np.empty(0)) == (4, 0, 0, b"")
    assert spark_shards.ROUTE_CHUNK > 0
