"""Pure logic of the guard step: run id and job names from the execution name, and the skip rule.

SageMaker job, model and transform names must match `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}` (63 chars at
most, no underscores), while Step Functions execution names allow up to 80 characters including `_`.
The run id is therefore the execution name itself when it already fits (letters, digits and inner
dashes, at most MAX_RUN_ID chars, so that `<run_id>-knn` is <= 63), else a deterministic rewrite:
invalid characters -> '-', trimmed to PREFIX_LEN chars, plus '-' and the first 8 hex digits of the
SHA-256 of the full execution name. The same execution name always yields the same run id, so a
retried state reuses its job names, and two different names practically never collide.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

MAX_JOB_NAME = 63
SUFFIXES = {"fm_job_name": "-fm", "knn_job_name": "-knn", "model_name": "-knn", "transform_job_name": "-tr"}
MAX_RUN_ID = MAX_JOB_NAME - max(len(s) for s in SUFFIXES.values())  # 59
HASH_LEN = 8
PREFIX_LEN = MAX_RUN_ID - HASH_LEN - 1  # 50
_VALID = re.compile(r"^[A-Za-z0-9](-*[A-Za-z0-9])*$")


class GuardInputError(ValueError):
    """The guard's event lacks a field the state machine must pass."""


def run_id_for(execution_name: str) -> str:
    if not execution_name:
        raise GuardInputError("execution_name is empty")
    if len(execution_name) <= MAX_RUN_ID and _VALID.match(execution_name):
        return execution_name
    digest = hashlib.sha256(execution_name.encode("utf-8")).hexdigest()[:HASH_LEN]
    cleaned = re.sub(r"[^A-Za-z0-9]+", "-", execution_name).strip("-")[:PREFIX_LEN].rstrip("-")
    return f"{cleaned}-{digest}" if cleaned else f"run-{digest}"


def run_names(execution_name: str, bucket: str) -> dict[str, str]:
    """run_id, the SageMaker names and the S3 output locations of one run (contracts.md layout)."""
    run_id = run_id_for(execution_name)
    root = f"s3://{bucket}/runs/{run_id}"
    names = {"run_id": run_id, **{key: run_id + suffix for key, suffix in SUFFIXES.items()}}
    names |= {
        "fm_output_s3_uri": f"{root}/fm/",
        "knn_output_s3_uri": f"{root}/knn/model/",
        "transform_output_s3_uri": f"{root}/transform/",
        "transform_output_prefix": f"runs/{run_id}/transform/",  # S3 listing of the publish fan-out
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
