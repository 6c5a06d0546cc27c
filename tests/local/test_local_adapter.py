"""The adapter's mechanics on a small CDK app (tests/local/fixture_app.py) with fake handlers/jobs.

One embedded AWS and one deployment for the whole module: synthesis dominates the cost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipeline_steps.local import adapter
from pipeline_steps.local.deploy import deploy, localize_template, supported_types
from pipeline_steps.local.progress import watch
from pipeline_steps.local.runner import notifications
from pipeline_steps.local.server import LocalAws
from tests.local.fakes import TRANSFORM_TIMEOUT_SECONDS, FakeAlgorithms

FIXTURE_APP = Path(__file__).with_name("fixture_app.py")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    algorithms = FakeAlgorithms()
    job_lines: list[str] = []
    aws = LocalAws(job_log=job_lines.append, algorithms=algorithms).start()
    try:
        dep = deploy(aws, app=FIXTURE_APP, outdir=tmp_path_factory.mktemp("cdk.out"), log=lambda _m: None)
        yield aws, dep, algorithms, job_lines
    finally:
        aws.stop()


def _run(aws, dep, name: str, epochs: str):
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=dep.state_machine_arn, name=name, input=json.dumps({"epochs": epochs})
    )["executionArn"]
    lines: list[str] = []
    return watch(sfn, arn, log=lines.append, poll_seconds=0.1), lines


def test_deploy_creates_the_synthesized_stacks_and_lists_what_it_left_out(env):
    aws, dep, _, _ = env
    assert dep.stacks == ["fixture-storage", "fixture-pipeline"]
    assert dep.bucket.startswith("fixture-storage-data")
    # TableV2 is a GlobalTable in the template; moto creates it as a plain table.
    assert (
        aws.client("dynamodb").describe_table(TableName=dep.table)["Table"]["KeySchema"][0]["AttributeName"]
        == "pk"
    )
    assert {t for _, _, t in dep.skipped} == {"AWS::S3::BucketPolicy", "AWS::CloudWatch::Alarm"}
    handlers = {fn["handler"] for fn in dep.functions.values()}
    assert "tests.local.fakes.echo_env" in handlers
    # Cross-stack import resolved: the functions got the storage stack's bucket name.
    assert all(fn["environment"]["BUCKET_NAME"] == dep.bucket for fn in dep.functions.values())


def test_lambda_tasks_run_handlers_in_process_with_the_function_environment(env):
    aws, dep, _, _ = env
    result, _ = _run(aws, dep, "run-ok", "2")
    states = {
        e["stateExitedEventDetails"]["name"]: e
        for e in _history(aws, result.execution_arn)
        if "stateExitedEventDetails" in e
    }
    echo = json.loads(states["EchoStep"]["stateExitedEventDetails"]["output"])["echo"]
    assert echo["event"] == {"run_id": "run-ok"}
    assert echo["bucket"] == dep.bucket
    assert echo["step_config"] == {"x": 3}
    assert echo["function_name"].startswith("fixture-pipeline-Echo")
    assert echo["remaining_ms_positive"] is True
    # The handler wrote through AWS_ENDPOINT_URL into the embedded S3.
    assert (
        aws.client("s3").get_object(Bucket=dep.bucket, Key="runs/run-ok/marker.json")["Body"].read() == b"{}"
    )


def test_sync_jobs_run_the_local_algorithms_and_return_describe_output(env):
    aws, dep, algorithms, job_lines = env
    result, _ = _run(aws, dep, "run-sync", "2")
    # The fixture's last state always fails by design (GateFailedError, caught by name).
    assert result.path[:6] == ["EchoStep", "MarkerStep", "Train", "Model", "Transform", "GateStep"]
    train = next(r for r in algorithms.requests if r.get("TrainingJobName") == "run-sync-fm")
    assert train["HyperParameters"] == {"epochs": "2"}
    assert train["AlgorithmSpecification"]["TrainingImage"].endswith("/factorization-machines:1")
    assert any(line.startswith("[run-sync-fm] epoch 1/1") for line in job_lines)
    sm = aws.client("sagemaker")
    desc = sm.describe_training_job(TrainingJobName="run-sync-fm")
    assert desc["TrainingJobStatus"] == "Completed"
    assert desc["FinalMetricDataList"][0]["MetricName"] == "test:rmse"
    # createModel is moto's own; the transform found the model's ModelDataUrl through it.
    assert algorithms.resolved_models[-1] == desc["ModelArtifacts"]["S3ModelArtifacts"]
    assert sm.describe_transform_job(TransformJobName="run-sync-tr")["TransformJobStatus"] == "Completed"
    assert result.stage_seconds.keys() >= {"Train", "Model", "Transform"}


def test_a_failed_job_fails_the_task_and_the_catch_path_notifies(env):
    aws, dep, _, _ = env
    result, lines = _run(aws, dep, "run-bad", "-1")
    assert result.status == "FAILED"
    assert result.path == ["EchoStep", "MarkerStep", "Train", "Notify", "Failed"]
    failure = result.failures[0]
    assert failure["state"] == "Train" and failure["error"] == "States.TaskFailed"
    assert json.loads(failure["cause"])["FailureReason"] == "ClientError: epochs must be positive"
    assert any("epochs must be positive" in line for line in lines)
    messages = [m for m in notifications(dep, aws) if "run-bad-fm" in m["message"]]
    assert len(messages) == 1 and "States.TaskFailed" in messages[0]["message"]


def test_handler_errors_carry_the_exception_name_for_catch(env):
    aws, dep, _, _ = env
    result, _ = _run(aws, dep, "run-gate", "2")
    assert result.path[-3:] == ["GateStep", "Notify", "Failed"]
    gate = next(f for f in result.failures if f["state"] == "GateStep")
    assert gate["error"] == "GateFailedError"
    assert "below the floor for run-gate" in json.loads(gate["cause"])["errorMessage"]


def test_failure_injection_overrides_hyperparameters_of_the_next_job_only(env):
    aws, dep, _, _ = env
    adapter.inject_hyperparameters("factorization-machines", {"epochs": "-1"})
    first, _ = _run(aws, dep, "run-inj", "2")
    second, _ = _run(aws, dep, "run-after", "2")
    assert first.failures[0]["state"] == "Train"
    assert "GateStep" in second.path  # training succeeded again
    hp = aws.client("sagemaker").describe_training_job(TrainingJobName="run-inj-fm")["HyperParameters"]
    assert hp == {"epochs": "-1"}


def test_moto_accepts_the_security_fields_of_jobs_and_models(env):
    """moto 5.2.5 takes (and the adapter passes on) what the real template sends with every
    security option on: network isolation, inter-container encryption, VPC, KMS keys."""
    import botocore.exceptions

    aws, dep, algorithms, _ = env
    sm = aws.client("sagemaker")
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    vpc = {"SecurityGroupIds": ["sg-0c7d8e9f"], "Subnets": ["subnet-0a1b2c3d"]}
    iam = aws.client("iam")
    trust = json.loads(LAMBDA_TRUST)
    trust["Statement"][0]["Principal"]["Service"] = "sagemaker.amazonaws.com"
    role = iam.create_role(RoleName="sec-sm", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_role_policy(RoleName="sec-sm", PolicyName="all", PolicyDocument=json.dumps(everything))
    image = "382416733822.dkr.ecr.us-east-1.amazonaws.com/{}:1"
    training = {
        "TrainingJobName": "sec-fm",
        "AlgorithmSpecification": {
            "TrainingImage": image.format("factorization-machines"),
            "TrainingInputMode": "File",
        },
        "RoleArn": role,
        "HyperParameters": {"epochs": "1"},
        "OutputDataConfig": {"S3OutputPath": f"s3://{dep.bucket}/out/", "KmsKeyId": key},
        "ResourceConfig": {
            "InstanceType": "ml.m5.large",
            "InstanceCount": 2,
            "VolumeSizeInGB": 1,
            "VolumeKmsKeyId": key,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": vpc,
    }
    sm.create_training_job(**training)
    adapter.wait_for_jobs()
    sent = next(r for r in algorithms.requests if r.get("TrainingJobName") == "sec-fm")
    assert {
        k: sent[k] for k in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption", "VpcConfig")
    } == {
        "EnableNetworkIsolation": True,
        "EnableInterContainerTrafficEncryption": True,
        "VpcConfig": vpc,
    }
    assert sent["ResourceConfig"]["VolumeKmsKeyId"] == sent["OutputDataConfig"]["KmsKeyId"] == key
    described = sm.describe_training_job(TrainingJobName="sec-fm")
    assert described["TrainingJobStatus"] == "Completed"
    assert described["EnableNetworkIsolation"] is True and described["VpcConfig"] == vpc
    sm.create_model(
        ModelName="sec-knn",
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": image.format("knn"),
            "ModelDataUrl": described["ModelArtifacts"]["S3ModelArtifacts"],
        },
        EnableNetworkIsolation=True,
        VpcConfig=vpc,
    )
    assert sm.describe_model(ModelName="sec-knn")["VpcConfig"] == vpc
    sm.create_transform_job(
        TransformJobName="sec-tr",
        ModelName="sec-knn",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{dep.bucket}/q/"}}
        },
        TransformOutput={"S3OutputPath": f"s3://{dep.bucket}/tr/", "KmsKeyId": key},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeKmsKeyId": key},
    )
    adapter.wait_for_jobs()
    assert sm.describe_transform_job(TransformJobName="sec-tr")["TransformJobStatus"] == "Completed"
    # An empty subnet list is refused before it reaches the service, as against SageMaker.
    with pytest.raises(botocore.exceptions.ParamValidationError, match="Subnets"):
        sm.create_model(
            ModelName="sec-bad",
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": image.format("knn")},
            VpcConfig={"SecurityGroupIds": ["sg-0c7d8e9f"], "Subnets": []},
        )


def _until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_timed_out_transform_is_stopped_then_the_timeout_is_notified(env):
    """TimeoutSeconds -> Catch States.Timeout -> StopTransform (aws-sdk) -> Notify -> Fail."""
    aws, dep, algorithms, job_lines = env
    earlier = len(notifications(dep, aws))
    started = time.monotonic()
    result, _ = _run(aws, dep, "run-timeout", "2")
    assert result.status == "FAILED"
    assert result.path[-5:] == ["Model", "Transform", "StopTransform", "Notify", "Failed"]
    assert time.monotonic() - started < TRANSFORM_TIMEOUT_SECONDS + 10
    (message,) = notifications(dep, aws)[earlier:]
    assert json.loads(message["message"])["Error"] == "States.Timeout"  # not the stop's outcome
    sm = aws.client("sagemaker")
    # The fake returns "Completed" once it sees the stop: that late result must not win.
    assert _until(lambda: "run-timeout-tr" in algorithms.stopped)
    adapter.wait_for_jobs(timeout=10)
    assert sm.describe_transform_job(TransformJobName="run-timeout-tr")["TransformJobStatus"] == "Stopped"
    assert "[run-timeout-tr] stop requested" in job_lines
    # SageMaker refuses to stop a job that is no longer in progress.
    with pytest.raises(sm.exceptions.ClientError, match="ValidationException"):
        sm.stop_transform_job(TransformJobName="run-timeout-tr")


def test_a_job_stopped_while_its_sync_task_waits_fails_the_task(env):
    """The `.sync` resolver reports a Stopped job as States.TaskFailed with the Describe output."""
    aws, dep, _, _ = env
    sfn, sm = aws.client("stepfunctions"), aws.client("sagemaker")
    arn = sfn.start_execution(
        stateMachineArn=dep.state_machine_arn, name="run-stopped", input=json.dumps({"epochs": "2"})
    )["executionArn"]

    def in_progress() -> bool:
        try:
            status = sm.describe_transform_job(TransformJobName="run-stopped-tr")["TransformJobStatus"]
        except sm.exceptions.ClientError:
            return False
        return status == "InProgress"

    assert _until(in_progress)
    sm.stop_transform_job(TransformJobName="run-stopped-tr")
    result = watch(sfn, arn, log=lambda _m: None, poll_seconds=0.1)
    assert result.path[-3:] == ["Transform", "Notify", "Failed"]
    failure = next(f for f in result.failures if f["state"] == "Transform")
    assert failure["error"] == "States.TaskFailed"
    assert json.loads(failure["cause"])["TransformJobStatus"] == "Stopped"


def test_direct_invoke_without_payload_passes_an_empty_event(env):
    aws, dep, _, _ = env
    name = next(n for n, fn in dep.functions.items() if fn["handler"] == "tests.local.fakes.echo_env")
    response = aws.client("lambda").invoke(FunctionName=name)
    assert not response.get("FunctionError")
    assert json.loads(response["Payload"].read())["event"] == {}


LAMBDA_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def test_missing_handler_module_in_the_deployed_zip_is_an_import_error(env):
    aws, _, _, _ = env
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="r-missing", AssumeRolePolicyDocument=LAMBDA_TRUST)["Role"][
        "Arn"
    ]
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("other.py", "")
    lam.create_function(
        FunctionName="missing",
        Runtime="python3.11",
        Role=role,
        Handler="tests.local.fakes.echo_env",
        Code={"ZipFile": buf.getvalue()},
    )
    response = lam.invoke(FunctionName="missing", Payload=b"{}")
    assert response.get("FunctionError")
    payload = json.loads(response["Payload"].read())
    assert payload["errorType"] == "ImportError" and "tests.local.fakes" in payload["errorMessage"]


def test_localize_template_drops_bootstrap_and_unsupported_and_rewires_references():
    template = {
        "Parameters": {"BootstrapVersion": {"Type": "AWS::SSM::Parameter::Value<String>"}},
        "Rules": {"CheckBootstrapVersion": {"Assertions": []}},
        "Resources": {
            "Table": {
                "Type": "AWS::DynamoDB::GlobalTable",
                "Properties": {
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "BillingMode": "PAY_PER_REQUEST",
                    "Replicas": [
                        {
                            "Region": "us-east-1",
                            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                        }
                    ],
                },
            },
            "Schedule": {"Type": "AWS::Scheduler::Schedule", "Properties": {}},
            "Custom": {"Type": "Custom::LogRetention", "Properties": {}},
            "Topic": {
                "Type": "AWS::SNS::Topic",
                "DependsOn": ["Schedule"],
                "Properties": {"DisplayName": {"Fn::GetAtt": ["Schedule", "Arn"]}},
            },
        },
        "Outputs": {"ScheduleArn": {"Value": {"Ref": "Schedule"}}, "TopicArn": {"Value": {"Ref": "Topic"}}},
    }
    local, skipped = localize_template(template, supported_types())
    assert "Parameters" not in local and "Rules" not in local
    assert local["Resources"]["Table"]["Type"] == "AWS::DynamoDB::Table"
    assert local["Resources"]["Table"]["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }
    assert "Replicas" not in local["Resources"]["Table"]["Properties"]
    assert sorted(skipped) == [("Custom", "Custom::LogRetention"), ("Schedule", "AWS::Scheduler::Schedule")]
    assert local["Resources"]["Topic"]["DependsOn"] == []
    assert local["Resources"]["Topic"]["Properties"]["DisplayName"] == "not emulated locally:Schedule"
    assert list(local["Outputs"]) == ["TopicArn"]
    assert "BootstrapVersion" in template["Parameters"]  # the input is left untouched


def _history(aws, arn):
    return aws.client("stepfunctions").get_execution_history(executionArn=arn, maxResults=1000)["events"]


def test_a_function_whose_role_lambda_cannot_assume_fails_to_run(env):
    """Lambda runs a function as its role; a trust policy without lambda.amazonaws.com is refused."""
    aws, _, _, _ = env
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="r-untrusted", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(
        FunctionName="untrusted",
        Runtime="python3.11",
        Role=role,
        Handler="tests.local.fakes.echo_env",
        Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
    )
    response = lam.invoke(FunctionName="untrusted", Payload=b"{}")
    payload = json.loads(response["Payload"].read())
    assert response.get("FunctionError")
    assert "lambda.amazonaws.com is not authorized to perform: sts:AssumeRole" in payload["errorMessage"]
