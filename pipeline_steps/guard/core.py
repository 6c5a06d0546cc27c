"""Pure logic of the guard step: run id and SageMaker names of a run, and the skip rule.

Run id (the S3 prefix `runs/<run_id>/`): the execution name itself when it is letters, digits and
inner dashes of at most MAX_RUN_ID chars, else a deterministic rewrite: invalid characters -> '-',
trimmed to PREFIX_LEN chars, plus '-' and the first 8 hex digits of the SHA-256 of the full
execution name (Step Functions execution names allow up to 80 characters including `_`).

SageMaker names (training jobs, models, transform jobs) must match `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`
and are unique per account and region for ever, across deployments: a job name cannot be reused
even after the job ended (CreateTrainingJob: "The name must be unique within an Amazon Web Services
Region in an Amazon Web Services account",
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html). The execution
name alone is not: it is unique per state machine for 90 days only (StartExecution: "Names can be
reused after 90 days", https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html),
another deployment of the project has its own state machine, and a hand-started `manual-<date>` can
come back. So each name is `<project>-<run id part>-<h><suffix>`, where
h = the first 8 hex digits of SHA-256(execution ARN + "|" + start time): the ARN names the state
machine (hence the deployment), the start time separates a name reused later. Both are fixed for an
execution, so a retried state and a redriven execution (same ARN, RedriveExecution API) get the same
names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pipeline_steps.common.errors import InputError
from pipeline_steps.common.layout import RunLayout

MAX_JOB_NAME = 63
SUFFIXES = {"fm_job_name": "-fm", "knn_job_name": "-knn", "model_name": "-knn", "transform_job_name": "-tr"}
LONGEST_SUFFIX = max(len(s) for s in SUFFIXES.values())  # 4
MAX_RUN_ID = MAX_JOB_NAME - LONGEST_SUFFIX  # 59
HASH_LEN = 8
PREFIX_LEN = MAX_RUN_ID - HASH_LEN - 1  # 50
PROJECT_LEN = 16  # the project part of SageMaker names
_VALID = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")


class GuardInputError(InputError):
    """The guard's event lacks a field the state machine must pass."""


def _sanitise(text: str) -> str:
    """Runs of characters SageMaker names do not allow -> one '-', none at either end."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


def run_id_for(execution_name: str) -> str:
    if not execution_name:
        raise GuardInputError("execution_name is empty")
    if len(execution_name) <= MAX_RUN_ID and _VALID.match(execution_name):
        return execution_name
    digest = hashlib.sha256(execution_name.encode("utf-8")).hexdigest()[:HASH_LEN]
    cleaned = _sanitise(execution_name)[:PREFIX_LEN].rstrip("-")
    return f"{cleaned}-{digest}" if cleaned else f"run-{digest}"


def project_prefix(project: str) -> str:
    """The project name as a SageMaker name part: invalid characters -> '-', at most PROJECT_LEN chars."""
    return _sanitise(project)[:PROJECT_LEN].rstrip("-") or "topx"


def execution_hash(execution_arn: str, start_time: Any) -> str:
    """8 hex digits naming one execution for ever: its ARN (state machine, hence deployment) + start."""
    if not execution_arn or not start_time:
        raise GuardInputError("execution_arn and start_time are needed to name SageMaker resources")
    return hashlib.sha256(f"{execution_arn}|{start_time}".encode()).hexdigest()[:HASH_LEN]


def sagemaker_base(run_id: str, *, project: str, execution_arn: str, start_time: Any) -> str:
    """`<project>-<run id part>-<h>`: with the longest suffix ("-knn") still <= MAX_JOB_NAME chars."""
    prefix = project_prefix(project)
    room = MAX_JOB_NAME - LONGEST_SUFFIX - len(prefix) - HASH_LEN - 2  # two '-' separators; >= 33
    run_part = _sanitise(run_id)[:room].rstrip("-") or "run"
    return f"{prefix}-{run_part}-{execution_hash(execution_arn, start_time)}"


def run_names(
    execution_name: str, bucket: str, *, project: str, execution_arn: str, start_time: Any
) -> dict[str, str]:
    """run_id, the SageMaker names and the S3 output locations of one run (contracts.md layout)."""
    run_id = run_id_for(execution_name)
    layout = RunLayout(run_id)
    base = sagemaker_base(run_id, project=project, execution_arn=execution_arn, start_time=start_time)
    names = {"run_id": run_id, **{key: base + suffix for key, suffix in SUFFIXES.items()}}
    names |= {
        "fm_output_s3_uri": f"s3://{bucket}/{layout.fm}",
        "knn_output_s3_uri": f"s3://{bucket}/{layout.knn_model}",
        "transform_output_s3_uri": f"s3://{bucket}/{layout.transform}",
        "transform_output_prefix": layout.transform,  # the transform output prefix
    }
    return names


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def earlier_active_run(
    running: Iterable[Mapping[str, Any]], *, execution_arn: str, start_time: Any
) -> str | None:
    """ARN of a RUNNING execution that started before this one (ties broken by ARN), else None.

    Ordering by (start time, ARN) makes two executions started together agree on which one goes on:
    the later one skips, the earliest proceeds, so a schedule tick during a long run is a no-op.
    """
    mine = (_when(start_time), execution_arn)
    for execution in running:
        arn = execution["executionArn"]
        if arn != execution_arn and (_when(execution["startDate"]), arn) < mine:
            return arn
    return None
