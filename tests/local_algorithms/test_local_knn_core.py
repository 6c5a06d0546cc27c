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


def _ivf(n: int, sample_size: int, **extra) -> knn.KNNModel:
    X, _, labels = _data(n=n, q=1, d=8, seed=5)
    config = knn.KNNConfig(
        feature_dim=8, k=5, predictor_type=knn.CLASSIFIER, sample_size=sample_size,
        index_type="faiss.IVFFlat", index_metric=knn.INNER_PRODUCT, **extra,
    )  # fmt: skip
    return knn.build(X, labels, config)


@pytest.mark.parametrize(
    ("sample_size", "want"), [(1, 1), (3, 1), (4, 2), (399, 19), (400, 20), (10_000, 100)]
)
def test_auto_nlists_is_the_square_root_of_sample_size_rounded_down(sample_size, want):
    # AWS: faiss_index_ivf_nlists "auto" resolves to sqrt(sample_size) (kNN_hyperparameters.html).
    assert knn.auto_nlists(sample_size) == want


def test_auto_nlists_follows_sample_size_not_the_vectors_indexed():
    # 400 vectors with sample_size 10,000: sqrt(10,000) = 100 lists (sqrt of the 400 vectors would be 20).
    assert _ivf(400, 10_000).index.nlist == 100
    # fewer vectors than lists: one list per vector at most (faiss's k-means needs as many vectors)
    assert _ivf(60, 10_000).index.nlist == 60
    assert _ivf(400, 400).index.nlist == 20
    assert _ivf(400, 400, faiss_index_ivf_nlists=7).index.nlist == 7


def test_nprobe_defaults_to_five_and_survives_serialisation():
    model = _ivf(400, 400)
    assert model.index.nprobe == knn.NPROBE == 5
    assert knn.deserialize(*knn.serialize(model)).index.nprobe == 5


def test_nprobe_from_the_container_key_is_stored_in_the_model_and_used_by_search():
    from pipeline_steps.local_algorithms.hyperparameters import parse_knn

    hp = {"feature_dim": "8", "k": "5", "predictor_type": "classifier", "sample_size": "400"}
    hp |= {"index_type": "faiss.IVFFlat", "index_metric": "INNER_PRODUCT", "_faiss_index_nprobe": "20"}
    config = parse_knn(hp)
    assert config.faiss_index_nprobe == 20
    X, Q, labels = _data(n=400, q=30, d=8, seed=5)
    model = knn.deserialize(*knn.serialize(knn.build(X, labels, config)))
    assert model.index.nprobe == 20  # every one of the 20 lists: the search is exact
    _, lab = knn.search(model, Q)
    _, want_i = _brute(X, Q, knn.INNER_PRODUCT, 5)
    np.testing.assert_array_equal(np.sort(lab, axis=1), np.sort(labels[want_i], axis=1))
    # more lists probed than there are: clamped to nlist
    assert _ivf(400, 400, faiss_index_nprobe=50).index.nprobe == 20


def test_nprobe_must_be_a_positive_integer():
    from pipeline_steps.local_algorithms.hyperparameters import ClientError, parse_knn

    hp = {"feature_dim": "8", "k": "5", "predictor_type": "classifier", "sample_size": "400"}
    with pytest.raises(ClientError, match="_faiss_index_nprobe='0' must be >= 1"):
        parse_knn({**hp, "_faiss_index_nprobe": "0"})
