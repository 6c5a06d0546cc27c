"""FM trainer core: parity with a pure-Python reference, determinism, and learning on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from pipeline_steps.local_algorithms import fm


def _ref_predict(rows, w0, w, V):
    """Rendle's definition term by term: w0 + sum w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j."""
    out = []
    for row in rows:
        y = w0 + sum(w[i] * x for i, x in row)
        for a in range(len(row)):
            for b in range(a + 1, len(row)):
                (i, xi), (j, xj) = row[a], row[b]
                y += sum(V[i][f] * V[j][f] for f in range(len(V[i]))) * xi * xj
        out.append(y)
    return out


def _ref_train(X: sp.csr_matrix, y, config: fm.FMConfig, seed: int):
    """Plain loops: mini-batch gradient of the mean loss, lazy Adam on the touched rows (float64)."""
    rng = np.random.default_rng(seed)
    p0 = fm.init_params(config, rng)
    w0, w, V = float(p0.w0), [float(v) for v in p0.w], [[float(v) for v in r] for r in p0.V]
    k, n = config.num_factors, X.shape[0]
    rows = [list(zip(X[i].indices.tolist(), X[i].data.tolist(), strict=True)) for i in range(n)]
    state: dict = {}
    b1, b2, eps = 0.9, 0.999, 1e-8
    t = 0

    def adam(key, value, grad, lr, wd):
        m, v = state.get(key, (0.0, 0.0))
        grad = grad + wd * value
        if config.clip_gradient is not None:
            grad = min(max(grad, -config.clip_gradient), config.clip_gradient)
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        state[key] = (m, v)
        return value - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)

    for _ in range(config.epochs):
        perm = rng.permutation(n)
        for start in range(0, n, config.mini_batch_size):
            batch = perm[start : start + config.mini_batch_size]
            t += 1
            g0, gw, gV = 0.0, {}, {}
            for r in batch:
                row = rows[r]
                raw = _ref_predict([row], w0, w, V)[0]
                g = 1 / (1 + math.exp(-raw)) - y[r] if config.predictor_type == fm.BINARY else raw - y[r]
                g /= len(batch)
                g0 += g
                s = [sum(V[i][f] * x for i, x in row) for f in range(k)]
                for i, x in row:
                    gw[i] = gw.get(i, 0.0) + g * x
                    cur = gV.setdefault(i, [0.0] * k)
                    for f in range(k):
                        cur[f] += g * x * (s[f] - V[i][f] * x)
            w0 = adam("w0", w0, g0, config.bias_lr, config.bias_wd)
            for i in gw:
                w[i] = adam(("w", i), w[i], gw[i], config.linear_lr, config.linear_wd)
                for f in range(k):
                    V[i][f] = adam(("v", i, f), V[i][f], gV[i][f], config.factors_lr, config.factors_wd)
    return w0, np.array(w), np.array(V)


def _config(**kw) -> fm.FMConfig:
    base = dict(
        feature_dim=6,
        num_factors=3,
        predictor_type=fm.BINARY,
        epochs=3,
        mini_batch_size=2,
        bias_lr=0.05,
        linear_lr=0.05,
        factors_lr=0.05,
        factors_init=fm.InitSpec(sigma=0.3),
    )
    base.update(kw)
    return fm.FMConfig(**base)


def test_predict_matches_definition_by_hand():
    X = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 0], [1.0, 1.0, 1.0]], dtype=np.float32))
    V = np.array([[1, 0], [0.5, 2], [-1, 1]], dtype=np.float32)
    params = fm.FMParams(w0=0.5, w=np.array([1, -1, 0.25], dtype=np.float32), V=V)
    # row 0: 0.5 + 1 + 0.5 + <v0,v2>*1*2 = 2.0 - 2 = 0.0 ; row 1: 0.5 - 3 (no pair) = -2.5
    # row 2: 0.5 + (1 - 1 + 0.25) + <v0,v1> + <v0,v2> + <v1,v2> = 0.75 + 0.5 - 1 + 1.5 = 1.75
    np.testing.assert_allclose(fm.predict_raw(X, params), [0.0, -2.5, 1.75], atol=1e-6)
    rows = [list(zip(X[i].indices, X[i].data, strict=True)) for i in range(3)]
    np.testing.assert_allclose(_ref_predict(rows, 0.5, params.w, V), [0.0, -2.5, 1.75], atol=1e-6)


@pytest.mark.parametrize("predictor", [fm.BINARY, fm.REGRESSOR])
def test_general_csr_matches_reference(predictor):
    # rows with different numbers of non-zeros, values other than 1, an empty row, shared columns
    dense = np.array(
        [
            [1, 0, 0.5, 0, 0, 0],
            [0, 2, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, -1],
            [0, 0, 0, 3, 0.5, 0],
        ],
        dtype=np.float32,
    )
    X = sp.csr_matrix(dense)
    y = (
        np.array([1, 0, 1, 0, 1], dtype=np.float32)
        if predictor == fm.BINARY
        else np.array([2, -1, 0.5, 1, 3])
    )
    config = _config(predictor_type=predictor)
    got = fm.train(X, y, config, seed=7)
    w0, w, V = _ref_train(X, y, config, seed=7)
    assert got.w0 == pytest.approx(w0, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(got.w, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.V, V, rtol=1e-4, atol=1e-6)


def test_one_hot_fast_path_matches_reference():
    users, items = np.array([0, 0, 1, 2, 2, 1, 0]), np.array([0, 2, 1, 0, 1, 2, 1])
    rows = np.repeat(np.arange(7), 2)
    cols = np.stack([users, 3 + items], axis=1).ravel()
    X = sp.csr_matrix((np.ones(14, np.float32), (rows, cols)), shape=(7, 6))
    y = np.array([1, 0, 1, 1, 0, 0, 1], dtype=np.float32)
    config = _config(mini_batch_size=3, epochs=4, clip_gradient=0.05)
    got = fm.train(X, y, config, seed=3)
    w0, w, V = _ref_train(X, y, config, seed=3)
    assert got.w0 == pytest.approx(w0, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(got.V, V, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.w, w, rtol=1e-4, atol=1e-6)


def test_training_is_deterministic_and_seed_dependent():
    X, y = _synthetic(60, 40, seed=1)[:2]
    config = fm.FMConfig(
        feature_dim=100, num_factors=4, predictor_type=fm.BINARY, epochs=2, mini_batch_size=50
    )
    a, b = fm.train(X, y, config), fm.train(X, y, config)
    assert a.w0 == b.w0
    np.testing.assert_array_equal(a.V, b.V)
    np.testing.assert_array_equal(a.w, b.w)
    c = fm.train(X, y, config, seed=fm.DEFAULT_SEED + 1)
    assert not np.array_equal(a.V, c.V)


def test_init_methods():
    rng = np.random.default_rng(0)
    config = fm.FMConfig(
        feature_dim=500,
        num_factors=8,
        predictor_type=fm.REGRESSOR,
        bias_init=fm.InitSpec(method="constant", value=0.25),
        linear_init=fm.InitSpec(method="uniform", scale=0.5),
        factors_init=fm.InitSpec(method="normal", sigma=0.2),
    )
    p = fm.init_params(config, rng)
    assert p.w0 == 0.25
    assert p.w.min() >= -0.5 and p.w.max() <= 0.5 and p.w.std() > 0.2
    assert p.V.shape == (500, 8) and p.V.dtype == np.float32
    assert abs(float(p.V.std()) - 0.2) < 0.02


def _synthetic(n_users, n_items, seed, rows_per_user=40):
    """Implicit-style one-hot rows whose labels follow a rank-2 user/item structure."""
    rng = np.random.default_rng(seed)
    U, It = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    users = np.repeat(np.arange(n_users), rows_per_user)
    items = rng.integers(0, n_items, size=users.shape[0])
    logits = 3 * np.einsum("nf,nf->n", U[users], It[items])
    labels = (rng.random(users.shape[0]) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    rows = np.repeat(np.arange(users.shape[0]), 2)
    cols = np.stack([users, n_users + items], axis=1).ravel()
    X = sp.csr_matrix(
        (np.ones(cols.shape[0], np.float32), (rows, cols)), shape=(users.shape[0], n_users + n_items)
    )
    return X, labels, users


def test_reduced_quality_run_beats_constant_prediction():
    """A few hundred users, seconds: the default hyperparameters learn the interaction structure."""
    X, y, _ = _synthetic(300, 200, seed=5, rows_per_user=60)
    test = np.arange(X.shape[0]) % 6 == 0
    config = fm.FMConfig(
        feature_dim=X.shape[1], num_factors=16, predictor_type=fm.BINARY, epochs=30, mini_batch_size=100
    )
    params = fm.train(X[~test], y[~test], config)
    m = fm.binary_metrics(y[test], fm.predict_raw(X[test], params))
    base_rate = float(y[~test].mean())
    constant = fm.binary_metrics(y[test], np.full(test.sum(), np.log(base_rate / (1 - base_rate))))
    assert m["accuracy"] > max(base_rate, 1 - base_rate) + 0.1
    assert m["log_loss"] < constant["log_loss"] - 0.05


def test_feature_dim_mismatch_is_rejected():
    X = sp.csr_matrix(np.eye(3, dtype=np.float32))
    config = fm.FMConfig(feature_dim=4, num_factors=2, predictor_type=fm.BINARY)
    with pytest.raises(ValueError, match="3 columns but feature_dim is 4"):
        fm.train(X, np.ones(3), config)


@pytest.mark.parametrize("uniform", [True, False])
def test_feature_rows_from_prepare_train_like_the_reference(uniform):
    # Side-feature rows (decision 0018) as prepare encodes them: user one-hot + item one-hot + the
    # user's and the item's feature columns with their weights (1/n per multi-valued field), through
    # the RecordIO channel. Every row has 5 non-zeros when `uniform` (the trainer's fixed-width path
    # with values other than 1), else 2 to 6.
    from pipeline_steps.formats import recordio
    from pipeline_steps.prepare.features import Csr, fm_rows

    n_items, dim = 4, 12  # 3 users: columns 0-2, items 3-6, user features 7-8, item features 9-11
    user_rows = [[(0, 1.0), (7, 1.0)], [(1, 1.0), (8, 1.0)], [(2, 1.0), (7, 1.0)]]
    if uniform:
        item_rows = [[(3 + i, 1.0), (9 + i % 2, 0.5), (11, 0.5)] for i in range(n_items)]
    else:
        item_rows = [[(3, 1.0), (9, 0.5), (10, 0.5)], [(4, 1.0)], [(5, 1.0), (11, 1.0)], [(6, 1.0)]]
        user_rows[1] = [(1, 1.0)]

    def csr(rows):
        indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
        cols = np.array([c for r in rows for c, _ in r], dtype=np.int32)
        vals = np.array([v for r in rows for _, v in r], dtype=np.float32)
        return Csr(indptr, cols, vals, (len(rows), dim))

    users = np.array([0, 0, 1, 2, 2, 1, 0, 2])
    items = np.array([0, 2, 1, 3, 1, 2, 1, 0])
    data, indices, indptr = fm_rows(users, items, csr(user_rows), csr(item_rows))
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=np.float32)
    body = recordio.encode_sparse((data, indices, indptr, (len(users), dim)), y)
    d, i, p, shape, labels = recordio.read_sparse(body)
    X = sp.csr_matrix((d, i, p), shape=shape)
    assert (np.diff(X.indptr) == 5).all() == uniform
    expected = np.zeros((len(users), dim), np.float32)
    for r, (u, it) in enumerate(zip(users, items, strict=True)):
        for c, v in user_rows[u] + item_rows[it]:
            expected[r, c] += v
    np.testing.assert_array_equal(X.toarray(), expected)
    config = _config(feature_dim=dim, mini_batch_size=3, epochs=3)
    got = fm.train(X, labels, config, seed=5)
    w0, w, V = _ref_train(X, labels, config, seed=5)
    assert got.w0 == pytest.approx(w0, rel=1e-4, abs=1e-6)
    np.testing.assert_allclose(got.w, w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.V, V, rtol=1e-4, atol=1e-6)
    rows = [list(zip(X[r].indices.tolist(), X[r].data.tolist(), strict=True)) for r in range(len(users))]
    np.testing.assert_allclose(
        fm.predict_raw(X, got), _ref_predict(rows, got.w0, got.w, got.V), rtol=1e-5, atol=1e-6
    )
