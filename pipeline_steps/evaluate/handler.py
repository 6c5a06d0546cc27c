"""Lambda handler of the evaluate step (thin: env + event -> core)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

from pipeline_steps.common.config import env_config, require_env
from pipeline_steps.common.events import RunResultsEvent
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.evaluate.core import evaluate_run

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    bucket = require_env("BUCKET_NAME")
    config: EvaluateConfig = env_config(EvaluateConfig)
    table = os.environ.get("TABLE_NAME") or None
    result = evaluate_run(
        s3=boto3.client("s3"),
        bucket=bucket,
        event=RunResultsEvent.parse(event),
        config=config,
        dynamodb=boto3.client("dynamodb") if table else None,
        table_name=table,
        cloudwatch=boto3.client("cloudwatch") if config.cloudwatch_namespace else None,
    )
    log.info(json.dumps({"step": "evaluate", **result}))
    return result
