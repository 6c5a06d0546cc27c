"""The synthesized templates create in moto's CloudFormation (the local demo deploys exactly these)."""

from __future__ import annotations

import io
import json
import warnings
import zipfile

import boto3
from moto import mock_aws

from tests.infra.conftest import ACCOUNT, Synth, resources


def _local(template: dict) -> str:
    """What the local deploy does too: drop the bootstrap-version parameter and its rule."""
    template = json.loads(json.dumps(template))
    template.get("Parameters", {}).pop("BootstrapVersion", None)
    template.pop("Rules", None)
    return json.dumps(template)


@mock_aws
def test_both_stacks_create_in_moto_and_wire_the_state_machine(default_synth: Synth) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    assets = f"cdk-hnb659fds-assets-{ACCOUNT}-us-east-1"
    s3.create_bucket(Bucket=assets)
    pipeline = default_synth.template("pipeline")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pipeline_steps/__init__.py", "")
    for function in resources(pipeline, "AWS::Lambda::Function").values():
        s3.put_object(Bucket=assets, Key=function["Properties"]["Code"]["S3Key"], Body=archive.getvalue())
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # moto skips types it does not model (alarms, bucket/topic policies)
        for name in ("storage", "pipeline"):
            cfn.create_stack(
                StackName=f"fm-knn-topx-{name}",
                TemplateBody=_local(default_synth.template(name)),
                Capabilities=["CAPABILITY_IAM"],
            )
            assert (
                cfn.describe_stacks(StackName=f"fm-knn-topx-{name}")["Stacks"][0]["StackStatus"]
                == "CREATE_COMPLETE"
            )
    (machine,) = boto3.client("stepfunctions", region_name="us-east-1").list_state_machines()["stateMachines"]
    definition = json.loads(
        boto3.client("stepfunctions", region_name="us-east-1").describe_state_machine(
            stateMachineArn=machine["stateMachineArn"]
        )["definition"]
    )
    functions = {
        f["FunctionName"]: f
        for f in boto3.client("lambda", region_name="us-east-1").list_functions()["Functions"]
    }
    guard_arn = definition["States"]["Guard"]["Resource"]
    guard = functions[guard_arn.rsplit(":", 1)[1]]
    assert guard["Handler"] == "pipeline_steps.guard.handler.handler"
    bucket = guard["Environment"]["Variables"]["BUCKET_NAME"]
    assert bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    table = functions[definition["States"]["Publish"]["Resource"].rsplit(":", 1)[1]]["Environment"][
        "Variables"
    ]
    assert (
        table["TABLE_NAME"] in boto3.client("dynamodb", region_name="us-east-1").list_tables()["TableNames"]
    )
