"""Lambda handler of the repackage step (thin: env + event -> core)."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import boto3

from pipeline_steps.publish.runio import InputError, env_config
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import repackage

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def handler(event: dict, context: Any = None) -> dict:
    try:
        bucket = os.environ["BUCKET_NAME"]
    except KeyError:
        raise InputError("environment variable BUCKET_NAME is not set") from None
    result = repackage(s3=boto3.client("s3"), bucket=bucket, event=event, config=env_config(RepackageConfig))
    log.info(json.dumps({"step": "repackage", **result}))
    return result
