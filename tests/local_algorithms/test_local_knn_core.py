"""k-NN core: exact search against brute-force numpy for every metric, ordering, sampling, prediction."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline_steps.local_algorithms import knn


def _data(n=300, q=40, d=9, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Q = rng.normal(size=(q, d)).astype(np.float32)
    labels = np.arange(1, n + 1, dtype=np.float32)
    return X, Q, labels


def _brute(X, Q, metric, k):
    X64, Q64 = X.astype(np.float64), Q.astype(np.float64)
    if metric == knn.L2:
        score = -((Q64[:, None, :] - X64[None]) ** 2).sum(-1)  # larger is better
        dist = -score
    else:
        if metric == knn.COSINE:
            X64 = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
            Q64 = Q64 / np.linalg.norm(Q64, axis=1, keepdims=True)
        score = dist = Q64 @ X64.T
    top = np.argsort(-score, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, top, axis=1)
    order = np.argsort(d, axis=1, kind="stable")  # SageMaker: distances ascending
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(top, order, axis=1)


@pytest.mark.parametrize("metric", knn.METRICS)
def test_flat_search_is_exact_and_ascending(metric):
    X, Q, labels = _data()
    config = knn.KNNConfig(
        feature_dim=9, k=7, predictor_type=knn.CLASSIFIER, sample_size=300, index_metric=metric
    )
    model = knn.build(X, labels, config)
    dist, lab = knn.search(model, Q)
    want_d, want_i = _brute(X, Q, metric, 7)
    np.testing.assert_allclose(dist, want_d, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(lab, labels[want_i])
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    if metric != knn.L2:  # best match (largest similarity) is the last one
        np.testing.assert_array_equal(
            lab[:, -1], labels[np.argmax(Q @ X.T if metric == knn.INNER_PRODUCT else _cos(Q, X), axis=1)]
        )


def _cos(Q, X):
    return (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ (X / np.linalg.norm(X, axis=1, keepdims=True)).T


def test_sample_size_takes_a_seeded_subset():
    X, _, labels = _data(n=500)
    config = knn.KNNConfig(feature_dim=9, k=3, predictor_type=knn.CLASSIFIER, sample_size=120)
    a, b = knn.build(X, labels, config), knn.build(X, labels, config)
    assert a.index.ntotal == 120
    np.testing.assert_array_equal(a.labels, b.labels)
    assert len(np.unique(a.labels)) == 120
    big = knn.build(
        X, labels, knn.KNNConfig(feature_dim=9, k=3, predictor_type=knn.CLASSIFIER, sample_size=10**6)
    )
    assert big.index.ntotal == 500


def test_k_larger_than_index_returns_all():
    X, Q, labels = _data(n=5)
    model = knn.build(
        X, labels, knn.KNNConfig(feature_dim=9, k=10, predictor_type=knn.REGRESSOR, sample_size=5)
    )
    dist, lab = knn.search(model, Q)
    assert dist.shape == (40, 5)
    assert sorted(lab[0]) == [1, 2, 3, 4, 5]


def test_predicted_label_mode_and_mean():
    # labels shared by several indexed vectors: the general mode path
    model = knn.KNNModel(
        index=None, labels=np.array([1, 1, 2], np.float32), k=5, predictor_type=knn.CLASSIFIER, metric="L2"
    )
    assert not model.distinct_labels
    labels = np.array([[3, 1, 3, 2, 1], [4, 4, 2, 2, 7], [5, 6, 7, 8, 9], [3, 3, 1, 2, 2]], dtype=np.float32)
    # ties go to the smallest of the most frequent labels
    np.testing.assert_array_equal(knn.predict(model, labels), [1, 2, 5, 2])
    model.predictor_type = knn.REGRESSOR
    np.testing.assert_allclose(knn.predict(model, labels), [2.0, 3.8, 7.0, 2.2])


def test_predicted_label_with_distinct_item_labels_is_the_general_mode():
    X, Q, labels = _data()
    config = knn.KNNConfig(feature_dim=9, k=6, predictor_type=knn.CLASSIFIER, sample_size=300)
    model = knn.build(X, labels, config)
    assert model.distinct_labels
    _, lab = knn.search(model, Q)
    fast = knn.predict(model, lab)
    model.distinct_labels = False
    np.testing.assert_array_equal(fast, knn.predict(model, lab))


@pytest.mark.parametrize("metric", knn.METRICS)
def test_serialize_round_trip(metric):
    X, Q, labels = _data()
    config = knn.KNNConfig(
        feature_dim=9, k=4, predictor_type=knn.CLASSIFIER, sample_size=300, index_metric=metric
    )
    model = knn.build(X, labels, config)
    index_bytes, lab, meta = knn.serialize(model)
    assert np.frombuffer(lab, "<f4").tolist() == labels.tolist()
    again = knn.deserialize(index_bytes, lab, meta)
    for got, want in zip(knn.search(again, Q), knn.search(model, Q), strict=True):
        np.testing.assert_array_equal(got, want)


def test_ivf_flat_finds_most_true_neighbours():
    X, Q, labels = _data(n=2000, q=50, d=8, seed=3)
    config = knn.KNNConfig(
        feature_dim=8, k=5, predictor_type=knn.CLASSIFIER, sample_size=2000, index_type="faiss.IVFFlat"
    )
    _, lab = knn.search(knn.build(X, labels, config), Q)
    _, want_i = _brute(X, Q, knn.L2, 5)
    overlap = np.mean(
        [len(set(a) & set(b)) / 5 for a, b in zip(lab.tolist(), labels[want_i].tolist(), strict=True)]
    )
    assert overlap > 0.5


@pytest.mark.parametrize("metric", [knn.L2, knn.INNER_PRODUCT])
def test_ivf_with_fewer_probed_vectors_than_k_still_returns_k_neighbours(metric):
    # 400 vectors in 20 lists, nprobe 5: about 100 probed vectors for k=100. Short rows used to
    # come back with NaN labels, which the transform's JSON writer rejects (job failed).
    X, Q, labels = _data(n=400, q=30, d=8, seed=4)
    config = knn.KNNConfig(
        feature_dim=8, k=100, predictor_type=knn.CLASSIFIER, sample_size=400,
        index_type="faiss.IVFFlat", index_metric=metric,
    )  # fmt: skip
    model = knn.build(X, labels, config)
    dist, lab = knn.search(model, Q)
    assert lab.shape == (30, 100) and not np.isnan(lab).any()
    assert all(len(set(row)) == 100 for row in lab.tolist())
    assert np.all(np.diff(dist, axis=1) >= 0)
    assert model.index.nprobe == 5  # restored


def test_ivfpq_m_that_does_not_divide_feature_dim_is_a_client_error():
    # faiss used to raise a RuntimeError at build time: the job failed as an AlgorithmError.
    from pipeline_steps.local_algorithms.hyperparameters import ClientError, parse_knn

    hp = {"feature_dim": "10", "k": "5", "predictor_type": "classifier", "sample_size": "500"}
    hp |= {"index_type": "faiss.IVFPQ", "faiss_index_pq_m": "3"}
    with pytest.raises(ClientError, match="faiss_index_pq_m=3 must divide feature_dim=10"):
        parse_knn(hp)
    assert parse_knn({**hp, "faiss_index_pq_m": "5"}).faiss_index_pq_m == 5
