"""Evaluate (the gate): model vs most-popular baseline on the holdout; metrics JSON; fail if too low.

Event: {"run_id", "manifest_key", "queries_manifest_key", "transform_output_s3_uri"}.
Returns {"metrics_key", "passed": true, "model": {...}, "baseline": {...}} or raises GateFailedError
(after writing the metrics JSON, so a failed run can be inspected).

Bounded (decision 0015): the users scored are a cluster sample. Transform parts (contiguous ranges
of dense user indices) are drawn in a random order, fixed seed (`sample_seed`), until the drawn parts
hold at least `max_users` users with held-out items; every such user of those parts is scored, and
only those parts are read (streamed line by line, only the scored users' lines parsed). Every user
is scored when there are no more than `max_users` (or with `max_users` 0). Model and baseline score
the same users. Every per-user metric gets a 95% interval (`ci95`, metrics.py: over users without a
sample, the ratio estimator's over parts with one); the gate compares the point estimates. The
related lists (item-query parts) are bounded the same way. A list the model leaves short (a user
beyond the k rule's quantile, or a catalogue smaller than k) is topped up from the most popular
unseen items, as publish tops it up, so the metrics score what readers get (`users_filled` counts
them).
"""

from __future__ import annotations

import math
import posixpath
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.common.events import EvaluateResult, RunResultsEvent
from pipeline_steps.common.filters import fill
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.ranking import iter_related_run_part, iter_run_part
from pipeline_steps.common.runio import (
    Csr,
    InputError,
    RunInputs,
    get_bytes,
    get_json,
    load_csr,
    load_inputs,
    load_popularity,
    put_json,
)
from pipeline_steps.evaluate import cold, gate
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.metrics import MetricAccumulator, baseline_accumulator, popular_order

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

GateFailedError = gate.GateFailedError


def metrics_key(run_id: str) -> str:
    return RunLayout(run_id).metrics


def output_bytes(s3: S3Client, inputs: RunInputs) -> dict[str, float]:
    """Bytes of the users' transform outputs (one listing): what the k rule bounds per user."""
    wanted = set(inputs.out_keys)
    total = 0
    for prefix in sorted({posixpath.dirname(k) + "/" for k in wanted}):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=inputs.bucket, Prefix=prefix):
            total += sum(o["Size"] for o in page.get("Contents", []) if o["Key"] in wanted)
    n_users = inputs.manifest.n_users
    return {
        "k": inputs.queries.k,
        "user_output_bytes": total,
        "bytes_per_user": round(total / n_users, 1) if n_users else 0.0,
    }


def part_counts(eligible: np.ndarray, firsts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Eligible rows in each part (parts: rows first .. first + size - 1)."""
    cum = np.concatenate([[0], np.cumsum(eligible, dtype=np.int64)])
    return cum[firsts + sizes] - cum[firsts]


def sample_parts(counts: np.ndarray, max_rows: int, seed: int) -> np.ndarray | None:
    """Sorted indices of the parts to read, or None: every part (the total is at most `max_rows`).

    A cluster sample: the parts with eligible rows (`counts` > 0; the others have nothing to score)
    in a random order (`numpy.random.default_rng(seed).permutation`), taken until their eligible
    rows reach `max_rows`. Each part has the same chance to be drawn whatever its position, so the
    mean over the scored rows estimates the mean over all eligible rows even when parts differ
    (dense indices follow the ids' order, decisions 0002 and 0014, which may follow sign-up time and
    so activity); metrics.py's interval is over parts.
    """
    total = int(counts.sum())
    if not max_rows or total <= max_rows:
        return None
    candidates = np.flatnonzero(counts > 0)
    order = candidates[np.random.default_rng(seed).permutation(candidates.size)]
    taken = int(np.searchsorted(np.cumsum(counts[order]), max_rows)) + 1
    return np.sort(order[:taken])


def model_metrics(
    s3: S3Client,
    inputs: RunInputs,
    holdout: Csr,
    config: EvaluateConfig,
    *,
    popularity: np.ndarray,
    parts: np.ndarray | None = None,
) -> tuple[MetricAccumulator, int]:
    """-> (accumulator over the scored users, users whose list was topped up from popularity).

    `parts`: the sampled transform parts (their users with held-out items are scored, one cluster
    per part), or None: every user of every part.
    """
    acc = MetricAccumulator(x=config.x, n_items=inputs.manifest.n_items)
    order = popular_order(popularity)
    keep = None
    if parts is not None:
        keep = holdout.row_lengths() > 0
    n_filled = 0
    for part in range(len(inputs.queries.parts)) if parts is None else parts.tolist():
        rows = iter_run_part(s3, inputs, part, metric=config.index_metric, x=config.x, keep=keep)
        cluster = None if parts is None else part
        for u, items, _ in rows:
            extra = fill(items, config.x, order, inputs.seen.row(u))
            if extra.size:
                items = np.concatenate([items, extra])
                n_filled += 1
            acc.add(items, holdout.row(u), cluster)
    return acc, n_filled


def sampled_users(inputs: RunInputs, holdout: Csr, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(users with held-out items in the sampled parts, the part of each): the baseline's users."""
    eligible = holdout.row_lengths() > 0
    users, clusters = [], []
    for part in parts.tolist():
        qp = inputs.queries.parts[part]
        chosen = qp.first_user + np.flatnonzero(eligible[qp.first_user : qp.first_user + qp.n_users])
        users.append(chosen)
        clusters.append(np.full(chosen.size, part))
    return np.concatenate(users), np.concatenate(clusters)


def related_metrics(s3: Any, inputs: RunInputs, config: EvaluateConfig) -> dict[str, Any] | None:
    """Generic checks of the related-item lists (no genres in AWS): length and catalog coverage.

    `mean_length` and `full_share` (lists of exactly related_x) show whether k left enough
    neighbours after dropping the item itself; `coverage` is the share of the catalog that appears
    in some related list (a list of popular items everywhere would cover little). Above `max_users`
    item queries, the same cluster sample of parts as the users' (`sample_parts`): `n_items` lists
    read, and `coverage` is then over the sampled lists only (a lower bound of the whole catalog's).
    """
    if not inputs.related_out_keys:
        return None
    related_x, n_items = inputs.queries.related_x, inputs.manifest.n_items
    rparts = inputs.queries.related_parts
    counts = np.array([rp.n_items for rp in rparts], dtype=np.int64)
    chosen = sample_parts(counts, config.max_users, config.sample_seed)
    appears = np.zeros(n_items, dtype=bool)
    lengths = []
    for part in range(len(rparts)) if chosen is None else chosen.tolist():
        rows = iter_related_run_part(s3, inputs, part, metric=config.index_metric, x=related_x)
        for _, items, _ in rows:
            lengths.append(items.size)
            appears[items] = True
    sizes = np.array(lengths)
    return {
        "related_x": related_x,
        "n_items": int(sizes.size),
        "mean_length": float(sizes.mean()) if sizes.size else 0.0,
        "full_share": float(np.mean(sizes == related_x)) if sizes.size else 0.0,
        "coverage": float(appears.mean()) if n_items else 0.0,
        "sample": {"parts_read": len(rparts) if chosen is None else int(chosen.size), "n_parts": len(rparts)},
    }


def published_metrics(
    s3: S3Client, dynamodb: DynamoDBClient | None, table_name: str | None, bucket: str, run_id: str
) -> tuple[dict | None, str | None]:
    """Metrics of the run readers currently get (pointer item; its metrics.json as a fallback)."""
    if dynamodb is None or not table_name:
        return None, None
    pointer = table.read_pointer(dynamodb, table_name)
    if pointer is None:
        return None, None
    current = pointer["run_id"]
    if current == run_id:  # re-evaluating the published run: compare with the one before it
        current = pointer.get("previous_run_id")
        pointer = {}
        if not current:
            return None, None
    metrics = pointer.get("metrics")
    if not metrics:
        try:
            metrics = get_json(s3, bucket, metrics_key(current)).get("model")
        except (InputError, AttributeError):
            metrics = None
    return metrics, current


def put_cloudwatch(cloudwatch: CloudWatchClient, config: EvaluateConfig, run_id: str, doc: dict) -> None:
    base: list[DimensionTypeDef] = [
        {"Name": k, "Value": v} for k, v in sorted(config.cloudwatch_dimensions.items())
    ]
    data: list[MetricDatumTypeDef] = [
        {
            "MetricName": f"{name}_at_x",
            "Dimensions": [*base, {"Name": "Variant", "Value": variant}],
            "Value": float(value),
            "Unit": "None",
        }
        for variant in ("model", "baseline")
        for name, value in doc[variant].items()
        if value is not None and math.isfinite(value)
    ]
    for start in range(0, len(data), 1000):  # PutMetricData takes at most 1000 values per call
        cloudwatch.put_metric_data(
            Namespace=config.cloudwatch_namespace, MetricData=data[start : start + 1000]
        )


def evaluate_run(
    *,
    s3: S3Client,
    bucket: str,
    event: dict | RunResultsEvent,
    config: EvaluateConfig,
    dynamodb: DynamoDBClient | None = None,
    table_name: str | None = None,
    cloudwatch: CloudWatchClient | None = None,
) -> dict:
    inputs = load_inputs(s3, bucket, event, with_ids=False)  # indices only: no id strings held
    m = inputs.manifest
    holdout_key = m.file_key("holdout")
    holdout = load_csr(
        get_bytes(s3, bucket, holdout_key), name=holdout_key, n_users=m.n_users, n_items=m.n_items
    )
    popularity = load_popularity(s3, bucket, m.file_key("popularity"), n_items=m.n_items)
    qparts = inputs.queries.parts
    eligible = holdout.row_lengths() > 0
    counts = part_counts(
        eligible,
        np.array([qp.first_user for qp in qparts], dtype=np.int64),
        np.array([qp.n_users for qp in qparts], dtype=np.int64),
    )
    parts = sample_parts(counts, config.max_users, config.sample_seed)
    model_acc, n_filled = model_metrics(s3, inputs, holdout, config, popularity=popularity, parts=parts)
    users, clusters = (None, None) if parts is None else sampled_users(inputs, holdout, parts)
    baseline_acc = baseline_accumulator(
        popularity, inputs.seen, holdout, x=config.x, users=users, clusters=clusters
    )
    model, baseline, n_eval = model_acc.result(), baseline_acc.result(), model_acc.n_users
    published, published_run = published_metrics(s3, dynamodb, table_name, bucket, inputs.run_id)
    protocols = cold.protocol_metrics(s3, inputs, config, popularity)  # cold_users / cold_items (0018)
    checks = gate.check(config, model, baseline, published, published_run) + gate.cold_checks(
        config, protocols
    )
    passed = all(c["passed"] for c in checks)
    lift = {
        k: (model[k] / baseline[k] if baseline[k] and not math.isnan(baseline[k]) else None) for k in model
    }
    doc: dict[str, Any] = {
        "run_id": inputs.run_id,
        "x": config.x,
        "index_metric": config.index_metric,
        "n_users": m.n_users,
        "n_items": m.n_items,
        "n_eval_users": n_eval,  # users scored: with at least one held-out interaction, sampled
        "sample": {
            "max_users": config.max_users,
            "seed": config.sample_seed,
            "n_eligible": int(counts.sum()),
            "sampled": parts is not None,
            "parts_read": len(qparts) if parts is None else int(parts.size),
            "n_parts": len(qparts),
        },
        "ci95": {
            "method": (
                "cluster sample of transform parts: ratio estimator over parts, "
                "r ± 1.96 √(Σ(y_p − r m_p)² / (n (n − 1) m̄²))"
                if parts is not None
                else "normal approximation over per-user values: mean ± 1.96 s/√n"
            ),
            "model": model_acc.intervals(),
            "baseline": baseline_acc.intervals(),
        },
        "users_filled": n_filled,  # lists topped up from the most popular unseen items
        "transform_output": output_bytes(s3, inputs),
        "model": _json_safe(model),
        "baseline": _json_safe(baseline),
        "lift_vs_baseline": lift,
        "published": {"run_id": published_run, "metrics": published},
        "gate": {"passed": passed, "checks": [_json_safe(c) for c in checks]},
    }
    related = related_metrics(s3, inputs, config)
    if related is not None:
        doc["related"] = related
    doc |= protocols
    key = metrics_key(inputs.run_id)
    put_json(s3, bucket, key, doc)
    if config.cloudwatch_namespace and cloudwatch is not None:
        put_cloudwatch(cloudwatch, config, inputs.run_id, doc)
    if not passed:
        raise GateFailedError(gate.failure_message(inputs.run_id, config.x, checks))
    return EvaluateResult(
        metrics_key=key, passed=True, model=doc["model"], baseline=doc["baseline"]
    ).to_json()


def _json_safe(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}
