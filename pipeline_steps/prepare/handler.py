"""Lambda entry point of the prepare step.

Event `{"run_id": "..."}`; environment `BUCKET_NAME`, `STEP_CONFIG` (JSON of `PrepareConfig`).
Returns `{"run_id", "manifest_key", "train_s3_uri", "test_s3_uri", "feature_dim" (str), "n_users",
"n_items", "train_rows", "test_rows"}` (docs/contracts.md). Safe to retry: a completed run is reused.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from pipeline_steps.common.config import require_env, step_config_json
from pipeline_steps.common.events import PrepareEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare, step_output
from pipeline_steps.prepare.storage import S3Storage

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client

logging.getLogger().setLevel(logging.INFO)
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def handler(
    event: dict[str, Any], context: object = None, *, s3_client: S3Client | None = None
) -> dict[str, Any]:
    run_id = PrepareEvent.parse(event).run_id
    if not _RUN_ID.match(run_id):
        raise ValueError(f"event.run_id must match {_RUN_ID.pattern}, got {run_id!r}")
    bucket = require_env("BUCKET_NAME")
    config = PrepareConfig.from_dict(step_config_json(), where="STEP_CONFIG")
    storage = S3Storage(bucket, s3_client)
    layout = RunLayout(run_id)
    if config.engine == "spark" and storage.read_bytes(layout.manifest) is None:
        # The Spark processing job before this state writes the run (spark_job.py); this Lambda
        # only returns its result (the reuse below), it never prepares the data itself.
        raise RuntimeError(
            f"engine 'spark': no {layout.manifest} in {bucket}; the Spark processing job did not complete"
        )
    manifest = prepare(
        config, source=storage, sink=storage, run_id=run_id, out_prefix=layout.prepared, bucket=bucket
    )
    return step_output(manifest, storage, layout.manifest)
