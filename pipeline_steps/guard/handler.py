"""Guard Lambda: `{"execution_name", "execution_arn", "state_machine_arn", "start_time"}` ->
`{"skip": bool, "blocking_execution_arn", "run_id", "fm_job_name", "knn_job_name", "model_name",
"transform_job_name", "fm_output_s3_uri", "knn_output_s3_uri", "transform_output_s3_uri",
"transform_output_prefix"}`.

The state machine passes its context object (`$$.Execution.*`, `$$.StateMachine.Id`), so the function
needs no state machine ARN in its environment (that would be a CloudFormation cycle).
Environment: `BUCKET_NAME`, `PROJECT_NAME` (the first part of the SageMaker names, core.py).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from pipeline_steps.guard.core import GuardInputError, earlier_active_run, run_names

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

FIELDS = ("execution_name", "execution_arn", "state_machine_arn", "start_time")


def running_executions(sfn: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    paginator = sfn.get_paginator("list_executions")
    pages = paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    return [execution for page in pages for execution in page["executions"]]


def guard(event: dict[str, Any], *, bucket: str, project: str, sfn: Any) -> dict[str, Any]:
    missing = [name for name in FIELDS if not event.get(name)]
    if missing:
        raise GuardInputError(f"guard event lacks {missing}; got keys {sorted(event)}")
    blocking = earlier_active_run(
        running_executions(sfn, event["state_machine_arn"]),
        execution_arn=event["execution_arn"],
        start_time=event["start_time"],
    )
    result: dict[str, Any] = {"skip": blocking is not None, "blocking_execution_arn": blocking or ""}
    names = run_names(
        event["execution_name"],
        bucket,
        project=project,
        execution_arn=event["execution_arn"],
        start_time=event["start_time"],
    )
    return result | names


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    import boto3  # lazily: tests and the local runner patch the endpoint first

    result = guard(
        event,
        bucket=os.environ["BUCKET_NAME"],
        project=os.environ["PROJECT_NAME"],
        sfn=boto3.client("stepfunctions"),
    )
    log.info(json.dumps({"step": "guard", "result": result}))
    return result
