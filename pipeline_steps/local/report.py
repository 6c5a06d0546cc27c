"""What a local run shows and writes: sample recommendations, metrics vs baseline, report.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pipeline_steps.common.layout import RunLayout
from pipeline_steps.local.runner import RunOutcome

Log = Callable[[str], None]
SHOWN = ("precision", "recall", "ndcg", "map", "coverage")


def sample_users(outcome: RunOutcome, aws: Any, dep: Any, n: int) -> list[str]:
    """The first n users of the run's id map (original ids)."""
    if not outcome.manifest:
        return []
    key = outcome.manifest.get("files", {}).get("users", RunLayout(outcome.run_id).prepared_file("users"))
    users = json.loads(aws.client("s3").get_object(Bucket=dep.bucket, Key=key)["Body"].read())
    return [str(u) for u in users[:n]]


def print_recommendations(recs: list[dict[str, Any]], titles: dict[str, str], log: Log) -> None:
    for rec in recs:
        source = "popularity fallback" if rec.get("fallback") else f"run {rec['run_id']}"
        log(f"\ntop-{len(rec['items'])} for user {rec['user_id']} ({source}, via pipeline_steps.query):")
        for rank, item in enumerate(rec["items"], 1):
            title = titles.get(str(item["item_id"]), "")
            log(f"  {rank:2d}. {item['item_id']:>8}  {float(item['score']):8.4f}  {title}")


def print_metrics(outcome: RunOutcome, log: Log) -> None:
    doc = outcome.metrics
    if not doc:
        log("no evaluation metrics found")
        return
    model, base, x = doc.get("model", {}), doc.get("baseline", {}), doc.get("x", "x")
    log(f"\nevaluation on {doc.get('n_eval_users')} users with held-out items (@{x}):")
    log(f"  {'metric':<12}{'FM + k-NN':>12}{'most popular':>14}")
    for name in SHOWN:
        if name in model:
            log(f"  {name:<12}{model[name]:>12.4f}{base.get(name, float('nan')):>14.4f}")
    for name, value in sorted(outcome.fm_metrics.items()):
        log(f"  FM {name}: {value:.4f}")


def _metrics(values: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items()}


def build_report(
    *,
    outcome: RunOutcome,
    dataset: str,
    deploy_seconds: float,
    total_seconds: float,
    recommendations: list[dict[str, Any]],
    failure: dict[str, Any] | None,
    skipped: list[tuple[str, str, str]],
    synth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from pipeline_steps.local.adapter import MOTO_VERSION

    doc = outcome.metrics or {}
    manifest = outcome.manifest or {}
    metrics = _metrics(doc.get("model"))
    if metrics:
        metrics["x"] = doc.get("x")
        fm = outcome.fm_metrics
        metrics["fm_test"] = {k: v for k, v in fm.items() if k.startswith("test:")}
        metrics["fm_train"] = {k: v for k, v in fm.items() if k.startswith("train:")}
    report = {
        "run_id": outcome.run_id,
        "status": outcome.result.status,
        "error": outcome.result.error,
        "dataset": dataset,
        "counts": {
            "n_users": manifest.get("n_users"),
            "n_items": manifest.get("n_items"),
            "n_eval_users": doc.get("n_eval_users"),
            **manifest.get("counts", {}),
        },
        "metrics": metrics,
        "baseline": {**_metrics(doc.get("baseline")), "name": "most popular (unseen items)"} if doc else {},
        "gate": doc.get("gate"),
        "pointer": outcome.pointer,
        "recommendations_sample": recommendations,
        "stage_seconds": outcome.result.stage_seconds,
        "report_html": "report.html" if outcome.report_html else None,  # beside report.json
        "pipeline_seconds": outcome.result.total_seconds,
        "deploy_seconds": round(deploy_seconds, 3),  # synthesis (or cached assembly) + create stacks
        "synth": synth or {},
        "total_seconds": round(total_seconds, 3),
        "embedded_aws": {"moto": MOTO_VERSION, "not_emulated": [list(s) for s in skipped]},
    }
    if outcome.result.failures:
        report["failures"] = outcome.result.failures
    if failure is not None:
        report["failure_injection"] = failure
    return report
