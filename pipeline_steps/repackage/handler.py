"""Lambda handler of the repackage step (thin: env + event -> core)."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3

from pipeline_steps.common.config import env_config, require_env
from pipeline_steps.common.events import RepackageEvent
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.repackage.core import repackage

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    bucket, config = require_env("BUCKET_NAME"), env_config(RepackageConfig)
    result = repackage(s3=boto3.client("s3"), bucket=bucket, event=RepackageEvent.parse(event), config=config)
    log.info(json.dumps({"step": "repackage", **result}))
    return result
