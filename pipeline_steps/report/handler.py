"""Lambda handler of the report step (thin: env + event -> build.run_report).

The state machine runs it after Publish: the recommendations are already live, so a failure here
is caught by the Report state's Catch (SNS notification, then the execution still succeeds).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

from pipeline_steps.common.config import env_config, require_env
from pipeline_steps.common.events import ReportEvent
from pipeline_steps.report.build import Clients, run_report
from pipeline_steps.report.config import ReportConfig

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def clients(config: ReportConfig, *, with_table: bool) -> Clients:
    return Clients(
        s3=boto3.client("s3"),
        dynamodb=boto3.client("dynamodb") if with_table else None,
        sagemaker=boto3.client("sagemaker"),
        stepfunctions=boto3.client("stepfunctions"),
        cloudwatch=boto3.client("cloudwatch") if config.cloudwatch_namespace else None,
    )


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    bucket = require_env("BUCKET_NAME")
    config: ReportConfig = env_config(ReportConfig)
    table = os.environ.get("TABLE_NAME") or None
    result, _ = run_report(
        clients=clients(config, with_table=bool(table)),
        bucket=bucket,
        table_name=table,
        event=ReportEvent.parse(event),
        config=config,
    )
    out = result.to_json()
    log.info(json.dumps({"step": "report", **out}))
    return out
