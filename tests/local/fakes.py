"""Tiny fake handlers and jobs: they exercise the adapter's mechanics, not the project's steps."""

from __future__ import annotations

import json
import os
import time
from typing import Any

# The fixture app's transform TimeoutSeconds: the fake jobs answer at once, except a transform of a
# run named "run-timeout*" or "run-stopped*", which blocks until it is stopped.
TRANSFORM_TIMEOUT_SECONDS = 3


def echo_env(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns what a handler sees: its event, its environment variables, its context."""
    return {
        "event": event,
        "bucket": os.environ.get("BUCKET_NAME"),
        "step_config": json.loads(os.environ.get("STEP_CONFIG", "{}")),
        "function_name": context.function_name,
        "remaining_ms_positive": context.get_remaining_time_in_millis() > 0,
    }


class GateFailedError(Exception):
    """Same name as the evaluate step's error: the state machine can Catch it by name."""


def fail(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise GateFailedError(f"below the floor for {event.get('run_id')}")


def put_marker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Writes to S3 through AWS_ENDPOINT_URL, as every real step does."""
    import boto3

    key = f"runs/{event['run_id']}/marker.json"
    boto3.client("s3").put_object(Bucket=os.environ["BUCKET_NAME"], Key=key, Body=b"{}")
    return {"run_id": event["run_id"], "key": key}


def _bucket_key(uri: str) -> tuple[str, str]:
    """s3://bucket/key, or the path-style https://s3.<region>.<suffix>/bucket/key CDK's S3Location emits."""
    if uri.startswith("s3://"):
        bucket, key = uri[5:].split("/", 1)
        return bucket, key
    bucket, key = uri.split("://", 1)[1].split("/", 1)[1].split("/", 1)
    return bucket, key


class FakeAlgorithms:
    """Stands in for ``pipeline_steps.local_algorithms``: records requests, fails on demand."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.resolved_models: list[str] = []
        self.stopped: list[str] = []  # transform jobs that blocked until they were stopped

    def run_training_job(
        self, request: dict[str, Any], *, s3: Any = None, log: Any = print
    ) -> dict[str, Any]:
        self.requests.append(request)
        hp = request.get("HyperParameters", {})
        if hp.get("epochs") == "-1":
            return {"TrainingJobStatus": "Failed", "FailureReason": "ClientError: epochs must be positive"}
        log("epoch 1/1 loss 0.5")
        out = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        uri = f"{out}/{request['TrainingJobName']}/output/model.tar.gz"
        bucket, key = _bucket_key(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=b"model")
        return {
            "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": uri},
            "FinalMetricDataList": [{"MetricName": "test:rmse", "Value": 0.25}],
        }

    def run_transform_job(
        self, request: dict[str, Any], *, s3: Any = None, model_resolver: Any = None, log: Any = print
    ) -> dict[str, Any]:
        self.requests.append(request)
        self.resolved_models.append(model_resolver(request["ModelName"]))
        name = request["TransformJobName"]
        if name.startswith(("run-timeout", "run-stopped")):
            # A job that would outlive its task: it ends only when stopped (or after a safety bound).
            from pipeline_steps.local import adapter

            deadline = time.monotonic() + 60
            while not adapter.stop_requested(name) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.stopped.append(name)
            # A late result: the adapter must not let it overwrite the job's Stopped status.
        return {"TransformJobStatus": "Completed"}
