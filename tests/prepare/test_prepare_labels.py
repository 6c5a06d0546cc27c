"""Label modes and implicit negative sampling."""

from __future__ import annotations

import logging
from collections import Counter

import numpy as np
import pytest

from pipeline_steps.prepare import core, labels
from pipeline_steps.prepare.config import PrepareConfig


def _seen(n_users=40, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    deg = rng.integers(1, n_items, n_users)
    deg[0] = n_items - 1  # exactly one unseen item
    deg[1] = n_items  # saw everything: gets no negatives
    u = np.repeat(np.arange(n_users), deg)
    i = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    return u, i, labels.csr_from_pairs(u, i, n_users, n_items)


@pytest.mark.parametrize("mode", ["uniform", "popularity"])
def test_negatives_never_hit_observed_pairs(mode):
    u, i, csr = _seen()
    pop = np.bincount(i, minlength=30)
    nu, ni = labels.sample_negatives(u, 3, csr, 30, mode, pop, np.random.default_rng(1))
    observed = set(zip(u.tolist(), i.tolist(), strict=True))
    assert len(nu) == 3 * int((np.bincount(u) < 30)[u].sum())
    assert not observed & set(zip(nu.tolist(), ni.tolist(), strict=True))
    assert 1 not in set(nu.tolist())
    assert np.all((ni >= 0) & (ni < 30))
    unseen_0 = (set(range(30)) - set(i[u == 0].tolist())).pop()
    assert set(ni[nu == 0].tolist()) == {unseen_0}


def test_uniform_negatives_are_uniform_over_unseen_items():
    n_items = 10
    u = np.zeros(3, dtype=np.int64)
    i = np.array([2, 3, 7])
    csr = labels.csr_from_pairs(u, i, 1, n_items)
    draws = labels.uniform_negatives(np.zeros(70000, dtype=np.int64), *csr, n_items, np.random.default_rng(2))
    counts = np.bincount(draws, minlength=n_items)
    assert counts[[2, 3, 7]].sum() == 0
    assert np.allclose(counts[[0, 1, 4, 5, 6, 8, 9]] / 70000, 1 / 7, atol=0.01)


def test_popularity_negatives_follow_popularity():
    u = np.array([0, 1, 1, 1]), np.array([0, 1, 2, 3])
    csr = labels.csr_from_pairs(*u, 2, 4)
    pop = np.array([1, 0, 3, 6])
    draws = labels.popularity_negatives(
        np.zeros(40000, dtype=np.int64), *csr, 4, pop, np.random.default_rng(3)
    )
    counts = np.bincount(draws, minlength=4) / 40000
    assert counts[0] == 0 and counts[1] == 0  # seen / never popular
    assert abs(counts[3] - 2 * counts[2]) < 0.03


def _implicit_run(run_prepare, **cfg):
    lines = "user,item\n" + "".join(f"u{k % 20},i{(k * 7) % 31}\n" for k in range(300))
    return run_prepare({"input/a.csv": lines}, label_mode="implicit", split="last_n", holdout_n=2, **cfg)


def test_implicit_training_file_has_several_independent_draws(run_prepare):
    r = _implicit_run(run_prepare, negative_ratio=2, negative_draws=3, seed=11)
    train = r.rows("train")
    seen = r.csr("seen")
    positives = [(u, i) for u, i, y in train if y == 1.0]
    negatives = [(u, i) for u, i, y in train if y == 0.0]
    n_seen = sum(len(s) for s in seen.values())
    assert len(positives) == 3 * n_seen  # positives repeated once per draw
    assert len(negatives) == 3 * 2 * n_seen
    assert all(i not in seen[u] for u, i in negatives)
    assert all(i in seen[u] for u, i in positives)
    assert r.manifest["label_stats"] == {
        "positives": 3 * n_seen,
        "negatives": 6 * n_seen,
        "mean": round(1 / 3, 6),
        "negative_ratio": 2,
        "negative_draws": 3,
        "recipe": "custom",
        "suggested_recipe": "quality",
    }
    # Draws are independent: if the three blocks were copies, every pair would occur 3k times.
    counts = Counter(negatives)
    assert any(c % 3 for c in counts.values())
    # Training rows are shuffled (not grouped by user or by label).
    labels_seq = [y for _, _, y in train]
    assert labels_seq != sorted(labels_seq) and labels_seq != sorted(labels_seq, reverse=True)


def test_implicit_test_negatives_avoid_train_and_holdout(run_prepare):
    r = _implicit_run(run_prepare, negative_ratio=4, negative_draws=1)
    seen, holdout = r.csr("seen"), r.csr("holdout")
    test = r.rows("test")
    pos = [(u, i) for u, i, y in test if y == 1.0]
    neg = [(u, i) for u, i, y in test if y == 0.0]
    assert sorted(pos) == sorted((u, i) for u, s in holdout.items() for i in s)
    assert len(neg) == 4 * len(pos)
    assert all(i not in seen.get(u, set()) and i not in holdout.get(u, set()) for u, i in neg)


def test_seeded_determinism_and_seed_sensitivity(run_prepare, tmp_path):
    a = _implicit_run(run_prepare, seed=5)
    b = _implicit_run(run_prepare, seed=5)
    c = _implicit_run(run_prepare, seed=6)
    key = a.manifest["train_shards"][0]
    assert a.path(key).read_bytes() == b.path(key).read_bytes()
    assert a.path(key).read_bytes() != c.path(key).read_bytes()


def test_binary_and_regression_labels(run_prepare):
    data = "user,item,rating\nu,a,5\nu,b,3.5\nv,a,4\nv,b,1\n"
    b = run_prepare({"input/a.csv": data}, label_mode="binary", split="none", rating_threshold=4)
    assert sorted(b.rows("train")) == [("u", "a", 1.0), ("u", "b", 0.0), ("v", "a", 1.0), ("v", "b", 0.0)]
    assert b.manifest["label_stats"] == {"positives": 2, "negatives": 2, "mean": 0.5}
    g = run_prepare({"input/a.csv": data}, label_mode="regression", split="none")
    assert sorted(g.rows("train")) == [("u", "a", 5.0), ("u", "b", 3.5), ("v", "a", 4.0), ("v", "b", 1.0)]
    assert g.manifest["test_shards"] == []


def test_implicit_stats_record_the_recipe_and_advise_by_size(run_prepare, caplog):
    # decision 0017: the quality recipe's D/R on small data is what is advised: no warning
    with caplog.at_level(logging.WARNING, logger="pipeline_steps.prepare.core"):
        r = _implicit_run(run_prepare, recipe="quality")
    assert (r.manifest["label_stats"]["recipe"], r.manifest["label_stats"]["suggested_recipe"]) == (
        "quality",
        "quality",
    )
    assert r.manifest["config"]["recipe"] == "quality"
    assert not [rec for rec in caplog.records if "decision 0017" in rec.getMessage()]
    # other negatives than advised: a warning naming the advice and the run's values
    with caplog.at_level(logging.WARNING, logger="pipeline_steps.prepare.core"):
        _implicit_run(run_prepare, negative_draws=1, negative_ratio=1)
    wanted = "suggests topx:recipe 'quality' (this run: recipe 'custom', negative_draws 1, negative_ratio 1)"
    assert wanted in caplog.text


def test_large_data_is_advised_a_cheaper_recipe(caplog):
    config = PrepareConfig()  # custom, with the quality recipe's negatives
    with caplog.at_level(logging.WARNING, logger="pipeline_steps.prepare.core"):
        stats = core._negative_stats(config, 30_000_000)
    assert stats == {
        "negative_ratio": 4,
        "negative_draws": 4,
        "recipe": "custom",
        "suggested_recipe": "minimal",
    }
    assert "30000000 training positives x 20 FM rows each: decision 0017 suggests topx:recipe 'minimal'" in (
        caplog.text
    )
    economy = PrepareConfig(recipe="economy", negative_draws=1, negative_ratio=4)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline_steps.prepare.core"):
        assert core._negative_stats(economy, 20_000_000)["suggested_recipe"] == "economy"
    assert caplog.text == ""
