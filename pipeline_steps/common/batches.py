"""Publish's fan-out batches (decision 0015 "Publish fan-out in batches"): contiguous ranges of query
parts, each at most `users_per_child` lists, one Distributed Map child per range.

Repackage writes them (`RunLayout.publish_batches`, a JSON array the Map's ItemReader reads with
`arn:aws:states:::s3:getObject` and `ReaderConfig.InputType: JSON`); publish's child handler checks
the range it gets. The part order is `publish.core.n_parts`'s: the user query parts, then the
item-query (related items) parts, so part p here is part p there.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_steps.common.errors import InputError

# `topx:publish.users_per_child`'s default and bound (decision 0015, docs/scale.md section 2):
# publish writes 1.2 ms wall / 0.64 ms CPU per item in bench/scale.py (10M run: 401 s / 210 CPU-s for
# 330k items), so 100,000 lists are ~120 s of a child's 600 s `max_seconds` (900 s Lambda timeout),
# a 5x margin for DynamoDB latency and throttling; 500,000 (~600 s at that rate) is the most a child
# can write within `max_seconds` at the measured rate.
DEFAULT_USERS_PER_CHILD = 100_000
MAX_USERS_PER_CHILD = 500_000

# The Map's ItemReader reads this JSON array from S3 (InputType JSON,
# https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html, which also
# states the reader's limits on the object's size and item count); one range is ~50 bytes, and at
# 10M users and the default 100,000 per child the array has ~110 entries (a few KB), orders of
# magnitude below any such limit.


def publish_batches(sizes: Sequence[int], users_per_child: int) -> list[dict[str, int]]:
    """Cover parts 0 .. len(sizes)-1 exactly once, in order, with ranges of at most `users_per_child`
    lists each (a single part larger than that is a range of its own: a part is never split).

    -> [{"first_part": a, "last_part": b, "n_lists": n}, ...] with b inclusive.
    """
    if users_per_child < 1:
        raise ValueError(f"users_per_child must be >= 1, got {users_per_child}")
    batches: list[dict[str, int]] = []
    first, lists = 0, 0
    for part, size in enumerate(sizes):
        if size < 0:
            raise ValueError(f"part {part}: negative size {size}")
        if part > first and lists + size > users_per_child:
            batches.append({"first_part": first, "last_part": part - 1, "n_lists": lists})
            first, lists = part, 0
        lists += size
    if len(sizes):
        batches.append({"first_part": first, "last_part": len(sizes) - 1, "n_lists": lists})
    return batches


def check_range(first_part: int, last_part: int, n_parts: int, *, where: str) -> range:
    """The parts of one child: first_part .. last_part inside the run's n_parts, else an InputError."""
    if not 0 <= first_part <= last_part < n_parts:
        raise InputError(
            f"{where}: parts {first_part}..{last_part} are not a range inside the run's {n_parts} parts"
        )
    return range(first_part, last_part + 1)
