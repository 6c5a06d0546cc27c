"""Evaluate (the gate): model vs most-popular baseline on the holdout; metrics JSON; fail if too low.

Event: {"run_id", "manifest_key", "queries_manifest_key", "transform_output_s3_uri"}.
Returns {"metrics_key", "passed": true, "model": {...}, "baseline": {...}} or raises GateFailedError
(after writing the metrics JSON, so a failed run can be inspected).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.common.events import EvaluateResult, RunResultsEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.ranking import iter_related_run_part, iter_run_part
from pipeline_steps.common.runio import (
    InputError,
    RunInputs,
    get_bytes,
    get_json,
    load_csr,
    load_inputs,
    load_popularity,
    put_json,
)
from pipeline_steps.evaluate import gate
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.metrics import MetricAccumulator, baseline_metrics

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef, MetricDatumTypeDef
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

GateFailedError = gate.GateFailedError


def metrics_key(run_id: str) -> str:
    return RunLayout(run_id).metrics


def model_metrics(s3: S3Client, inputs: RunInputs, holdout: Any, config: EvaluateConfig) -> tuple[dict, int]:
    acc = MetricAccumulator(x=config.x, n_items=inputs.manifest.n_items)
    for part in range(len(inputs.queries.parts)):
        for u, items, _ in iter_run_part(s3, inputs, part, metric=config.index_metric, x=config.x):
            acc.add(items, holdout.row(u))
    return acc.result(), acc.n_users


def related_metrics(s3: Any, inputs: RunInputs, config: EvaluateConfig) -> dict[str, Any] | None:
    """Generic checks of the related-item lists (no genres in AWS): length and catalog coverage.

    `mean_length` and `full_share` (lists of exactly related_x) show whether k left enough
    neighbours after dropping the item itself; `coverage` is the share of the catalog that appears
    in some related list (a list of popular items everywhere would cover little).
    """
    if not inputs.related_out_keys:
        return None
    related_x, n_items = inputs.queries.related_x, inputs.manifest.n_items
    appears = np.zeros(n_items, dtype=bool)
    lengths = []
    for part in range(len(inputs.related_out_keys)):
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
    inputs = load_inputs(s3, bucket, event)
    m = inputs.manifest
    holdout_key = m.file_key("holdout")
    holdout = load_csr(
        get_bytes(s3, bucket, holdout_key), name=holdout_key, n_users=m.n_users, n_items=m.n_items
    )
    popularity = load_popularity(s3, bucket, m.file_key("popularity"), n_items=m.n_items)
    model, n_eval = model_metrics(s3, inputs, holdout, config)
    baseline, _ = baseline_metrics(popularity, inputs.seen, holdout, x=config.x)
    published, published_run = published_metrics(s3, dynamodb, table_name, bucket, inputs.run_id)
    checks = gate.check(config, model, baseline, published, published_run)
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
        "n_eval_users": n_eval,  # users with at least one held-out interaction
        "model": _json_safe(model),
        "baseline": _json_safe(baseline),
        "lift_vs_baseline": lift,
        "published": {"run_id": published_run, "metrics": published},
        "gate": {"passed": passed, "checks": [_json_safe(c) for c in checks]},
    }
    related = related_metrics(s3, inputs, config)
    if related is not None:
        doc["related"] = related
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
