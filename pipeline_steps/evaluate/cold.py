"""The cold protocols (decision 0018, "Cold start and protocols"): metrics of the held-out users and items.

Prepare (`topx:prepare.cold_protocols`) held out a fixed-seed share of the users and of the items
with every interaction they had; they are cold ids (rows of features only) at the tail of the maps,
`features.protocols` gives their ranges and `cold_users_holdout.npz` / `cold_items_holdout.npz` the
interactions to find. Both protocols score the repackaged vectors directly (the k-NN index's inner
product: user query [S_u, 1] (a cold user's [S_u + v̄, 1] with `topx:repackage.cold_users_mean_id`),
item vector [S_i, b_i]; the FM's exact ranking, decision 0018), not the
transform output: the cold-item protocol ranks a subset of the catalogue the k-NN lists do not hold.

- cold users: each held-out user with interactions ranks every item but the held-out items (their
  pairs with held-out users are in neither protocol) from their features; relevant = their
  interactions. Baseline: the most popular items (training popularity), the fallback they would
  otherwise get.
- cold items: each kept user who interacted with a held-out item ranks the held-out items only;
  relevant = the held-out items they interacted with. Baselines: `baseline` = popularity within the
  item's categories (the mean training popularity of the warm items sharing each of its item feature
  columns, weighted by the item's values; the items of one category tie, and ties are broken in a
  fixed-seed random order per user, not by index: dense indices follow the ids (integers
  numerically, query.ID_ORDER), and ids often carry popularity: ML-100k's item id and training count
  have a Spearman correlation of -0.80), `random` = a fixed-seed random order per user.

Users are sampled with the warm protocol's keys (`max_users`, `sample_seed`), but uniformly: these
protocols read vectors, not transform parts, so there is no part to draw whole (decision 0015); metric
names are the warm ones (metrics.py), `coverage` over the whole catalogue.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.runio import Csr, InputError, RunInputs, get_bytes, load_csr
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.metrics import MetricAccumulator, popular_order
from pipeline_steps.formats.recordio import read_dense

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client

CATEGORY_KINDS = ("categorical", "multi")


def _sample(rows: np.ndarray, config: EvaluateConfig) -> np.ndarray:
    if not config.max_users or rows.size <= config.max_users:
        return rows
    rng = np.random.default_rng(config.sample_seed)
    return np.sort(rng.choice(rows, size=config.max_users, replace=False))


def item_vectors(s3: S3Client, inputs: RunInputs) -> np.ndarray:
    """The k-NN index's item vectors in item-index order (labels are item ordinals i + 1)."""
    key = RunLayout(inputs.run_id).knn_train_items
    vectors, labels = read_dense(get_bytes(s3, inputs.bucket, key))
    n_items = inputs.manifest.n_items
    if labels is None or vectors.shape[0] != n_items:
        raise InputError(f"{key}: expected {n_items} labelled item vectors, got {vectors.shape[0]}")
    out = np.empty_like(vectors)
    out[np.asarray(labels, dtype=np.int64).reshape(-1) - 1] = vectors
    return out


def user_queries(s3: S3Client, inputs: RunInputs, users: np.ndarray) -> np.ndarray:
    """The query vectors of `users` (sorted indices), read from the parts that hold them."""
    out: np.ndarray | None = None
    for part in inputs.queries.parts:
        lo, hi = part.first_user, part.first_user + part.n_users
        mine = users[(users >= lo) & (users < hi)]
        if not mine.size:
            continue
        rows, _ = read_dense(get_bytes(s3, inputs.bucket, part.key))
        if rows.shape[0] != part.n_users:
            raise InputError(f"{part.key}: {rows.shape[0]} queries, expected {part.n_users}")
        if out is None:
            out = np.empty((users.size, rows.shape[1]), dtype=np.float32)
        out[np.searchsorted(users, mine)] = rows[mine - lo]
    return out if out is not None else np.empty((0, 0), dtype=np.float32)


def _top(scores: np.ndarray, candidates: np.ndarray, x: int, ties: np.ndarray | None = None) -> np.ndarray:
    """The x best candidates by score, best first; ties by `ties` (default: candidate order)."""
    order = np.lexsort((np.arange(candidates.size) if ties is None else ties, -scores))
    return candidates[order[:x]]


def top_random_ties(
    scores: np.ndarray, candidates: np.ndarray, x: int, rng: np.random.Generator
) -> np.ndarray:
    """The x best candidates by score, best first, ties in a random order drawn from `rng`.

    For a baseline whose scores tie in blocks (every item of one category has its category's
    score): ties by candidate order would rank by the ids' order, which can carry the popularity the
    baseline is not meant to have (see the module docstring).
    """
    return _top(scores, candidates, x, rng.random(candidates.size))


def category_popularity(
    item_side: Csr, data: np.ndarray, columns: np.ndarray, popularity: np.ndarray, warm: np.ndarray
) -> np.ndarray:
    """Per item: sum over its category columns of value x the mean popularity of the warm items
    having that column (0 for a column no warm item has)."""
    n_cols = int(columns.max()) + 1 if columns.size else 0
    in_cols = np.zeros(n_cols + 1, dtype=bool)
    in_cols[columns] = True
    rows = np.repeat(np.arange(item_side.indptr.size - 1), np.diff(item_side.indptr))
    cols = item_side.indices.astype(np.int64)
    use = (cols < n_cols) & in_cols[np.minimum(cols, n_cols)]
    rows, cols, vals = rows[use], cols[use], data[use].astype(np.float64)
    w = warm[rows]
    total = np.bincount(cols[w], weights=popularity[rows[w]].astype(np.float64), minlength=n_cols)
    count = np.bincount(cols[w], minlength=n_cols)
    mean = np.divide(total, count, out=np.zeros(n_cols), where=count > 0)
    return np.bincount(rows, weights=vals * mean[cols], minlength=item_side.indptr.size - 1)


def _item_side(s3: S3Client, inputs: RunInputs) -> tuple[Csr, np.ndarray]:
    m = inputs.manifest
    key = m.file_key("item_side")
    try:
        with np.load(io.BytesIO(get_bytes(s3, inputs.bucket, key)), allow_pickle=False) as z:
            csr = Csr(indptr=z["indptr"].astype(np.int64), indices=z["indices"].astype(np.int64))
            data = np.asarray(z["data"], dtype=np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{key}: expected an .npz with 'indptr', 'indices' and 'data' ({exc})") from None
    if csr.indptr.shape != (m.n_items + 1,) or data.size != csr.indices.size:
        raise InputError(f"{key}: expected {m.n_items} rows with one value per column")
    return csr, data


def _category_columns(inputs: RunInputs) -> np.ndarray:
    fields = [f for f in inputs.manifest.features.get("fields", []) if f.get("side") == "item"]
    chosen = [f for f in fields if f.get("kind") in CATEGORY_KINDS] or fields
    return np.array([c for f in chosen for c in range(f["start"], f["stop"])], dtype=np.int64)


def _result(acc: MetricAccumulator) -> dict[str, float | None]:
    return {k: (None if np.isnan(v) else float(v)) for k, v in acc.result().items()}


def cold_users(
    s3: S3Client, inputs: RunInputs, config: EvaluateConfig, items: np.ndarray, popularity: np.ndarray
) -> dict[str, Any] | None:
    m = inputs.manifest
    protocols = m.features["protocols"]
    a, b = int(protocols["user"]["start"]), int(protocols["user"]["stop"])
    ia, ib = int(protocols["item"]["start"]), int(protocols["item"]["stop"])
    if a == b:
        return None
    key = m.file_key("cold_users_holdout")
    hold = load_csr(get_bytes(s3, inputs.bucket, key), name=key, n_users=m.n_users, n_items=m.n_items)
    lengths = hold.row_lengths()
    users = _sample(np.flatnonzero(lengths[a:b] > 0) + a, config)
    candidates = np.concatenate([np.arange(ia), np.arange(ib, m.n_items)])
    queries = user_queries(s3, inputs, users)
    model = MetricAccumulator(x=config.x, n_items=m.n_items)
    baseline = MetricAccumulator(x=config.x, n_items=m.n_items)
    order = popular_order(popularity)
    popular = order[(order < ia) | (order >= ib)][: config.x]
    cand_items = items[candidates].astype(np.float64)
    for n, u in enumerate(users):
        scores = cand_items @ queries[n].astype(np.float64)
        model.add(_top(scores, candidates, config.x), hold.row(int(u)))
        baseline.add(popular, hold.row(int(u)))
    return {
        "held_out_users": b - a,
        "n_eval_users": model.n_users,
        "candidates": int(candidates.size),
        "metrics": _result(model),
        "baseline": _result(baseline),
        "ci95": {"model": model.intervals(), "baseline": baseline.intervals()},
    }


def cold_items(
    s3: S3Client, inputs: RunInputs, config: EvaluateConfig, items: np.ndarray, popularity: np.ndarray
) -> dict[str, Any] | None:
    m = inputs.manifest
    protocols = m.features["protocols"]
    ia, ib = int(protocols["item"]["start"]), int(protocols["item"]["stop"])
    if ia == ib:
        return None
    key = m.file_key("cold_items_holdout")
    hold = load_csr(get_bytes(s3, inputs.bucket, key), name=key, n_users=m.n_users, n_items=m.n_items)
    users = _sample(np.flatnonzero(hold.row_lengths() > 0), config)
    candidates = np.arange(ia, ib)
    queries = user_queries(s3, inputs, users)
    side, data = _item_side(s3, inputs)
    warm = np.zeros(m.n_items, dtype=bool)
    warm[: m.first_cold("item")] = True
    by_category = category_popularity(side, data, _category_columns(inputs), popularity, warm)[candidates]
    accs = {
        name: MetricAccumulator(x=config.x, n_items=m.n_items) for name in ("model", "baseline", "random")
    }
    rng = np.random.default_rng([config.sample_seed, 1])
    ties = np.random.default_rng([config.sample_seed, 2])  # the baseline's ties: an order per user
    cand_items = items[candidates].astype(np.float64)
    for n, u in enumerate(users):
        relevant = hold.row(int(u))
        accs["model"].add(_top(cand_items @ queries[n].astype(np.float64), candidates, config.x), relevant)
        accs["baseline"].add(top_random_ties(by_category, candidates, config.x, ties), relevant)
        accs["random"].add(rng.permutation(candidates)[: config.x], relevant)
    return {
        "held_out_items": ib - ia,
        "n_eval_users": accs["model"].n_users,
        "candidates": int(candidates.size),
        "metrics": _result(accs["model"]),
        "baseline": _result(accs["baseline"]),  # popularity within the item's categories
        "random": _result(accs["random"]),
        "ci95": {name: acc.intervals() for name, acc in accs.items()},
    }


def protocol_metrics(
    s3: S3Client, inputs: RunInputs, config: EvaluateConfig, popularity: np.ndarray
) -> dict[str, Any]:
    """{"cold_users": ..., "cold_items": ...} for the protocols the run has (empty without them)."""
    if not inputs.manifest.features.get("protocols"):
        return {}
    items = item_vectors(s3, inputs)
    out: dict[str, Any] = {}
    for name, fn in (("cold_users", cold_users), ("cold_items", cold_items)):
        result = fn(s3, inputs, config, items, popularity)
        if result is not None:
            out[name] = result
    return out
