"""The Spark prepare's code assets and execution role (`topx:prepare.engine: spark`, decision 0016).

- `script`: `pipeline_steps/prepare/spark_job.py` as one file, the application `smspark-submit` runs;
- `package`: `pipeline_steps/` zipped as the package (the script puts the zip on `sys.path` and ships
  it to the executors; AWS's Spark container brings numpy, pandas and boto3, not pyarrow: decision
  0016);
- `role`: what the processing job may do, no more: the prepare Lambda's S3 access (read the input
  and test prefixes, read/write/delete `runs/*/prepared/`), read the two code objects by exact key,
  pull the Spark image, write its logs to /aws/sagemaker/ProcessingJobs, and the KMS key.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import aws_cdk as cdk
import jsii
from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from infra import bundling, images
from infra.bundling import STEPS_DIR
from infra.config import AppConfig
from infra.kms_access import allow_key, allow_volume_grants
from infra.nag import acknowledge, finding
from infra.sagemaker_role import job_runtime_statements
from infra.steps import _grant_prefixes, step_access

LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
EXCLUDE = ("__pycache__", "*.pyc", "requirements-lambda.txt")


@jsii.implements(cdk.ILocalBundling)
class _PackageBundling:
    """`pipeline_steps/` copied as `<out>/pipeline_steps/` (CDK zips the output directory)."""

    def try_bundle(self, output_dir: str, *args: object, **kwargs: object) -> bool:
        shutil.copytree(
            STEPS_DIR,
            Path(output_dir) / "pipeline_steps",
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*EXCLUDE),
        )
        return True


class SparkPrepare(Construct):
    """`role`, `script` and `package` of the Spark prepare's processing job."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        bucket: s3.IBucket,
        key: kms.IKey | None,
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        self.script = s3_assets.Asset(self, "Script", path=str(STEPS_DIR / "prepare" / "spark_job.py"))
        out = "/asset-output/pipeline_steps"
        self.package = s3_assets.Asset(
            self,
            "Package",
            path=str(STEPS_DIR),
            exclude=list(EXCLUDE),
            bundling=cdk.BundlingOptions(
                image=bundling.RUNTIME.bundling_image,  # only without the local copy below
                command=["bash", "-c", f"mkdir -p {out} && cp -r /asset-input/. {out}/"],
                local=_PackageBundling(),
            ),
        )
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        wildcards = _grant_prefixes(self.role, bucket, step_access(config)["prepare"])
        code = [asset.bucket.arn_for_objects(asset.s3_object_key) for asset in (self.script, self.package)]
        log_streams = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{LOG_GROUP}:*"
        policy = iam.Policy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(sid="ReadCode", actions=["s3:GetObject"], resources=code),
                *job_runtime_statements(
                    "PullSparkImage", [images.spark_repository_arn(region)], [log_streams]
                ),
            ],
        )
        allow_key(key, self.role)
        allow_volume_grants(key, self.role)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "Object access is limited to the contract's per-run prefixes (the prepare Lambda's); the run "
            "id segment is only known at run time (runs/<run_id>/prepared/), hence the '*' there.",
            applies_to=[finding(self, r) for r in wildcards],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions (AWS requires '*'); "
            "cloudwatch:PutMetricData has none either and is limited to SageMaker's namespaces by "
            "condition; SageMaker names its log streams per job inside its fixed log group.",
            applies_to=["Resource::*", finding(self, log_streams)],
        )
