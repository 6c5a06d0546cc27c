"""k-NN index and search (faiss-cpu), the numerical core of the local k-NN jobs.

Mirrors SageMaker's built-in k-NN: exact ``faiss.Flat`` search (IVF variants map to faiss's IVF),
metrics ``L2`` / ``INNER_PRODUCT`` / ``COSINE``, a seeded ``sample_size`` subset, and verbose results
whose distances are sorted ascending (so with INNER_PRODUCT / COSINE the best neighbour is last).

IVF (decision 0019): ``faiss_index_ivf_nlists`` "auto" resolves to sqrt(sample_size), as the AWS
hyperparameter table states (https://docs.aws.amazon.com/sagemaker/latest/dg/kNN_hyperparameters.html);
AWS does not say how it rounds (here: down) nor what happens when fewer vectors than lists are
sampled (here: at most one list per indexed vector). AWS documents no nprobe, neither as a
hyperparameter nor at inference; the container's default configuration is taken to carry
``_faiss_index_nprobe`` 5 (no AWS page states it: an assumption). Here it is 5 unless that key is
given, is stored in the index (faiss serialises nprobe) and is what the transform probes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

L2, INNER_PRODUCT, COSINE = "L2", "INNER_PRODUCT", "COSINE"
METRICS = (L2, INNER_PRODUCT, COSINE)
CLASSIFIER, REGRESSOR = "classifier", "regressor"
INDEX_TYPES = ("faiss.Flat", "faiss.IVFFlat", "faiss.IVFPQ")
# SageMaker exposes no seed for sampling; a fixed one makes local runs reproducible.
SAMPLE_SEED = 20180101
NPROBE = 5  # SageMaker's container default (_faiss_index_nprobe)


@dataclass(frozen=True, kw_only=True)
class KNNConfig:
    feature_dim: int
    k: int
    predictor_type: str
    sample_size: int
    index_type: str = "faiss.Flat"
    index_metric: str = L2
    faiss_index_ivf_nlists: int | None = None  # None = "auto"
    faiss_index_pq_m: int | None = None
    faiss_index_nprobe: int | None = None  # None = NPROBE (the container's `_faiss_index_nprobe`)


@dataclass
class KNNModel:
    index: faiss.Index
    labels: np.ndarray  # (n,) float32, label of each indexed vector
    k: int
    predictor_type: str
    metric: str
    distinct_labels: bool = field(init=False)

    def __post_init__(self) -> None:
        self.distinct_labels = bool(np.unique(self.labels).size == self.labels.size)

    def metadata(self) -> dict:
        return {
            "k": self.k,
            "predictor_type": self.predictor_type,
            "index_metric": self.metric,
            "normalize": self.metric == COSINE,
            "version": "1.0",
        }


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def _faiss_metric(metric: str) -> int:
    return faiss.METRIC_L2 if metric == L2 else faiss.METRIC_INNER_PRODUCT


def auto_nlists(sample_size: int) -> int:
    """``faiss_index_ivf_nlists`` "auto": sqrt(sample_size) (AWS's table), rounded down, at least 1."""
    return max(1, math.isqrt(sample_size))


def build(X: np.ndarray, labels: np.ndarray, config: KNNConfig, *, seed: int = SAMPLE_SEED) -> KNNModel:
    """Index the training vectors (a seeded random subset of ``sample_size`` when there are more)."""
    X = _as_f32(X)
    labels = np.asarray(labels, dtype=np.float32).reshape(-1)
    if config.sample_size < X.shape[0]:
        keep = np.sort(np.random.default_rng(seed).choice(X.shape[0], config.sample_size, replace=False))
        X, labels = X[keep], labels[keep]
    if config.index_metric == COSINE:
        X = X.copy()
        faiss.normalize_L2(X)
    d, metric = X.shape[1], _faiss_metric(config.index_metric)
    if config.index_type == "faiss.Flat":
        index: faiss.Index = (
            faiss.IndexFlatIP(d) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
        )
    else:
        nlist = config.faiss_index_ivf_nlists or auto_nlists(config.sample_size)
        nlist = min(nlist, X.shape[0])  # faiss's k-means needs at least one vector per list
        kind = "Flat" if config.index_type == "faiss.IVFFlat" else f"PQ{config.faiss_index_pq_m or 1}"
        # index_factory owns the coarse quantizer (a hand-built one must outlive the index).
        ivf: Any = faiss.index_factory(d, f"IVF{nlist},{kind}", metric)  # an IndexIVF* (has nprobe)
        ivf.train(X)
        ivf.nprobe = min(config.faiss_index_nprobe or NPROBE, nlist)  # serialised with the index
        index = ivf
    index.add(X)
    return KNNModel(index, labels, config.k, config.predictor_type, config.index_metric)


def search(model: KNNModel, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, labels), each (n_queries, k') with k' = min(k, index size), distances ascending.

    L2 distances are squared Euclidean, as faiss (and SageMaker's faiss-based container) report them.
    """
    Q = _as_f32(Q)
    if model.metric == COSINE:
        Q = Q.copy()
        faiss.normalize_L2(Q)
    k = min(model.k, model.index.ntotal)
    dist, ids = model.index.search(Q, k)
    short = np.flatnonzero((ids < 0).any(axis=1)) if ids.size else ids[:0, 0]
    if short.size and isinstance(model.index, faiss.IndexIVF):
        # The probed lists held fewer than k vectors: search those queries in every list, so each
        # gets k neighbours (NaN labels could not be written as JSON; the transform failed).
        nprobe = model.index.nprobe
        model.index.nprobe = model.index.nlist
        try:
            dist[short], ids[short] = model.index.search(np.ascontiguousarray(Q[short]), k)
        finally:
            model.index.nprobe = nprobe
    if model.metric != L2:
        # faiss returns similarities best-first; SageMaker lists distances smallest first.
        dist, ids = np.ascontiguousarray(dist[:, ::-1]), ids[:, ::-1]
    if ids.size and ids.min() < 0:  # IVF probes can come back with fewer than k hits
        labels = np.where(ids >= 0, model.labels[np.maximum(ids, 0)], np.nan).astype(np.float32)
    else:
        labels = model.labels[ids]  # fancy indexing: a new C-ordered array
    return dist, labels


def predict(model: KNNModel, labels: np.ndarray) -> np.ndarray:
    """predicted_label per query: the mean (regressor) or the most frequent label (classifier).

    Ties between equally frequent labels go to the smallest label (deterministic).
    """
    if model.predictor_type == REGRESSOR:
        return np.nanmean(labels, axis=1).astype(np.float32)
    if labels.shape[1] == 0:
        return np.full(labels.shape[0], np.nan, dtype=np.float32)
    if model.distinct_labels and not np.isnan(labels).any():
        # every neighbour has its own label (items labelled 1..n): all counts are 1, so the
        # most frequent label with ties to the smallest is simply the smallest
        return labels.min(axis=1)
    srt = np.sort(labels, axis=1)
    k = srt.shape[1]
    pos = np.arange(k)
    new_run = np.ones_like(srt, dtype=bool)
    new_run[:, 1:] = srt[:, 1:] != srt[:, :-1]
    run_start = np.maximum.accumulate(np.where(new_run, pos, 0), axis=1)
    run_len = pos - run_start + 1  # length of the run so far, per position
    # The first position reaching the longest run ends the smallest of the most frequent labels.
    best = np.argmax(run_len, axis=1)
    return srt[np.arange(srt.shape[0]), best].astype(np.float32)


def serialize(model: KNNModel) -> tuple[bytes, bytes, bytes]:
    """The three members of ``model_algo-1*``: faiss index bytes, raw LE float32 labels, JSON metadata."""
    index_bytes = faiss.serialize_index(model.index).tobytes()
    labels = model.labels.astype("<f4").tobytes()
    meta = json.dumps(model.metadata(), sort_keys=True).encode()
    return index_bytes, labels, meta


def deserialize(index_bytes: bytes, labels: bytes, meta: bytes) -> KNNModel:
    info = json.loads(meta)
    index = faiss.deserialize_index(np.frombuffer(index_bytes, dtype=np.uint8))
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = max(1, min(index.nprobe, index.nlist))  # the trained nprobe (serialised)
    lab = np.frombuffer(labels, dtype="<f4").astype(np.float32)
    return KNNModel(index, lab, int(info["k"]), info["predictor_type"], info.get("index_metric", L2))
