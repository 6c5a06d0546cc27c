"""Train shards for several FM instances: a multiple of `min_shards`, balanced, every row once."""

from __future__ import annotations

import pytest

from pipeline_steps.formats import recordio
from pipeline_steps.prepare.core import PrepareInputError, shard_bounds


def _ratings(users: int, items: int) -> str:
    return "".join(f"u{u}\ti{(u + k) % items}\t5\t{k}\n" for u in range(users) for k in range(3))


@pytest.mark.parametrize(
    ("n", "shard_rows", "min_shards", "sizes"),
    [
        (10, 100, 1, [10]),
        (10, 100, 3, [3, 3, 4]),  # one shard would leave two of three hosts without data
        (10, 4, 1, [3, 3, 4]),  # 3 shards of <= 4 rows, spread evenly
        (10, 4, 2, [2, 3, 2, 3]),  # 3 shards rounded up to a multiple of 2
        (7, 1, 7, [1] * 7),
        (0, 5, 1, []),
    ],
)
def test_shard_bounds_are_a_balanced_multiple_of_min_shards(n, shard_rows, min_shards, sizes):
    bounds = shard_bounds(n, shard_rows, min_shards)
    assert [hi - lo for lo, hi in bounds] == sizes
    assert [lo for lo, _ in bounds[1:]] == [hi for _, hi in bounds[:-1]]  # contiguous, no overlap
    assert len(bounds) % min_shards == 0 and all(hi - lo <= shard_rows for lo, hi in bounds)


def test_fewer_rows_than_instances_is_an_error_naming_both_numbers():
    with pytest.raises(PrepareInputError, match=r"2 training row\(s\) cannot fill 3 shards"):
        shard_bounds(2, 100, 3)


def test_prepare_writes_one_train_shard_per_instance_and_keeps_the_test_channel(run_prepare):
    files = {"input/ratings.tsv": _ratings(users=20, items=15)}
    single = run_prepare(files, label_mode="binary", split="last_n", holdout_n=1, shuffle=False)
    several = run_prepare(
        files, label_mode="binary", split="last_n", holdout_n=1, shuffle=False, min_shards=4
    )
    assert len(single.manifest["train_shards"]) == 1
    assert len(several.manifest["train_shards"]) == 4
    sizes = [
        recordio.read_sparse(several.path(k).read_bytes())[3][0] for k in several.manifest["train_shards"]
    ]
    assert sizes == [10, 10, 10, 10]  # 20 users x 2 training rows, a quarter per host
    assert sorted(several.rows("train")) == sorted(single.rows("train"))
    # the test channel stays one FullyReplicated shard whatever the instance count
    assert len(several.manifest["test_shards"]) == 1
    assert sorted(several.rows("test")) == sorted(single.rows("test"))


def test_prepare_refuses_fewer_train_rows_than_instances(run_prepare):
    with pytest.raises(PrepareInputError, match=r"3 training row\(s\) cannot fill 4 shards"):
        run_prepare(
            {"input/r.tsv": "a\tx\t5\t1\nb\ty\t5\t2\nc\tz\t4\t3\n"},
            label_mode="binary",
            split="none",
            min_shards=4,
        )
