"""Repackage: FM model -> k-NN item vectors [V_i, w_i] and user queries [V_u, 1], at separate keys.

<[V_u, 1], [V_i, w_i]> = <V_u, V_i> + w_i = FM score(u, i) - w0 - w_u: per user, ranking items by
inner product is ranking them by FM score. Users are one-hot columns [0, n_users), items
[n_users, n_users + n_items) (docs/contracts.md); the split comes from the manifest, never from data.

k rule: k = min(x + max seen items of any user, n_items, max_k). With k >= x + |seen(u)| a user
always keeps x unseen items after filtering. The `max_k` cap bounds the transform output; a heavy
user with |seen(u)| > k - x may be left with fewer than x (counted as `users_over_cap` here and as
`users_short` by publish).

Part size (sizing.py, docs/decisions/0008): each query part is one transform request, so it holds
R = min(budget / worst-case response line at this k, payload / query record, users_per_shard) users;
its verbose answer then stays under the container's response limit.

Event: {"run_id", "manifest_key", "model_s3_uri"}; returns {"knn_train_s3_uri", "queries_s3_uri",
"feature_dim", "k", "sample_size", "queries_manifest_key"} with the hyperparameters as strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common import sizing
from pipeline_steps.common.events import RepackageEvent, RepackageResult
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.manifest import Manifest
from pipeline_steps.common.runio import (
    InputError,
    get_bytes,
    load_csr,
    load_manifest,
    parse_s3_uri,
    put_json,
    s3_uri,
)
from pipeline_steps.formats.fm_model import read_fm_model
from pipeline_steps.formats.recordio import encode_dense
from pipeline_steps.repackage.config import RepackageConfig

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client


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


def part_bounds(n_users: int, users_per_part: int) -> list[tuple[int, int]]:
    """[start, stop) of every part, in user order."""
    return [(s, min(s + users_per_part, n_users)) for s in range(0, n_users, users_per_part)]


def choose_k(seen_counts: np.ndarray, *, x: int, n_items: int, max_k: int) -> tuple[int, int]:
    """-> (k, number of users whose seen items exceed k - x)."""
    max_seen = int(seen_counts.max()) if seen_counts.size else 0
    k = max(1, min(x + max_seen, n_items, max_k))
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
    items = np.hstack([V[n_users:], w[n_users:, None]])
    users = np.hstack([V[:n_users], np.ones((n_users, 1), dtype=np.float32)])
    labels = np.arange(1, n_items + 1, dtype=np.float32)  # exact up to 2^24 (checked below)
    if n_items > 2**24:
        raise InputError(f"{manifest.key}: {n_items} items exceed 2^24: float32 labels would collide")
    return items, labels, users


def repackage(*, s3: S3Client, bucket: str, event: dict | RepackageEvent, config: RepackageConfig) -> dict:
    ev = RepackageEvent.parse(event)
    run_id = ev.run_id
    manifest = load_manifest(s3, bucket, ev.manifest_key)
    model_bucket, model_key = parse_s3_uri(ev.model_s3_uri, field="model_s3_uri")
    model = read_fm_model(get_bytes(s3, model_bucket, model_key))
    items, labels, users = knn_vectors(model, manifest)

    seen_key = manifest.file_key("seen")
    seen = load_csr(
        get_bytes(s3, bucket, seen_key), name=seen_key, n_users=manifest.n_users, n_items=manifest.n_items
    )
    k, over_cap = choose_k(seen.row_lengths(), x=config.x, n_items=manifest.n_items, max_k=config.max_k)

    feature_dim = items.shape[1]
    size = part_size(config, k=k, feature_dim=feature_dim, where=f"run {run_id}")
    bounds = part_bounds(manifest.n_users, size.users)
    width = sizing.part_key_width(len(bounds))

    layout = RunLayout(run_id)
    train_key = layout.knn_train_items
    s3.put_object(Bucket=bucket, Key=train_key, Body=encode_dense(items, labels))
    parts = []
    for i, (start, stop) in enumerate(bounds):
        key = layout.query_part(i, width)
        s3.put_object(Bucket=bucket, Key=key, Body=encode_dense(users[start:stop]))
        parts.append({"key": key, "first_user": start, "n_users": stop - start})
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
            "sizing": size.as_dict(),
        },
    )
    return RepackageResult(
        knn_train_s3_uri=s3_uri(bucket, layout.knn_train),
        # The `users-` key prefix (not the folder): the transform must not read manifest.json as input.
        queries_s3_uri=s3_uri(bucket, layout.queries_input),
        feature_dim=str(feature_dim),
        k=str(k),
        sample_size=str(manifest.n_items),
        queries_manifest_key=queries_manifest_key,
    ).to_json()
