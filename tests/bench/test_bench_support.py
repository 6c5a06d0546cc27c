"""The helpers the benchmarks share (bench/support/): growth exponents and the synthetic CSV."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from bench.support.steps import exponent, fit_exponent
from bench.support.synthetic import interactions_csv, pareto_activity


def test_fit_exponent_is_the_log_log_slope():
    sizes = [1e6, 3e6, 1e7, 3e7]
    assert fit_exponent(sizes, [2.0 * n for n in sizes]) == pytest.approx(1.0)
    assert fit_exponent(sizes, [5.0 * n**1.5 for n in sizes]) == pytest.approx(1.5)
    assert fit_exponent(sizes, [7.0] * 4) == pytest.approx(0.0)
    # least squares, not the two end points: a middle outlier moves the slope
    assert fit_exponent(sizes, [1.0, 10.0, 10.0, 30.0]) != exponent(1.0, 30.0, 1e6, 3e7)


def test_fit_exponent_needs_two_sizes_with_positive_figures():
    assert fit_exponent([1e6], [3.0]) is None
    assert fit_exponent([1e6, 3e6], [0.0, 2.0]) is None  # a zero cannot be on a log scale
    assert fit_exponent([1e6, 1e6], [1.0, 2.0]) is None
    assert fit_exponent([1e6, 3e6, 1e7], [0.0, 2.0, 6.0]) == pytest.approx(
        exponent(2.0, 6.0, 3e6, 1e7), abs=1e-3
    )


def test_exponent_between_two_shapes():
    assert exponent(1.0, 3.0, 1e6, 3e6) == pytest.approx(1.0)
    assert exponent(0.0, 3.0, 1e6, 3e6) is None


def test_interactions_csv_uses_the_given_user_weights(tmp_path):
    n_users, rows = 50, 20_000
    p = pareto_activity(n_users, seed=1)
    path = tmp_path / "i.csv"
    interactions_csv(path, rows, n_users=n_users, n_items=30, seed=3, user_p=p)
    with path.open(newline="") as f:
        records = list(csv.reader(f))
    assert records[0] == ["user_id", "item_id", "rating", "timestamp"]
    assert len(records) == rows + 1
    counts = Counter(r[0] for r in records[1:])
    # each user's share of the rows follows its weight (Pareto: a few heavy users)
    ranked = sorted(counts.values(), reverse=True)
    heaviest = float(np.sort(p)[::-1][0])
    assert ranked[0] / rows == pytest.approx(heaviest, abs=0.02)
    assert len({r[1] for r in records[1:]}) <= 30


def test_interactions_csv_without_weights_is_the_uniform_generator(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    interactions_csv(a, 5_000, n_users=100, n_items=20, seed=7)
    interactions_csv(b, 5_000, n_users=100, n_items=20, seed=7, user_p=np.full(100, 0.01))
    assert a.read_bytes() != b.read_bytes()  # a different draw, same shape
    interactions_csv(b, 5_000, n_users=100, n_items=20, seed=7)
    assert a.read_bytes() == b.read_bytes()  # deterministic per seed


def test_exponent_is_none_for_a_single_shape():
    assert exponent(2.0, 3.0, 1e6, 1e6) is None  # one shape: no growth to fit (was a ZeroDivisionError)
    assert exponent(2.0, 6.0, 1e6, 3e6) == pytest.approx(1.0)


def test_the_command_writes_scale_py_s_csv_of_one_size(tmp_path, capsys):
    """`python -m bench.support.synthetic OUT --rows N --seed S`: the file bench/scale.py writes."""
    from bench.support.synthetic import main, scale_csv

    assert main([str(tmp_path / "a.csv"), "--rows", "2000", "--seed", "2"]) == 0
    assert "2,000 rows, 60 user ids" in capsys.readouterr().out
    assert scale_csv(tmp_path / "b.csv", 2000, 2) == (60, 10)  # 3% users, 0.3% items, at least 10
    text = (tmp_path / "a.csv").read_bytes()
    assert text == (tmp_path / "b.csv").read_bytes()
    assert text.startswith(b"user_id,item_id,rating,timestamp\n") and text.count(b"\n") == 2001
