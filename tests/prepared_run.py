"""Small prepared-run fixtures that follow docs/contracts.md (what prepare writes under the run)."""

from __future__ import annotations

import io
import json

import numpy as np


def csr_bytes(rows: list[list[int]], n_users: int) -> bytes:
    assert len(rows) == n_users
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    buf = io.BytesIO()
    np.savez(buf, indptr=indptr, indices=indices)
    return buf.getvalue()


def put_prepared(
    s3,
    bucket: str,
    run_id: str,
    *,
    users: list[str],
    items: list[str],
    seen: list[list[int]],
    holdout: list[list[int]] | None = None,
    popularity: np.ndarray | None = None,
) -> str:
    """Write manifest.json, users.json, items.json, seen.npz, holdout.npz, popularity.npy; -> manifest key."""
    base = f"runs/{run_id}/prepared"
    n_users, n_items = len(users), len(items)
    holdout = holdout if holdout is not None else [[] for _ in users]
    if popularity is None:
        popularity = np.bincount([i for r in seen for i in r], minlength=n_items).astype(np.int64)
    files = {
        "users": f"{base}/users.json",
        "items": f"{base}/items.json",
        "seen": f"{base}/seen.npz",
        "holdout": f"{base}/holdout.npz",
        "popularity": f"{base}/popularity.npy",
        "report": f"{base}/report.json",
    }
    pop = io.BytesIO()
    np.save(pop, np.asarray(popularity, dtype=np.int64))
    bodies = {
        "users": json.dumps(users, ensure_ascii=False).encode(),
        "items": json.dumps(items, ensure_ascii=False).encode(),
        "seen": csr_bytes(seen, n_users),
        "holdout": csr_bytes(holdout, n_users),
        "popularity": pop.getvalue(),
        "report": b"{}",
    }
    for name, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=files[name], Body=body)
    manifest = {
        "version": 1,
        "run_id": run_id,
        "bucket": bucket,
        "n_users": n_users,
        "n_items": n_items,
        "feature_dim": n_users + n_items,
        "label_mode": "implicit",
        "label_stats": {"positives": 0, "negatives": 0, "mean": 0.0},
        "counts": {
            "train_interactions": sum(len(r) for r in seen),
            "holdout_pairs": sum(len(r) for r in holdout),
        },
        "train_shards": [f"{base}/train/part-00000.rec"],
        "test_shards": [],
        "files": files,
        "input": {"objects": [], "sha256": ""},
        "config": {},
    }
    key = f"{base}/manifest.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    return key


def put_queries_manifest(
    s3,
    bucket: str,
    run_id: str,
    *,
    part_sizes: list[int],
    k: int,
    n_items: int,
    related_sizes: list[int] | None = None,
    related_x: int = 0,
) -> str:
    """What repackage writes: one query shard per part, users in index order (then item queries)."""
    parts, first = [], 0
    for i, n in enumerate(part_sizes):
        parts.append(
            {"key": f"runs/{run_id}/knn/queries/users-{i:05d}.rec", "first_user": first, "n_users": n}
        )
        first += n
    key = f"runs/{run_id}/knn/queries/manifest.json"
    doc: dict = {"parts": parts, "k": k, "n_items": n_items, "n_users": first}
    if related_sizes:
        related, start = [], 0
        for i, n in enumerate(related_sizes):
            related_key = f"runs/{run_id}/knn/queries/users-related-{i:05d}.rec"
            related.append({"key": related_key, "first_item": start, "n_items": n})
            start += n
        doc |= {"related_parts": related, "related_x": related_x}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(doc).encode())
    return key


def put_transform_output(
    s3,
    bucket: str,
    run_id: str,
    part: int,
    labels,
    distances,
    *,
    mini_batch: int | None = None,
    related: bool = False,
) -> str:
    """A `.out` part as the k-NN batch transform writes it (ascending distances, verbose JSON lines).

    ``mini_batch``: SageMaker's AssembleWith=Line assembly, an extra "\n" after every ``mini_batch``
    lines (one container response each) and after the last one.
    """
    from pipeline_steps.local_algorithms.knn_lines import format_results

    family = "users-related-" if related else "users-"
    key = f"runs/{run_id}/transform/{family}{part:05d}.rec.out"
    text = format_results(labels, distances)
    if mini_batch is not None:
        lines = text.splitlines(keepends=True)
        text = "".join("".join(lines[i : i + mini_batch]) + "\n" for i in range(0, len(lines), mini_batch))
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    return key


def event(bucket: str, run_id: str) -> dict:
    return {
        "run_id": run_id,
        "manifest_key": f"runs/{run_id}/prepared/manifest.json",
        "queries_manifest_key": f"runs/{run_id}/knn/queries/manifest.json",
        "transform_output_s3_uri": f"s3://{bucket}/runs/{run_id}/transform/",
    }


def put_publish_batches(s3, bucket: str, run_id: str, *, users_per_child: int = 100_000, config=None) -> list:
    """What repackage writes for publish's Map (decision 0015): `publish-batches.json` and each batch's
    user slice (common/slices.py), from the run's prepared files and queries manifest; `config`: the
    filter config whose user exclusions go into the slices."""
    from pipeline_steps.common.batches import publish_batches
    from pipeline_steps.common.filters import FilterConfig, load_filters
    from pipeline_steps.common.layout import RunLayout
    from pipeline_steps.common.runio import get_json, load_id_list, load_manifest
    from pipeline_steps.repackage.core import write_publish_slices

    layout = RunLayout(run_id)
    manifest = load_manifest(s3, bucket, layout.manifest)
    qm = get_json(s3, bucket, layout.queries_manifest)
    parts = qm["parts"]
    sizes = [p["n_users"] for p in parts] + [p["n_items"] for p in qm.get("related_parts", [])]
    batches = publish_batches(sizes, users_per_child)
    users = load_id_list(s3, bucket, manifest.file_key("users"), expected=manifest.n_users)
    items = load_id_list(s3, bucket, manifest.file_key("items"), expected=manifest.n_items)
    config = config or FilterConfig()
    filters = load_filters(s3, bucket, config, users=users, items=items)
    write_publish_slices(s3, bucket, manifest, config, filters, batches=batches, parts=parts, run_id=run_id)
    s3.put_object(Bucket=bucket, Key=layout.publish_batches, Body=json.dumps(batches).encode())
    return batches
