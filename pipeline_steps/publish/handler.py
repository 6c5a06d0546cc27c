"""Lambda handlers of the publish step (thin: parse env + event, build clients, call the core).

`handler`: every part then the pointer flip (default state machine).
`part_handler` / `finalize_handler`: one query part per Map iteration (event adds "part": int),
then the flip once all parts are written.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3

from pipeline_steps.common.config import env_config, require_env
from pipeline_steps.common.errors import InputError
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def _env() -> tuple[str, str, PublishConfig]:
    return require_env("BUCKET_NAME"), require_env("TABLE_NAME"), env_config(PublishConfig)


def handler(event: dict, context: Any = None) -> dict:
    bucket, table, config = _env()
    result = core.publish_run(
        s3=boto3.client("s3"),
        dynamodb=boto3.client("dynamodb"),
        bucket=bucket,
        table_name=table,
        event=event,
        config=config,
    )
    log.info(json.dumps({"step": "publish", **result}))
    return {
        "run_id": result["run_id"],
        "users_written": result["users_written"],
        "pointer": result["pointer"],
    }


def part_handler(event: dict, context: Any = None) -> dict:
    bucket, table, config = _env()
    part = event.get("part")
    if not isinstance(part, int) or isinstance(part, bool):
        raise InputError(f"event field 'part' must be an integer, got {part!r}")
    s3 = boto3.client("s3")
    inputs = core.load_inputs(s3, bucket, event)
    result = core.publish_part(
        s3=s3, dynamodb=boto3.client("dynamodb"), table_name=table, inputs=inputs, part=part, config=config
    )
    log.info(json.dumps({"step": "publish_part", **result}))
    return result


def finalize_handler(event: dict, context: Any = None) -> dict:
    bucket, table, config = _env()
    s3 = boto3.client("s3")
    inputs = core.load_inputs(s3, bucket, event)
    flipped = core.finalize(
        s3=s3, dynamodb=boto3.client("dynamodb"), table_name=table, inputs=inputs, config=config
    )
    log.info(json.dumps({"step": "publish_finalize", **flipped}))
    return {
        "run_id": flipped["run_id"],
        "users_written": flipped["users_written"],
        "pointer": flipped["run_id"],
    }
