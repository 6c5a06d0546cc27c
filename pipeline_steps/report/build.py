"""Gather a run's artefacts (S3, DynamoDB, SageMaker, Step Functions), compute the figures, write
the page: `runs/<id>/report/index.html` and its data `runs/<id>/report/report.json`.

This run's own outputs (manifest, holdout, transform output, evaluation) are required: without them
there is nothing to report and the step fails (the state machine's Catch notifies; the published
run stays current). The rest is optional and each missing part is named in `notes`: an earlier run
whose files expired, an FM job whose metrics cannot be read, an execution history not available.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.events import ReportEvent, ReportResult, RunResultsEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.ranking import iter_run_part
from pipeline_steps.common.runio import (
    RunInputs,
    get_bytes,
    get_json,
    load_csr,
    load_inputs,
    load_popularity,
    parse_s3_uri,
    put_json,
    s3_uri,
)
from pipeline_steps.report import core
from pipeline_steps.report.config import ReportConfig
from pipeline_steps.report.render import SECTIONS, render_html

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_stepfunctions import SFNClient

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Clients:
    """boto3 clients; None = that source is not read (e.g. the CLI without a table)."""

    s3: S3Client
    dynamodb: DynamoDBClient | None = None
    sagemaker: SageMakerClient | None = None
    stepfunctions: SFNClient | None = None
    cloudwatch: CloudWatchClient | None = None


@dataclass(frozen=True, kw_only=True)
class TopX:
    """A run's lists: item indices and scores per user index, best first, seen items dropped."""

    inputs: RunInputs
    items: list[np.ndarray]
    scores: np.ndarray

    def by_ids(self) -> dict[str, list[str]]:
        ids = self.inputs.items
        return {user: [ids[i] for i in self.items[u]] for u, user in enumerate(self.inputs.users)}


def run_event(bucket: str, run_id: str) -> RunResultsEvent:
    """Where any run's outputs are, from the run layout alone (docs/contracts.md)."""
    layout = RunLayout(run_id)
    return RunResultsEvent(
        run_id=run_id,
        manifest_key=layout.manifest,
        queries_manifest_key=layout.queries_manifest,
        transform_output_s3_uri=s3_uri(bucket, layout.transform),
    )


def load_top_x(s3: Any, bucket: str, event: RunResultsEvent, config: ReportConfig) -> TopX:
    inputs = load_inputs(s3, bucket, event)
    items: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * inputs.manifest.n_users
    scores: list[np.ndarray] = []
    for part in range(len(inputs.queries.parts)):
        for u, idx, sc in iter_run_part(s3, inputs, part, metric=config.index_metric, x=config.x):
            items[u] = idx
            scores.append(sc)
    return TopX(inputs=inputs, items=items, scores=np.concatenate(scores) if scores else np.empty(0))


def _optional(notes: list[str], what: str, read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception as exc:  # an optional section: the report says what is missing and why
        notes.append(f"{what}: not available ({type(exc).__name__}: {str(exc)[:300]})")
        return None


def fm_final_metrics(sagemaker: Any, job_name: str) -> dict[str, float]:
    desc = sagemaker.describe_training_job(TrainingJobName=job_name)
    return {m["MetricName"]: float(m["Value"]) for m in desc.get("FinalMetricDataList", [])}


def fm_output_metrics(s3: Any, model_s3_uri: str) -> dict[str, Any] | None:
    """`metrics.json` beside the FM's model.tar.gz (written by the local trainer; None when absent)."""
    bucket, key = parse_s3_uri(model_s3_uri, field="fm_model_s3_uri")
    try:
        doc = get_json(s3, bucket, posixpath.join(posixpath.dirname(key), "metrics.json"))
    except InputError:
        return None
    return doc if isinstance(doc, dict) else None


def execution_events(stepfunctions: Any, execution_arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = stepfunctions.get_execution_history(**kwargs)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _this_run(clients: Clients, bucket: str, event: ReportEvent, config: ReportConfig) -> dict[str, Any]:
    s3 = clients.s3
    run = load_top_x(s3, bucket, event, config)
    m = run.inputs.manifest
    holdout_key = m.file_key("holdout")
    holdout = load_csr(
        get_bytes(s3, bucket, holdout_key), name=holdout_key, n_users=m.n_users, n_items=m.n_items
    )
    consumed = load_popularity(s3, bucket, m.file_key("popularity"), n_items=m.n_items)
    quality = core.per_user_quality(run.items, [holdout.row(u) for u in range(m.n_users)], x=config.x)
    activity = run.inputs.seen.row_lengths()
    return {
        "top_x": run,
        "activity": core.activity_groups(activity, quality, bins=config.activity_bins),
        "coverage": core.coverage(core.recommendation_counts(run.items, m.n_items), consumed),
        "scores": core.score_summary(run.scores),
        "manifest": m.to_json(),
    }


def build_report(
    *, clients: Clients, bucket: str, table_name: str | None, event: ReportEvent, config: ReportConfig
) -> tuple[dict[str, Any], TopX]:
    """The report document (every figure's data) and this run's lists."""
    notes: list[str] = []
    here = _this_run(clients, bucket, event, config)
    run: TopX = here.pop("top_x")
    m = run.inputs.manifest
    evaluation = get_json(clients.s3, bucket, RunLayout(event.run_id).metrics)
    prepare_report = _optional(
        notes, "prepare report", lambda: get_json(clients.s3, bucket, m.file_key("report"))
    )
    runs: list[dict[str, Any]] = []
    if clients.dynamodb is not None and table_name:
        runs = _optional(notes, "run records", lambda: table.list_runs(clients.dynamodb, table_name)) or []
    else:
        notes.append("quality history: no table given")
    history = core.quality_history(runs, limit=config.history_runs, up_to=event.run_id)
    previous = core.previous_run(history, event.run_id)
    doc: dict[str, Any] = {
        "run_id": event.run_id,
        "x": config.x,
        "index_metric": config.index_metric,
        "evaluation": evaluation,
        "history": history,
        "previous_run_id": previous["run_id"] if previous else "",
        "ratio_metric": config.ratio_metric,
        "ratio_vs_previous": core.ratio(
            evaluation.get("model", {}), previous["metrics"] if previous else None, config.ratio_metric
        ),
        **here,
        "counts": {
            "n_users": m.n_users,
            "n_items": m.n_items,
            **m.counts,
            "bad_rows_by_reason": (prepare_report or {}).get("bad_rows_by_reason", {}),
        },
        "drift": None,
        "training": core.training_curve(
            _optional(notes, "FM metrics.json", lambda: fm_output_metrics(clients.s3, event.fm_model_s3_uri)),
            (
                _optional(
                    notes, "FM final metrics", lambda: fm_final_metrics(clients.sagemaker, event.fm_job_name)
                )
                if clients.sagemaker is not None and event.fm_job_name
                else None
            )
            or {},
        ),
        "stage_seconds": {},
        "notes": notes,
    }
    if previous is not None:
        before = _optional(
            notes,
            f"lists of the previous run {previous['run_id']}",
            lambda: load_top_x(clients.s3, bucket, run_event(bucket, previous["run_id"]), config),
        )
        if before is not None:
            doc["drift"] = core.drift(run.by_ids(), before.by_ids(), x=config.x)
    else:
        notes.append("drift: no earlier complete run to compare with")
    if clients.stepfunctions is not None and event.execution_arn:
        events = _optional(
            notes, "execution history", lambda: execution_events(clients.stepfunctions, event.execution_arn)
        )
        doc["stage_seconds"] = core.stage_seconds(events or [])
    return doc, run


def put_metrics(cloudwatch: Any, namespace: str, doc: dict[str, Any], *, ratio_metric: str) -> int:
    """The report's quality and drift metrics (few: one PutMetricData call, at most 1000 values,
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html)."""
    data = core.metric_data(doc, ratio_metric=ratio_metric)
    if data:
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data)
    return len(data)


def run_report(
    *, clients: Clients, bucket: str, table_name: str | None, event: ReportEvent, config: ReportConfig
) -> tuple[ReportResult, str]:
    """Build, render and store the report of one run; also put its metrics when a namespace is set.

    Returns the step result and the HTML (the CLI also writes it to a local file).
    """
    doc, _ = build_report(clients=clients, bucket=bucket, table_name=table_name, event=event, config=config)
    html = render_html(doc)
    layout = RunLayout(event.run_id)
    put_json(clients.s3, bucket, layout.report_data, doc)
    clients.s3.put_object(
        Bucket=bucket,
        Key=layout.report_html,
        Body=html.encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    if config.cloudwatch_namespace and clients.cloudwatch is not None:
        put_metrics(clients.cloudwatch, config.cloudwatch_namespace, doc, ratio_metric=config.ratio_metric)
    result = ReportResult(
        report_key=layout.report_html,
        previous_run_id=doc["previous_run_id"],
        sections=[name for name, _ in SECTIONS],
    )
    return result, html
