"""The implicit training channel written inside Spark's partitions (decision 0016, "Negatives and
shards in the partitions").

With `label_mode: implicit` and no side features or history, the Spark engine does not collect the
training rows to the driver: each partition holds whole users (all their training positives, so it
knows every item a user must not get as a negative), samples each draw's negatives with the same
sampler as the driver path (`labels.sample_negatives`), shuffles its rows and encodes them with our
encoder (`outputs.fm_shard`) into one shard. The driver receives the shards one partition at a
time and writes them with its sink under the same keys (`part-%05d.rec`), so it holds one shard at a
time and no executor needs S3 credentials.

The plan (on the driver, from the positives per user it already holds for `seen` and `popularity`):
the shard count is `core.shard_bounds`' rule on the rows the channel will have (a multiple of
`min_shards`, at most `shard_rows` rows each), and the users are cut into that many contiguous runs
of dense indices of about equal rows (a partition differs from the target by less than one user's
rows). The rows reach their partition by an RDD `partitionBy` with the partition index as the key,
so every partition is exactly one planned shard.

Python on the executors: the functions below run there (the RDD API, not `mapInArrow` /
`mapInPandas`, which need pyarrow on the executors; AWS's Spark processing container installs numpy
and pandas, not pyarrow). They need numpy and this package (shipped with `SparkContext.addPyFile`
by spark_job.py).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.prepare import labels, outputs
from pipeline_steps.prepare.storage import Storage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)
ROUTE_CHUNK = 1 << 20  # users read per batch on the map side (their items are one list each)
Chunk = tuple[int, tuple[np.ndarray, np.ndarray]]  # (partition, (dense users, dense items))


@dataclass(frozen=True)
class Sampling:
    """What every partition needs to label its users (shipped with the tasks)."""

    n_users: int
    n_items: int
    ratio: int
    draws: int
    mode: str  # "uniform" | "popularity"
    seed: int
    shuffle: bool


def train_rows_per_user(degree: np.ndarray, n_items: int, ratio: int, draws: int) -> np.ndarray:
    """Rows each user adds to the training channel: per draw its positives, and `ratio` negatives per
    positive unless it saw every item (`labels.sample_negatives` gives such a user none)."""
    deg = degree.astype(np.int64)
    return draws * deg * (1 + ratio * (deg < n_items))


def user_starts(rows: np.ndarray, parts: int) -> np.ndarray:
    """The first dense user of each partition (`parts` + 1 entries, the last = number of users):
    contiguous runs of users, a user in the partition where its first row falls when the rows are
    cut into `parts` equal ranges (as `core.shard_bounds` cuts them). A partition is empty only
    when one user has more rows than a shard."""
    total = int(rows.sum())
    before = np.cumsum(rows) - rows  # the user's first row
    edges = np.array([total * k // parts for k in range(parts + 1)], dtype=np.int64)
    part = np.searchsorted(edges, before, side="right") - 1
    return np.searchsorted(part, np.arange(parts + 1), side="left").astype(np.int64)


def route(rows: Iterable[Any], lut_u: np.ndarray, lut_i: np.ndarray, starts: np.ndarray) -> Iterator[Chunk]:
    """Map side: (user code, [item codes]) rows -> (partition, (dense users, dense items)) slices."""
    it = iter(rows)
    while batch := list(itertools.islice(it, ROUTE_CHUNK)):
        lengths = np.fromiter((len(r[1]) for r in batch), dtype=np.int64, count=len(batch))
        codes = np.fromiter((r[0] for r in batch), dtype=np.int64, count=len(batch))
        users = np.repeat(lut_u[codes], lengths)
        items = lut_i[np.fromiter(itertools.chain.from_iterable(r[1] for r in batch), dtype=np.int64)]
        part = np.searchsorted(starts, users, side="right") - 1
        order = np.argsort(part, kind="stable")
        users, items, part = users[order], items[order], part[order]
        bounds = np.searchsorted(part, np.arange(len(starts)), side="left")
        for p in np.flatnonzero(np.diff(bounds)):
            sl = slice(bounds[p], bounds[p + 1])
            yield int(p), (users[sl], items[sl])


def shard(
    index: int, chunks: Iterable[Chunk], s: Sampling, popularity: np.ndarray
) -> tuple[int, int, int, bytes]:
    """Reduce side: one partition's users -> (index, rows, negatives, RecordIO shard).

    Positives in (user, item) order (deterministic whatever order the chunks arrive in); per draw d
    the negatives of `labels.sample_negatives` with rng (seed, 1, d, index), excluding the users'
    training items; then the rows shuffled with rng (seed, 3, index) (if `shuffle`).
    """
    parts = []
    for p, chunk in chunks:
        if p != index:
            raise AssertionError(f"partition {index} received rows routed to {p}")
        parts.append(chunk)
    du = np.concatenate([u for u, _ in parts]) if parts else np.empty(0, np.int32)
    di = np.concatenate([i for _, i in parts]) if parts else np.empty(0, np.int32)
    order = np.lexsort((di, du))
    du, di = du[order].astype(np.int32), di[order].astype(np.int32)
    users, local = np.unique(du, return_inverse=True)  # local CSR: this partition's users only
    seen = labels.csr_from_pairs(local, di, len(users), s.n_items)
    us, its, ys = [], [], []
    for draw in range(s.draws):
        rng = np.random.default_rng([s.seed, 1, draw, index])
        nu, ni = labels.sample_negatives(local, s.ratio, seen, s.n_items, s.mode, popularity, rng)
        us += [du, users[nu].astype(np.int32)]
        its += [di, ni.astype(np.int32)]
        ys += [np.ones(len(du), np.float32), np.zeros(len(nu), np.float32)]
    u, i, y = np.concatenate(us), np.concatenate(its), np.concatenate(ys)
    if s.shuffle and len(u):
        perm = np.random.default_rng([s.seed, 3, index]).permutation(len(u))
        u, i, y = u[perm], i[perm], y[perm]
    negatives = len(y) - s.draws * len(du)
    return index, len(y), negatives, outputs.fm_shard(u, i, y, s.n_users, s.n_items)


@dataclass
class TrainingPairs:
    """The training pairs (user code, item code) as a Spark DataFrame, written by `write`."""

    frame: DataFrame
    seconds: dict[str, float] = field(default_factory=dict)  # `write`'s phases, for the timings

    def write(
        self,
        sink: Storage,
        prefix: str,
        *,
        lut_u: np.ndarray,
        lut_i: np.ndarray,
        starts: np.ndarray,
        sampling: Sampling,
        popularity: np.ndarray,
    ) -> tuple[list[str], int, int]:
        """Sample, shuffle and encode in the partitions; write each shard from the driver.

        Returns (keys, rows, negatives). The shards are computed by all executors at once and kept on
        their disks (`DISK_ONLY`), then fetched one partition at a time (`toLocalIterator`: one job
        per partition, reading the kept blocks) and written here.
        """
        from pyspark import StorageLevel

        sc = self.frame.sparkSession.sparkContext
        parts = len(starts) - 1
        shared = sc.broadcast((lut_u, lut_i, starts))
        pop = sc.broadcast(popularity if sampling.mode == "popularity" else np.empty(0, np.int64))
        grouped = self.frame.groupBy("u").agg({"i": "collect_list"})
        shards = (
            grouped.rdd.mapPartitions(lambda rows: route(rows, *shared.value))
            .partitionBy(parts, _identity)
            .mapPartitionsWithIndex(lambda k, it: [shard(k, it, sampling, pop.value)])
            .persist(StorageLevel.DISK_ONLY)
        )
        try:
            t0 = time.perf_counter()
            sizes = sorted(shards.map(lambda t: t[:3]).collect())  # every shard, on every executor
            assert [k for k, _, _ in sizes] == list(range(parts))
            t1 = time.perf_counter()
            keys = [f"{prefix}part-{k:05d}.rec" for k in range(parts)]
            for k, _rows, _neg, body in shards.toLocalIterator():
                sink.write_bytes(keys[k], body)  # one shard on the driver at a time
            # partitions_s: all executors; shards_to_sink_s: the driver, one shard at a time
            self.seconds = {
                "partitions_s": round(t1 - t0, 3),
                "shards_to_sink_s": round(time.perf_counter() - t1, 3),
            }
            log.info("training channel in %d partitions: %s", parts, self.seconds)
        finally:
            shards.unpersist()
            shared.destroy()
            pop.destroy()
        empty = [k for k, n, _ in sizes if n == 0]
        if empty:
            log.warning("training shards %s are empty: a user has more rows than a shard", empty)
        return keys, sum(n for _, n, _ in sizes), sum(neg for _, _, neg in sizes)


def _identity(p: int) -> int:
    return p
