"""The Spark prepare's processing job in local mode: the adapter runs CreateProcessingJob, the job
downloads its S3Prefix inputs like SageMaker and calls the job application (decision 0016).

The Spark work itself is covered by tests/prepare/test_prepare_spark_equivalence.py; here the
application is replaced by a recorder, so no JVM starts.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline_steps.local import spark_processing
from pipeline_steps.local.server import LocalAws
from pipeline_steps.prepare import spark_job

IMAGE = "173754725891.dkr.ecr.us-east-1.amazonaws.com/sagemaker-spark-processing:3.5-cpu-py312"


def _request(bucket: str, name: str = "job-1") -> dict:
    def s3_input(input_name: str, uri: str, local: str) -> dict:
        return {
            "InputName": input_name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    return {
        "ProcessingJobName": name,
        "RoleArn": "arn:aws:iam::123456789012:role/spark",
        "AppSpecification": {
            "ImageUri": IMAGE,
            "ContainerEntrypoint": ["smspark-submit", "/opt/ml/processing/input/code/abc.py"],
            "ContainerArguments": ["--run-id", "run-7"],
        },
        "ProcessingInputs": [
            s3_input("code", f"s3://{bucket}/assets/abc.py", "/opt/ml/processing/input/code"),
            s3_input("data", f"s3://{bucket}/input/", spark_job.INPUT_DIR),
            s3_input("test", f"s3://{bucket}/input-test/", spark_job.TEST_DIR),
        ],
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
        "Environment": {"BUCKET_NAME": bucket, "STEP_CONFIG": '{"engine": "spark"}'},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


@pytest.fixture(scope="module")
def aws():
    server = LocalAws(job_log=lambda _m: None, enforce_iam=False).start()
    try:
        s3 = server.client("s3")
        s3.create_bucket(Bucket="data")
        for key, body in {
            "input/a/part-1.csv": b"u,i\n",
            "input/b.tsv": b"u\ti\n",
            "input-test/t.tsv": b"u\ti\n",
            "assets/abc.py": b"print()",
        }.items():
            s3.put_object(Bucket="data", Key=key, Body=body)
        yield server
    finally:
        server.stop()


def test_inputs_are_downloaded_under_their_local_paths_and_the_application_gets_them(aws, monkeypatch):
    seen: dict = {}

    def application(argv, *, s3_client, master, environ):
        at = dict(zip(argv[::2], argv[1::2], strict=True))
        seen.update(argv=argv, master=master, environ=environ)
        seen["files"] = sorted(
            p.relative_to(at[flag]).as_posix() + f"@{flag}"
            for flag in ("--input-dir", "--test-dir")
            for p in Path(at[flag]).rglob("*")
            if p.is_file()
        )
        return 0

    monkeypatch.setattr(spark_job, "main", application)
    result = spark_processing.run_processing_job(_request("data"), s3=aws.client("s3"), log=lambda _m: None)
    assert result == {"ProcessingJobStatus": "Completed"}
    assert seen["argv"][:2] == ["--run-id", "run-7"] and seen["master"] == "local[*]"
    assert seen["environ"] == {"BUCKET_NAME": "data", "STEP_CONFIG": '{"engine": "spark"}'}
    # S3Prefix: each object at its path after the prefix; the code input is not downloaded.
    assert seen["files"] == ["a/part-1.csv@--input-dir", "b.tsv@--input-dir", "t.tsv@--test-dir"]


def test_another_image_is_refused():
    request = _request("data")
    request["AppSpecification"]["ImageUri"] = IMAGE.replace("sagemaker-spark-processing", "other")
    result = spark_processing.run_processing_job(request, s3=None, log=lambda _m: None)
    assert result["ProcessingJobStatus"] == "Failed" and "only the Spark prepare" in result["FailureReason"]


def _status(sagemaker, name: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] != "InProgress":
            return job
        time.sleep(0.05)
    raise AssertionError(f"{name} still InProgress")


def test_create_processing_job_runs_in_the_background_and_reports_its_result(aws, monkeypatch):
    calls: list[str] = []

    def ok(request, *, s3, log):
        time.sleep(0.3)
        calls.append(request["ProcessingJobName"])
        return {"ProcessingJobStatus": "Completed"}

    def broken(request, *, s3, log):
        raise ValueError("no manifest")

    sagemaker = aws.client("sagemaker")
    monkeypatch.setattr(spark_processing, "run_processing_job", ok)
    sagemaker.create_processing_job(**_request("data", "ok-job"))
    assert (
        sagemaker.describe_processing_job(ProcessingJobName="ok-job")["ProcessingJobStatus"] == "InProgress"
    )
    assert _status(sagemaker, "ok-job")["ProcessingJobStatus"] == "Completed" and calls == ["ok-job"]
    monkeypatch.setattr(spark_processing, "run_processing_job", broken)
    sagemaker.create_processing_job(**_request("data", "bad-job"))
    failed = _status(sagemaker, "bad-job")
    assert failed["ProcessingJobStatus"] == "Failed"
    assert failed["FailureReason"] == "AlgorithmError: ValueError: no manifest"
