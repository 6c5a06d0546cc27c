"""A SageMaker Processing job of the Spark prepare, run locally on PySpark `local[*]` (decision 0016).

What SageMaker does for the job, minus the cluster: the S3Prefix ProcessingInputs are downloaded
(with the job's S3 client, i.e. its role) to a temporary directory standing for /opt/ml/processing,
and the application runs with the request's `Environment` and `ContainerArguments`. The application
is this repository's `pipeline_steps.prepare.spark_job` (the file the `code` input holds in AWS); the
`code` and `package` inputs are therefore not downloaded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

from pipeline_steps.prepare import spark_job

SPARK_REPOSITORY = "sagemaker-spark-processing"
_CODE_INPUTS = ("code", "package")


def run_processing_job(request: dict[str, Any], *, s3: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """{"ProcessingJobStatus": "Completed"} or {"ProcessingJobStatus": "Failed", "FailureReason": ...}."""
    app = request["AppSpecification"]
    repository = app["ImageUri"].rsplit("/", 1)[-1].split(":", 1)[0]
    entrypoint = app.get("ContainerEntrypoint") or []
    if repository != SPARK_REPOSITORY or entrypoint[:1] != ["smspark-submit"]:
        return _failed(f"only the Spark prepare runs locally; got image {app['ImageUri']} / {entrypoint}")
    with tempfile.TemporaryDirectory(prefix="processing-") as root:
        local = {}
        for item in request.get("ProcessingInputs", []):
            if item["InputName"] in _CODE_INPUTS:
                continue
            s3_input = item["S3Input"]
            target = os.path.join(root, s3_input["LocalPath"].lstrip("/"))
            count = _download(s3, s3_input["S3Uri"], target)
            log(f"input {item['InputName']}: {count} object(s) from {s3_input['S3Uri']}")
            local[s3_input["LocalPath"]] = target
        argv = list(app.get("ContainerArguments") or [])
        argv += ["--input-dir", local.get(spark_job.INPUT_DIR, os.path.join(root, "data"))]
        argv += ["--test-dir", local.get(spark_job.TEST_DIR, os.path.join(root, "test"))]
        spark_job.main(argv, s3_client=s3, master="local[*]", environ=dict(request.get("Environment") or {}))
    return {"ProcessingJobStatus": "Completed"}


def _failed(reason: str) -> dict[str, Any]:
    return {"ProcessingJobStatus": "Failed", "FailureReason": reason}


def _download(s3: Any, uri: str, target: str) -> int:
    """Every object under the prefix, at its path after the prefix (as ProcessingS3Input S3Prefix)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    count = 0
    os.makedirs(target, exist_ok=True)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix) :].lstrip("/") or os.path.basename(obj["Key"])
            path = os.path.join(target, rest)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, obj["Key"], path)
            count += 1
    return count
