"""Repackage: FM model -> k-NN item vectors [V_i, w_i] and user queries [V_u, 1], at separate keys.

<[V_u, 1], [V_i, w_i]> = <V_u, V_i> + w_i = FM score(u, i) - w0 - w_u: per user, ranking items by
inner product is ranking them by FM score. Users are one-hot columns [0, n_users), items
[n_users, n_users + n_items) (docs/contracts.md); the split comes from the manifest, never from data.

k rule: L = x + read_extra is the list length publish stores; d(u) = |seen(u) ∪ excluded(u) ∪ G|
is what publish drops for user u (seen items, the user's own exclusions, G = the items the business
filters remove for everyone; d(u) = |seen(u)| without filters). k = min(max(Q_q(L + d(u)),
related_x + 1 + |G|), n_items, max_k), Q_q the `k_quantile` q of the users' need (the smallest
need covering at least that share of the users, numpy's "inverted_cdf"; q = 1: the heaviest user's):
a user with L + d(u) <= k always keeps L items after filtering, and every item keeps related_x
related items after dropping itself and G. k, so the transform output per user, no longer grows
with the heaviest user (decision 0015). A user with d(u) > k - L may be left with fewer (counted as
`users_over_cap` here; publish fills such lists from the filtered popularity order and flags them,
and evaluate scores the same filled lists).

Related items (decision 0012): every item's query [V_i, 0] goes to the same index of [V_j, w_j]:
the inner product is <V_i, V_j>, the FM's interaction between the two items. The item queries are
extra parts `users-related-NNNNN.rec` under the same transform input prefix, sized like the user
parts (same k, same feature_dim), so the one transform job answers both.

Side features (decision 0018): with the manifest's `features`, x's side row side[x] (prepare's
`user_side.npz` / `item_side.npz`: its one-hot and its feature columns with their values) gives
S_x = side[x] @ V, lin_x = side[x] @ w and P_x = 0.5 (||S_x||^2 - (side[x]^2) @ (V^2).sum(1)), the
pairs within one side. The FM score of the row side[u] + side[i] is w0 + lin_u + lin_i + P_u + P_i +
<S_u, S_i>, so item vectors [S_i, lin_i + P_i] and user queries [S_u, 1] give score - w0 - lin_u -
P_u, a per-user constant: the FM's exact ranking. Without features S_x = V_x, lin_x = w_x, P_x = 0:
the vectors above, computed by the one-hot path, unchanged. The model is then read whole (the side
products need every row of V); item queries are [S_i, 0].

Part size (sizing.py, docs/decisions/0008): each query part is one transform request, so it holds
R = min(budget / worst-case response line at this k, payload / query record, users_per_shard) users;
its verbose answer then stays under the container's response limit.

Event: {"run_id", "manifest_key", "model_s3_uri"}; returns {"knn_train_s3_uri", "queries_s3_uri",
"feature_dim", "k", "sample_size", "queries_manifest_key"} with the hyperparameters as strings.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common import sizing
from pipeline_steps.common.batches import publish_batches
from pipeline_steps.common.events import RepackageEvent, RepackageResult
from pipeline_steps.common.filters import FilterConfig, Filters, load_filters, no_filters
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.manifest import Manifest
from pipeline_steps.common.runio import (
    InputError,
    get_bytes,
    load_csr,
    load_id_list,
    load_manifest,
    parse_s3_uri,
    put_json,
    s3_uri,
)
from pipeline_steps.common.slices import write_slices
from pipeline_steps.formats.fm_model import read_fm_model
from pipeline_steps.formats.fm_stream import FMMeta, FMRows, StreamUnsupportedError, iter_fm_model
from pipeline_steps.formats.recordio import encode_dense
from pipeline_steps.repackage.config import RepackageConfig

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client


SIDE_CHUNK_ROWS = 65_536  # side-matrix rows per block of the feature products (side_vectors)
STREAM_CHUNK_ROWS = 16_384  # V rows per block read from the artifact (4 MB at 64 factors)


class FeatureDimMismatchError(InputError):
    """The FM model was not trained on this run's one-hot layout."""


class PartSizeError(InputError):
    """Not even one query fits one transform request at this run's k and feature_dim."""


def part_size(config: RepackageConfig, *, k: int, feature_dim: int, where: str) -> sizing.PartSize:
    size = sizing.users_per_part(
        k=k,
        feature_dim=feature_dim,
        max_payload_mb=config.max_payload_mb,
        response_budget_bytes=config.response_budget_bytes,
        users_per_shard=config.users_per_shard,
    )
    if size.users < 1:
        raise PartSizeError(
            f"{where}: one query's worst-case response at k={k} is {size.response_bytes_per_query} bytes "
            f"(budget response_budget_bytes={config.response_budget_bytes}) and its request "
            f"{size.request_bytes_per_query} bytes at feature_dim={feature_dim} (max_payload_mb="
            f"{config.max_payload_mb}): not one user fits a transform request; lower max_k or raise "
            "the budget"
        )
    return size


def users_per_part(config: RepackageConfig, size: sizing.PartSize, n_users: int) -> int:
    """R from the sizing, lowered so the users make at least `transform_instance_count` parts.

    Batch transform "partitions the Amazon S3 objects in the input by key and maps Amazon S3
    objects to instances"; with one input file "only one instance processes the input file"
    (https://docs.aws.amazon.com/sagemaker/latest/dg/batch-transform.html): fewer parts than
    instances leave instances idle.
    """
    per_instance = -(-n_users // config.transform_instance_count)  # ceil
    return max(1, min(size.users, per_instance))


def part_bounds(n_users: int, users_per_part: int) -> list[tuple[int, int]]:
    """[start, stop) of every part, in user order."""
    return [(s, min(s + users_per_part, n_users)) for s in range(0, n_users, users_per_part)]


def choose_k(
    seen_counts: np.ndarray, *, x: int, n_items: int, max_k: int, min_k: int = 1, quantile: float = 1.0
) -> tuple[int, int]:
    """-> (k, number of users whose dropped items exceed k - x); `min_k`: the item queries' need.

    `quantile` q: k covers the need x + d(u) of at least a share q of the users (1.0: all of them).
    """
    need = 0
    if seen_counts.size:
        need = (
            int(np.quantile(seen_counts, quantile, method="inverted_cdf"))
            if quantile < 1.0
            else int(seen_counts.max())
        )
    k = max(1, min(max(x + need, min_k), n_items, max_k))
    return k, int(np.count_nonzero(seen_counts > k - x))


def knn_vectors(model: Any, manifest: Manifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (item vectors (n_items, f+1), item labels 1..n_items, user queries (n_users, f+1)), float32."""
    n_users, n_items = manifest.n_users, manifest.n_items
    V = np.asarray(model.V, dtype=np.float32)
    w = np.asarray(model.w, dtype=np.float32).reshape(-1)
    if int(model.feature_dim) != manifest.feature_dim or V.shape[0] != manifest.feature_dim:
        raise FeatureDimMismatchError(
            f"FM model has feature_dim {model.feature_dim} (V {V.shape}) but {manifest.key} says "
            f"feature_dim {manifest.feature_dim} = {n_users} users + {n_items} items: the model was "
            "trained on another run's data"
        )
    if w.shape != (manifest.feature_dim,):
        raise FeatureDimMismatchError(
            f"FM linear weights have shape {w.shape}, expected ({manifest.feature_dim},)"
        )
    items = np.hstack([V[n_users:], w[n_users:, None]])  # index; its item queries: related_queries
    users = np.hstack([V[:n_users], np.ones((n_users, 1), dtype=np.float32)])
    labels = np.arange(1, n_items + 1, dtype=np.float32)  # exact up to 2^24 (checked below)
    if n_items > 2**24:
        raise InputError(f"{manifest.key}: {n_items} items exceed 2^24: float32 labels would collide")
    return items, labels, users


def side_vectors(
    model: Any,
    manifest: Manifest,
    user_side: SideMatrix,
    item_side: SideMatrix,
    *,
    mean_id: tuple[bool, bool] = (False, False),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like `knn_vectors`, from the side matrices: items [S_i, lin_i + P_i], queries [S_u, 1] (float32).

    `mean_id` (users, items): the cold ids of that side (`Manifest.first_cold`, the tail of the map)
    get the mean of the warm ids' one-hot factors v and linear weight w as their id's (`with_mean_id`).
    """
    V = np.asarray(model.V, dtype=np.float32)
    w = np.asarray(model.w, dtype=np.float32).reshape(-1)
    if int(model.feature_dim) != manifest.feature_dim or V.shape[0] != manifest.feature_dim:
        raise FeatureDimMismatchError(
            f"FM model has feature_dim {model.feature_dim} (V {V.shape}) but {manifest.key} says "
            f"feature_dim {manifest.feature_dim} ({manifest.n_users} users + {manifest.n_items} items + "
            f"{manifest.feature_dim - manifest.n_users - manifest.n_items} feature columns): the model was "
            "trained on another run's data"
        )
    v_sq = np.empty(V.shape[0], dtype=np.float64)  # ||v_j||^2 in float64, a block of rows at a time
    for lo in range(0, V.shape[0], SIDE_CHUNK_ROWS):
        block = V[lo : lo + SIDE_CHUNK_ROWS].astype(np.float64)
        v_sq[lo : lo + len(block)] = np.einsum("jf,jf->j", block, block)

    def sides(m: SideMatrix) -> tuple[np.ndarray, np.ndarray]:
        S = m.dot(V)
        pair = 0.5 * (np.einsum("nf,nf->n", S, S) - m.squared().dot(v_sq))
        return S, m.dot(w) + pair

    S_i, b_i = sides(item_side)
    S_u, _ = sides(user_side)
    if mean_id[0]:
        with_mean_id(S_u, None, V, w, ids=0, first_cold=manifest.first_cold("user"))
    if mean_id[1]:
        with_mean_id(S_i, b_i, V, w, ids=manifest.n_users, first_cold=manifest.first_cold("item"))
    items = np.hstack([S_i, b_i[:, None]]).astype(np.float32)
    users = np.hstack([S_u, np.ones((S_u.shape[0], 1))]).astype(np.float32)
    if manifest.n_items > 2**24:
        raise InputError(
            f"{manifest.key}: {manifest.n_items} items exceed 2^24: float32 labels would collide"
        )
    return items, np.arange(1, manifest.n_items + 1, dtype=np.float32), users


def with_mean_id(
    S: np.ndarray, b: np.ndarray | None, V: np.ndarray, w: np.ndarray, *, ids: int, first_cold: int
) -> None:
    """Rows [first_cold, len(S)) of one side, in place: as if each cold id's one-hot (columns
    `ids + r`, never in a training row) held the warm ids' mean factors v̄ = mean(V[ids : ids +
    first_cold]) and mean weight w̄. Adding that column (value 1) to a row adds v̄ to its factor sum
    S, and w̄ + <v̄, S> (its pairs with the row's other columns) to the row's own terms b. Nothing
    without warm or cold ids."""
    if first_cold == 0 or first_cold == len(S):
        return
    v_bar = V[ids : ids + first_cold].astype(np.float64).mean(axis=0)
    if b is not None:  # before S moves: the pairs are with the row's feature columns
        b[first_cold:] += float(w[ids : ids + first_cold].astype(np.float64).mean()) + S[first_cold:] @ v_bar
    S[first_cold:] += v_bar


class SideMatrix:
    """A side matrix of prepare (`user_side.npz` / `item_side.npz`: CSR rows x feature_dim, float32)."""

    def __init__(self, data: bytes, *, name: str, n_rows: int, feature_dim: int) -> None:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                self.indptr = np.asarray(z["indptr"], dtype=np.int64)
                self.indices = np.asarray(z["indices"], dtype=np.int64)
                self.data = np.asarray(z["data"], dtype=np.float32)
        except (KeyError, ValueError, OSError) as exc:
            raise InputError(
                f"{name}: expected an .npz with 'indptr', 'indices' and 'data' ({exc})"
            ) from None
        nnz = self.indices.size
        if self.indptr.shape != (n_rows + 1,) or self.indptr[0] != 0 or self.indptr[-1] != nnz:
            raise InputError(
                f"{name}: indptr has shape {self.indptr.shape}, expected ({n_rows + 1},) from 0 to nnz"
            )
        if self.data.size != nnz or np.any(np.diff(self.indptr) < 1):
            # a warm id's row holds its one-hot, a cold id's (decision 0018) its feature columns
            raise InputError(f"{name}: every row needs at least one column, and one value per column")
        if self.indices.min() < 0 or self.indices.max() >= feature_dim:
            raise InputError(f"{name}: column out of range [0, {feature_dim})")
        self.n_rows = n_rows

    def dot(self, dense: np.ndarray) -> np.ndarray:
        """self @ dense in float64: the rows of `dense` each entry names, times its value, summed per
        row; `SIDE_CHUNK_ROWS` rows at a time (the gathered rows are nnz x width)."""
        out = np.empty((self.n_rows, *dense.shape[1:]), dtype=np.float64)
        for lo in range(0, self.n_rows, SIDE_CHUNK_ROWS):
            hi = min(lo + SIDE_CHUNK_ROWS, self.n_rows)
            a, b = self.indptr[lo], self.indptr[hi]
            values = self.data[a:b].astype(np.float64).reshape(-1, *([1] * (dense.ndim - 1)))
            product = values * dense[self.indices[a:b]].astype(np.float64)
            out[lo:hi] = np.add.reduceat(product, self.indptr[lo:hi] - a, axis=0)  # no row is empty
        return out

    def squared(self) -> SideMatrix:
        out = object.__new__(SideMatrix)
        out.indptr, out.indices, out.data, out.n_rows = self.indptr, self.indices, self.data**2, self.n_rows
        return out


def load_sides(s3: S3Client, bucket: str, manifest: Manifest) -> tuple[SideMatrix, SideMatrix]:
    out = []
    for name, n_rows in (("user_side", manifest.n_users), ("item_side", manifest.n_items)):
        key = manifest.file_key(name)
        out.append(
            SideMatrix(get_bytes(s3, bucket, key), name=key, n_rows=n_rows, feature_dim=manifest.feature_dim)
        )
    return out[0], out[1]


def related_queries(items: np.ndarray) -> np.ndarray:
    """Item queries [V_i, 0] from index rows [V_i, w_i]: inner product with [V_j, w_j] = <V_i, V_j>."""
    queries = items.copy()
    queries[:, -1] = 0.0
    return queries


def run_filters(s3: S3Client, bucket: str, manifest: Manifest, config: RepackageConfig) -> Filters:
    if not config.has_filters:
        return no_filters(manifest.n_users, manifest.n_items)
    users = load_id_list(s3, bucket, manifest.file_key("users"), expected=manifest.n_users)
    items = load_id_list(s3, bucket, manifest.file_key("items"), expected=manifest.n_items)
    return load_filters(s3, bucket, config, users=users, items=items)


def write_publish_slices(
    s3: S3Client,
    bucket: str,
    manifest: Manifest,
    config: FilterConfig,
    filters: Filters,
    *,
    batches: list[dict[str, int]],
    parts: list[dict],
    run_id: str,
) -> None:
    """The users of each publish batch (common/slices.py). `seen` is read again here, after the index
    is written and released, so it is never held with the item vectors; the id strings (~60 bytes
    each) likewise."""
    seen_key = manifest.file_key("seen")
    seen = load_csr(
        get_bytes(s3, bucket, seen_key), name=seen_key, n_users=manifest.n_users, n_items=manifest.n_items
    )
    users = load_id_list(s3, bucket, manifest.file_key("users"), expected=manifest.n_users)
    write_slices(
        s3,
        bucket,
        RunLayout(run_id),
        batches=batches,
        user_parts=parts,
        users=users,
        seen=seen,
        excluded=filters.user_excluded,
        exclusions_key=config.filter_user_exclusions_key,
    )


def write_parts(
    s3: S3Client, bucket: str, vectors: np.ndarray, per_part: int, key: Callable[[int, int], str], first: str
) -> list[dict]:
    """One RecordIO object per `per_part` rows; returns [{"key", first: start, "n_...": rows}]."""
    bounds = part_bounds(vectors.shape[0], per_part)
    width = sizing.part_key_width(len(bounds))
    count = "n_users" if first == "first_user" else "n_items"
    parts = []
    for i, (start, stop) in enumerate(bounds):
        part_key = key(i, width)
        s3.put_object(Bucket=bucket, Key=part_key, Body=encode_dense(vectors[start:stop]))
        parts.append({"key": part_key, first: start, count: stop - start})
    return parts


class StreamedQueries:
    """Repackage's state while the FM parameters stream by: V rows -> user query parts as they fill.

    Held: one query part (at most R users x (f + 1) float32, within the transform payload), every
    item's V row (n_items x f x 4 bytes: the k-NN index is one object) and, at the end, the linear
    weights (4 bytes per user and item); never more than one part of the users' V rows.
    """

    def __init__(
        self, s3: S3Client, bucket: str, manifest: Manifest, config: RepackageConfig, *, k: int, run_id: str
    ):
        self.s3, self.bucket, self.manifest, self.config = s3, bucket, manifest, config
        self.k, self.run_id, self.layout = k, run_id, RunLayout(run_id)
        self.parts: list[dict] = []
        self.size: sizing.PartSize | None = None
        self.buffer = np.zeros((0, 1), dtype=np.float32)
        self.filled = self.width = 0
        self.item_rows = np.zeros((manifest.n_items, 0), dtype=np.float32)

    def _start(self, factors: int) -> None:
        m = self.manifest
        self.size = part_size(self.config, k=self.k, feature_dim=factors + 1, where=f"run {self.run_id}")
        per_part = users_per_part(self.config, self.size, m.n_users)
        self.buffer = np.ones((min(per_part, m.n_users), factors + 1), dtype=np.float32)
        self.width = sizing.part_key_width(len(part_bounds(m.n_users, per_part)))
        self.item_rows = np.empty((m.n_items, factors), dtype=np.float32)

    def add(self, start: int, rows: np.ndarray) -> None:
        """Consecutive rows of V (users first, then items), from row `start`."""
        if self.size is None:
            self._start(rows.shape[1])
        n_users = self.manifest.n_users
        n_user_rows = min(rows.shape[0], max(0, n_users - start))
        pos = 0
        while pos < n_user_rows:
            take = min(n_user_rows - pos, self.buffer.shape[0] - self.filled)
            self.buffer[self.filled : self.filled + take, :-1] = rows[pos : pos + take]
            self.filled, pos = self.filled + take, pos + take
            if self.filled == self.buffer.shape[0]:
                self.flush()
        if n_user_rows < rows.shape[0]:
            first = start + n_user_rows - n_users
            self.item_rows[first : first + rows.shape[0] - n_user_rows] = rows[n_user_rows:]

    def flush(self) -> None:
        if not self.filled:
            return
        first = self.parts[-1]["first_user"] + self.parts[-1]["n_users"] if self.parts else 0
        key = self.layout.query_part(len(self.parts), self.width)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=encode_dense(self.buffer[: self.filled]))
        self.parts.append({"key": key, "first_user": first, "n_users": self.filled})
        self.filled = 0


def check_feature_dim(feature_dim: int, manifest: Manifest) -> None:
    if feature_dim != manifest.feature_dim:
        raise FeatureDimMismatchError(
            f"FM model has feature_dim {feature_dim} but {manifest.key} says feature_dim "
            f"{manifest.feature_dim} = {manifest.n_users} users + {manifest.n_items} items: the model was "
            "trained on another run's data"
        )


def stream_model(s3: S3Client, bucket: str, key: str, out: StreamedQueries) -> tuple[np.ndarray, np.ndarray]:
    """Stream the FM artifact into `out` (user parts written as they fill); -> (items, labels)."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    except s3.exceptions.NoSuchKey:
        raise InputError(f"s3://{bucket}/{key}: object does not exist") from None
    w = np.zeros(0, dtype=np.float32)
    for event in iter_fm_model(body, chunk_rows=STREAM_CHUNK_ROWS):
        if isinstance(event, FMMeta):
            check_feature_dim(event.feature_dim, out.manifest)
        elif isinstance(event, FMRows):
            out.add(event.start, event.rows)
        else:
            w = event.w
    out.flush()
    n_users = out.manifest.n_users
    items = np.hstack([out.item_rows, w[n_users:, None]])
    return items, np.arange(1, out.manifest.n_items + 1, dtype=np.float32)


def repackage(*, s3: S3Client, bucket: str, event: dict | RepackageEvent, config: RepackageConfig) -> dict:
    ev = RepackageEvent.parse(event)
    run_id = ev.run_id
    manifest = load_manifest(s3, bucket, ev.manifest_key)
    model_bucket, model_key = parse_s3_uri(ev.model_s3_uri, field="model_s3_uri")
    if manifest.n_items > 2**24:
        raise InputError(
            f"{manifest.key}: {manifest.n_items} items exceed 2^24: float32 labels would collide"
        )

    seen_key = manifest.file_key("seen")
    seen = load_csr(
        get_bytes(s3, bucket, seen_key), name=seen_key, n_users=manifest.n_users, n_items=manifest.n_items
    )
    filters = run_filters(s3, bucket, manifest, config)  # before any write: a bad file changes nothing
    dropped = filters.dropped_counts(seen) if config.has_filters else seen.row_lengths()
    stored = config.x + config.read_extra
    n_excluded = int(filters.excluded.sum())
    related_k = config.related_x + 1 + n_excluded if config.related_x else 1
    k, over_cap = choose_k(
        dropped,
        x=stored,
        n_items=manifest.n_items,
        max_k=config.max_k,
        min_k=related_k,
        quantile=config.k_quantile,
    )
    del seen

    layout = RunLayout(run_id)
    whole = manifest.has_features  # the side products need every row of V: the model is read whole
    if not whole:
        streamed = StreamedQueries(s3, bucket, manifest, config, k=k, run_id=run_id)
        try:
            items, labels = stream_model(s3, model_bucket, model_key, streamed)
            parts = streamed.parts
        except StreamUnsupportedError:  # an artifact the stream cannot follow: read it whole
            whole = True
    if whole:
        model = read_fm_model(get_bytes(s3, model_bucket, model_key))
        if manifest.has_features:
            items, labels, users = side_vectors(
                model,
                manifest,
                *load_sides(s3, bucket, manifest),
                mean_id=(config.cold_users_mean_id, config.cold_items_mean_id),
            )
        else:
            items, labels, users = knn_vectors(model, manifest)
        size = part_size(config, k=k, feature_dim=items.shape[1], where=f"run {run_id}")
        per_part = users_per_part(config, size, manifest.n_users)
        parts = write_parts(s3, bucket, users, per_part, layout.query_part, "first_user")
        del users
    feature_dim = items.shape[1]
    size = part_size(config, k=k, feature_dim=feature_dim, where=f"run {run_id}")

    train_key = layout.knn_train_items
    s3.put_object(Bucket=bucket, Key=train_key, Body=encode_dense(items, labels))
    related_parts = (
        write_parts(s3, bucket, related_queries(items), size.users, layout.related_part, "first_item")
        if config.related_x
        else []
    )
    queries_manifest_key = layout.queries_manifest
    put_json(
        s3,
        bucket,
        queries_manifest_key,
        {
            "parts": parts,
            "k": k,
            "x": config.x,
            "n_items": manifest.n_items,
            "n_users": manifest.n_users,
            "feature_dim": feature_dim,
            "users_over_cap": over_cap,
            "k_quantile": config.k_quantile,
            "k_all_users": min(stored + int(dropped.max()) if dropped.size else stored, manifest.n_items),
            "sizing": size.as_dict(),
            "related_parts": related_parts,
            "related_x": config.related_x,
            "related_k": related_k,  # what the item queries need; k may be capped below it
            "read_extra": config.read_extra,
            "filters": {**filters.counts, "max_dropped": int(dropped.max()) if dropped.size else 0},
        },
    )
    del items, labels  # the index is written: what follows holds the users instead
    # publish's Map ranges (decision 0015 "Publish fan-out in batches"), in publish's part order, and
    # each range's users (ids, seen rows, exclusions) for its child ("A child holds its own users"),
    # the ranges last: their object is what the Map reads
    sizes = [p["n_users"] for p in parts] + [p["n_items"] for p in related_parts]
    batches = publish_batches(sizes, config.users_per_child)
    write_publish_slices(s3, bucket, manifest, config, filters, batches=batches, parts=parts, run_id=run_id)
    put_json(s3, bucket, layout.publish_batches, batches)
    return RepackageResult(
        knn_train_s3_uri=s3_uri(bucket, layout.knn_train),
        # The `users-` key prefix (not the folder): the transform must not read manifest.json as input.
        queries_s3_uri=s3_uri(bucket, layout.queries_input),
        feature_dim=str(feature_dim),
        k=str(k),
        sample_size=str(manifest.n_items),
        queries_manifest_key=queries_manifest_key,
        n_users=manifest.n_users,
        n_parts=len(parts) + len(related_parts),
        publish_batches_key=layout.publish_batches,
    ).to_json()
