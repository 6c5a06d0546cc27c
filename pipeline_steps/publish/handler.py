"""Lambda handlers of the publish step (thin: parse env + event, build clients, call the core).

`handler`: every part then the pointer flip (default state machine).
`part_handler` / `finalize_handler`: one range of query parts per Map iteration (event adds
"first_part", "last_part": ints, both included; common/batches.py), then the flip once all parts are
written.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3

from pipeline_steps.common.config import env_config, require_env
from pipeline_steps.common.events import PublishPartsEvent, PublishResult, RunResultsEvent
from pipeline_steps.common.slices import load_range_inputs
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


def _env() -> tuple[str, str, PublishConfig]:
    return require_env("BUCKET_NAME"), require_env("TABLE_NAME"), env_config(PublishConfig)


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    bucket, table, config = _env()
    result = core.publish_run(
        s3=boto3.client("s3"),
        dynamodb=boto3.client("dynamodb"),
        bucket=bucket,
        table_name=table,
        event=RunResultsEvent.parse(event),
        config=config,
    )
    log.info(json.dumps({"step": "publish", **result}))
    return PublishResult(
        run_id=result["run_id"], users_written=result["users_written"], pointer=result["pointer"]
    ).to_json()


def part_handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    bucket, table, config = _env()
    ev = PublishPartsEvent.parse(event)
    s3 = boto3.client("s3")
    # once for the whole range: the run's items, and only this range's users (common/slices.py)
    inputs, parts = load_range_inputs(s3, bucket, ev)
    results = core.publish_parts(
        s3=s3, dynamodb=boto3.client("dynamodb"), table_name=table, inputs=inputs, parts=parts, config=config
    )
    for result in results:
        log.info(json.dumps({"step": "publish_part", **result}))
    return {
        "first_part": ev.first_part,
        "last_part": ev.last_part,
        **{
            name: sum(r[name] for r in results)
            for name in ("users_written", "related_written", "requests", "throttled_requests")
        },
    }


def finalize_handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    bucket, table, config = _env()
    s3 = boto3.client("s3")
    inputs = core.finalize_inputs(s3, bucket, RunResultsEvent.parse(event))
    flipped = core.finalize(
        s3=s3, dynamodb=boto3.client("dynamodb"), table_name=table, inputs=inputs, config=config
    )
    log.info(json.dumps({"step": "publish_finalize", **flipped}))
    return PublishResult(
        run_id=flipped["run_id"], users_written=flipped["users_written"], pointer=flipped["run_id"]
    ).to_json()
