"""One local run end to end: deploy, upload, execute, then read results the way a consumer would."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline_steps.common.layout import RunLayout
from pipeline_steps.local.deploy import Deployment
from pipeline_steps.local.progress import ExecutionResult, Watcher, watch

Log = Callable[[str], None]


@dataclass
class RunOutcome:
    """One execution and what it left behind (pointer, metrics) for the report."""

    run_id: str
    result: ExecutionResult
    pointer: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    fm_metrics: dict[str, float] = field(default_factory=dict)
    report_html: bytes | None = None  # the report state's page (runs/<id>/report/index.html)


_watcher: Watcher | None = None


def _set_watcher(watcher: Watcher | None) -> None:
    global _watcher
    _watcher = watcher


def flush_progress() -> None:
    """Print the states that started since the last poll (called before a local job's log line)."""
    watcher = _watcher
    if watcher is not None:
        # Display only: a job must never fail because its progress could not print.
        with contextlib.suppress(Exception):
            watcher.poll()


def new_run_id(prefix: str = "local") -> str:
    # The execution name is the run id (S3 prefix runs/<run_id>/) and part of the SageMaker names
    # (`<project>-<run id part>-<hash>-knn`, max 63 chars): keep it short, valid and unique.
    return f"{prefix}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{int(time.monotonic() * 1000) % 1000:03d}"


def upload_inputs(
    aws: Any, dep: Deployment, ratings: list[Path], test: list[Path], *, log: Log = print
) -> None:
    """Put the interaction files under the prefixes the deployed prepare step reads."""
    config = dep.step_config("prepare")
    input_prefix = config.get("input_prefix", "input/")
    test_prefix = config.get("test_prefix", "")
    if test and not test_prefix:
        raise ValueError("a test file was given but the deployed prepare config has no test_prefix")
    s3 = aws.client("s3")
    for prefix, files in ((input_prefix, ratings), (test_prefix, test)):
        for path in files:
            key = f"{prefix}{path.name}"
            s3.upload_file(str(path), dep.bucket, key)
            log(f"  uploaded {path} -> s3://{dep.bucket}/{key} ({path.stat().st_size:,} bytes)")


def put_objects(aws: Any, dep: Deployment, uploads: list[tuple[str, Path]], *, log: Log = print) -> None:
    """Put local files at the given keys (filter objects the deployed config names)."""
    s3 = aws.client("s3")
    for key, path in uploads:
        s3.upload_file(str(path), dep.bucket, key)
        log(f"  uploaded {path} -> s3://{dep.bucket}/{key} ({path.stat().st_size:,} bytes)")


def _get_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def _get_bytes(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def read_pointer(aws: Any, dep: Deployment) -> dict[str, Any] | None:
    from pipeline_steps.common.table import POINTER_KEY, plain

    item = aws.client("dynamodb").get_item(TableName=dep.table, Key=POINTER_KEY).get("Item")
    return plain(item) if item else None


def guard_names(sfn: Any, execution_arn: str) -> dict[str, Any]:
    """The guard's result (`$.run`: run id, SageMaker job and model names) from the history."""
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    for event in events:
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == "Guard":
            return json.loads(details.get("output") or "{}").get("run", {})
    return {}


def fm_final_metrics(aws: Any, fm_job_name: str) -> dict[str, float]:
    """The FM job's FinalMetricDataList, read back from the (emulated) SageMaker API."""
    if not fm_job_name:
        return {}
    try:
        desc = aws.client("sagemaker").describe_training_job(TrainingJobName=fm_job_name)
    except Exception:
        return {}
    return {m["MetricName"]: float(m["Value"]) for m in desc.get("FinalMetricDataList", [])}


def execute(
    aws: Any, dep: Deployment, *, run_id: str, execution_input: dict[str, Any] | None = None, log: Log = print
) -> RunOutcome:
    """Start one execution of the deployed state machine, follow it, collect its outputs."""
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=dep.state_machine_arn, name=run_id, input=json.dumps(execution_input or {})
    )["executionArn"]
    log(f"execution {run_id} started")
    result = watch(sfn, arn, log=log, on_start=_set_watcher)
    log(f"execution {run_id}: {result.status} in {result.total_seconds:.1f}s")
    s3 = aws.client("s3")
    outcome = RunOutcome(run_id=run_id, result=result, pointer=read_pointer(aws, dep))
    layout = RunLayout(run_id)
    outcome.metrics = _get_json(s3, dep.bucket, layout.metrics)
    outcome.manifest = _get_json(s3, dep.bucket, layout.manifest)
    outcome.report_html = _get_bytes(s3, dep.bucket, layout.report_html)
    # SageMaker names are namespaced (docs/state-machine.md "Run id and job names"): ask the guard.
    outcome.fm_metrics = fm_final_metrics(aws, guard_names(sfn, arn).get("fm_job_name", ""))
    return outcome


def query_users(dep: Deployment, aws: Any, users: list[str]) -> list[dict[str, Any]]:
    """Users' current top x through the project's read path (`pipeline_steps.query`)."""
    from pipeline_steps.query import get_recommendations

    client = aws.client("dynamodb")
    return [get_recommendations(u, table_name=dep.table, dynamodb=client, cache_ttl=0) for u in users]


def notifications(dep: Deployment, aws: Any) -> list[dict[str, Any]]:
    """Messages published to the deployed topics (moto records them; no subscriber needed)."""
    from moto.sns.models import sns_backends

    backend = sns_backends[aws.account_id][aws.region]
    out = []
    for arn in dep.topics:
        topic = backend.topics.get(arn)
        for message_id, message, subject, *_ in topic.sent_notifications if topic else []:
            out.append({"topic": arn, "message_id": message_id, "subject": subject, "message": message})
    return out
