"""Evaluate's cluster sample of transform parts (decision 0015): what is read, and the statistics.

The S3 tests count GetObject calls on the moto client; the statistical ones are pure numpy on
synthetic parts with known per-part means (a fixed population, many seeds).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline_steps.evaluate.core import evaluate_run, part_counts, sample_parts
from pipeline_steps.evaluate.metrics import Z95, MetricAccumulator, ratio_interval
from tests.conftest import BUCKET
from tests.evaluate.test_evaluate import cfg, metrics_doc
from tests.prepared_run import event, put_prepared, put_queries_manifest, put_transform_output

N_PARTS, PART = 10, 10


def parts_run(s3, *, related_parts: int = 0) -> dict:
    """100 users in 10 parts of 10; every user holds out item 4 except u % 10 == 9 (no holdout).

    The model ranks item 4 first for users with u % 10 < part / 2 (parts differ: part 0 has no hit,
    part 9 has hits for u % 10 < 4.5); most-popular never ranks it (items 0-3 are more popular).
    """
    n = N_PARTS * PART
    put_prepared(
        s3,
        BUCKET,
        "r1",
        users=[f"u{u}" for u in range(n)],
        items=[f"i{j}" for j in range(40)],
        seen=[[0]] * n,
        holdout=[[] if u % 10 == 9 else [4] for u in range(n)],
        popularity=np.array([9, 8, 7, 6] + [1] * 36),
    )
    put_queries_manifest(
        s3,
        BUCKET,
        "r1",
        part_sizes=[PART] * N_PARTS,
        k=3,
        n_items=40,
        related_sizes=[10] * related_parts,
        related_x=2,
    )
    for part in range(N_PARTS):
        labels = np.array([[5.0, 2.0, 3.0] if r < part / 2 else [2.0, 3.0, 4.0] for r in range(PART)])
        put_transform_output(s3, BUCKET, "r1", part, labels, np.array([[3.0, 2.0, 1.0]] * PART))
    for part in range(related_parts):
        first = 10 * part + 1  # ordinals of this part's items
        labels = np.array([[first + r, (first + r) % 40 + 1, (first + r + 1) % 40 + 1] for r in range(10)])
        put_transform_output(s3, BUCKET, "r1", part, labels.astype(float), np.ones((10, 3)), related=True)
    return event(BUCKET, "r1")


def count_gets(s3) -> list[str]:
    keys: list[str] = []
    event_name = "before-parameter-build.s3.GetObject"
    s3.meta.events.register(event_name, lambda params, **_: keys.append(params["Key"]))
    return keys


def fetched_parts(keys: list[str], family: str = "users") -> list[int]:
    """Part numbers of the transform outputs read: `users` (users-00003.rec.out) or `users-related`."""
    found = (re.fullmatch(rf"runs/r1/transform/{family}-(\d+)\.rec\.out", k) for k in keys)
    return sorted(int(m.group(1)) for m in found if m)


def test_only_the_sampled_parts_are_fetched(s3):
    ev = parts_run(s3)
    keys = count_gets(s3)
    evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=20, sample_seed=5))
    # 9 eligible users per part: a seeded order of the 10 parts, taken until >= 20 users: 3 parts
    chosen = sorted(np.random.default_rng(5).permutation(N_PARTS)[:3].tolist())
    assert fetched_parts(keys) == chosen
    doc = metrics_doc(s3)
    assert doc["sample"]["parts_read"] == 3 and doc["n_eval_users"] == 27
    keys.clear()
    evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=0))
    assert fetched_parts(keys) == list(range(N_PARTS))


def test_model_and_baseline_score_the_users_of_the_sampled_parts(s3):
    ev = parts_run(s3)
    out = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=20, sample_seed=5))
    chosen = np.random.default_rng(5).permutation(N_PARTS)[:3]
    hits = sum(min(9, int(np.ceil(p / 2))) for p in chosen)  # users r < p / 2 of the 9 eligible
    assert out["model"]["hit_rate"] == pytest.approx(hits / 27)
    assert out["baseline"]["hit_rate"] == 0.0
    doc = metrics_doc(s3)
    base = MetricAccumulator(x=2, n_items=40)  # the baseline's interval is over the same 3 parts
    for p in chosen:
        for _ in range(9):
            base.add(np.array([1, 2]), np.array([4]), int(p))
    assert doc["ci95"]["baseline"] == base.intervals()
    per_part = np.array([min(9, int(np.ceil(p / 2))) for p in chosen], float)
    assert doc["ci95"]["model"]["hit_rate"] == pytest.approx(ratio_interval(per_part, np.full(3, 9)))


def test_max_users_at_least_the_eligible_users_gives_the_all_users_figures(s3):
    ev = parts_run(s3)
    every = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=0))
    every_doc = metrics_doc(s3)
    for max_users in (90, 1000):  # 90 eligible users
        out = evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=max_users))
        doc = metrics_doc(s3)
        assert out["model"] == every["model"] and out["baseline"] == every["baseline"]
        assert doc["ci95"] == every_doc["ci95"] and doc["n_eval_users"] == every_doc["n_eval_users"]
        assert doc["sample"]["sampled"] is False and doc["sample"]["parts_read"] == N_PARTS


def test_the_parts_are_fixed_by_the_seed():
    counts = np.full(50, 9)
    firsts = [sample_parts(counts, 100, seed) for seed in range(5)]
    assert all(np.array_equal(a, sample_parts(counts, 100, seed)) for seed, a in enumerate(firsts))
    assert len({tuple(a.tolist()) for a in firsts}) == 5  # other seeds, other parts
    assert all(a.size == 12 for a in firsts)  # 11 parts hold 99 < 100 users


def test_sample_parts_takes_parts_until_max_rows_and_none_when_all_fit():
    counts = np.array([5, 0, 7, 3, 9, 4])
    assert sample_parts(counts, 28, 0) is None and sample_parts(counts, 0, 0) is None
    for seed in range(20):
        chosen = sample_parts(counts, 10, seed)
        assert chosen is not None and np.all(np.diff(chosen) > 0)
        assert 1 not in chosen  # a part without eligible rows is never read
        nonempty = np.array([0, 2, 3, 4, 5])
        taken = nonempty[np.random.default_rng(seed).permutation(5)][: chosen.size]
        assert np.array_equal(np.sort(taken), chosen)
        assert counts[taken].sum() >= 10 > counts[taken[:-1]].sum()  # the smallest prefix reaching 10
    eligible = np.array([1, 0, 1, 1, 0, 0, 1], bool)
    assert part_counts(eligible, np.array([0, 3, 5]), np.array([3, 2, 2])).tolist() == [2, 1, 1]


def test_related_lists_read_only_the_sampled_item_parts(s3):
    ev = parts_run(s3, related_parts=4)
    keys = count_gets(s3)
    evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=15, sample_seed=2))
    chosen = sorted(np.random.default_rng(2).permutation(4)[:2].tolist())
    assert fetched_parts(keys, "users-related") == chosen
    related = metrics_doc(s3)["related"]
    assert related["n_items"] == 20 and related["sample"] == {"parts_read": 2, "n_parts": 4}
    assert related["full_share"] == 1.0
    evaluate_run(s3=s3, bucket=BUCKET, event=ev, config=cfg(max_users=40))
    assert metrics_doc(s3)["related"]["n_items"] == 40


# -- the statistics, on synthetic parts with known per-part means ---------------------------------


def population(n_parts: int = 400, *, equal: bool = False, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(y_p, m_p): per-part sums of a 0/1 metric and eligible users; parts differ strongly.

    As if dense indices followed activity: the part's mean hit rate climbs from 0.05 to 0.55 with
    its index and (unless `equal`) so does its number of eligible users, 300 to 600.
    """
    frac = np.arange(n_parts) / n_parts
    m = np.full(n_parts, 450) if equal else (300 + 300 * frac).astype(np.int64)
    y = np.random.default_rng(seed).binomial(m, 0.05 + 0.5 * frac**2).astype(float)
    return y, m


def draws(y: np.ndarray, m: np.ndarray, max_rows: int, reps: int):
    for seed in range(reps):
        chosen = sample_parts(m, max_rows, seed)
        assert chosen is not None
        yield chosen, y[chosen].sum() / m[chosen].sum()


def test_the_cluster_interval_covers_the_mean_over_users_95_percent_of_the_time():
    y, m = population()
    true = y.sum() / m.sum()
    covered = naive = 0
    reps = 2000
    for chosen, est in draws(y, m, 20_000, reps):  # ~45 of 400 parts
        low, high = ratio_interval(y[chosen], m[chosen])
        covered += low <= true <= high
        n = m[chosen].sum()  # the per-user interval, as if the users were independent draws
        half = Z95 * (est * (1 - est) / (n - 1)) ** 0.5
        naive += est - half <= true <= est + half
    assert 0.93 <= covered / reps <= 0.97  # measured 0.9495
    assert naive / reps < 0.5  # measured 0.19: parts differ, so a per-user interval is far too narrow


def test_drawing_parts_at_random_is_unbiased_where_the_first_parts_are_not():
    """Equal eligible counts: the sample mean is exactly unbiased (a fixed number of parts, SRS).

    Unequal counts: the ratio estimator's bias is of order 1/(parts drawn), small against its
    standard error. Taking the first parts (index order, i.e. activity order) is biased.
    """
    reps = 2000
    y, m = population(equal=True)
    true = y.sum() / m.sum()
    est = np.array([e for _, e in draws(y, m, 20_000, reps)])
    assert abs(est.mean() - true) < 4 * est.std() / reps**0.5
    y, m = population()
    true = y.sum() / m.sum()
    est = np.array([e for _, e in draws(y, m, 20_000, reps)])
    assert abs(est.mean() - true) < 0.1 * est.std()  # measured 0.0009 against a s.e. of 0.023
    first = np.arange(int(np.searchsorted(np.cumsum(m), 20_000)) + 1)
    assert abs(y[first].sum() / m[first].sum() - true) > 5 * est.std()  # measured -0.19


def test_ratio_interval_by_hand():
    totals, counts = np.array([2.0, 6.0, 4.0]), np.array([4, 8, 6])
    r = 12 / 18
    resid = totals - r * counts
    half = Z95 * (resid @ resid / (3 * 2 * 6.0**2)) ** 0.5
    assert ratio_interval(totals, counts) == pytest.approx([r - half, r + half])
    assert ratio_interval(np.array([1.0]), np.array([3])) is None
