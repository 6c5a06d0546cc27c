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
from typing import TYPE_CHECKING, Any

from pipeline_steps.common.events import GuardEvent, GuardResult
from pipeline_steps.guard.core import GuardInputError, earlier_active_run, run_names

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_stepfunctions.type_defs import ExecutionListItemTypeDef

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def running_executions(sfn: SFNClient, state_machine_arn: str) -> list[ExecutionListItemTypeDef]:
    paginator = sfn.get_paginator("list_executions")
    pages = paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING")
    return [execution for page in pages for execution in page["executions"]]


def guard(event: dict[str, Any], *, bucket: str, project: str, sfn: SFNClient) -> dict[str, Any]:
    ev = GuardEvent.parse(event, error=GuardInputError)
    blocking = earlier_active_run(
        running_executions(sfn, ev.state_machine_arn),
        execution_arn=ev.execution_arn,
        start_time=ev.start_time,
    )
    names = run_names(
        ev.execution_name, bucket, project=project, execution_arn=ev.execution_arn, start_time=ev.start_time
    )
    return GuardResult(skip=blocking is not None, blocking_execution_arn=blocking or "", **names).to_json()


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    import boto3  # lazily: tests and the local runner patch the endpoint first

    result = guard(
        event,
        bucket=os.environ["BUCKET_NAME"],
        project=os.environ["PROJECT_NAME"],
        sfn=boto3.client("stepfunctions"),
    )
    log.info(json.dumps({"step": "guard", "result": result}))
    return result
