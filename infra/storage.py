"""The data bucket (+ its access-log bucket), the optional customer KMS key, the recommendations table."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import AppConfig
from infra.nag import acknowledge
from pipeline_steps.common.layout import RUNS_PREFIX


class Storage(Construct):
    """Stateful resources, all RETAIN: `bucket`, `table`, and `key` when `topx:kms` is on.

    `disposable=True` (the integration test only, never a user deployment) makes them DESTROY and
    empties both buckets on stack deletion, so a test deployment leaves nothing behind.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, disposable: bool = False
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.DESTROY if disposable else RemovalPolicy.RETAIN
        self.key: kms.Key | None = None
        if config.kms:
            self.key = kms.Key(
                self,
                "Key",
                description=f"{config.project}: data bucket, recommendations table, notifications",
                enable_key_rotation=True,
                removal_policy=removal,
            )
            # The notification topic is encrypted with this key too; CloudWatch alarm actions publish
            # as the service principal, which only the key policy can allow.
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                    actions=["kms:Decrypt", "kms:GenerateDataKey"],
                    resources=["*"],  # in a key policy, "*" is this key
                    conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
                )
            )
            if config.api is not None:
                # The read API's access-log group is encrypted with this key; CloudWatch Logs uses it
                # as the service principal, for this account's log groups only (CloudWatch Logs user
                # guide, "Encrypt log data in CloudWatch Logs using AWS KMS", step 2: the key policy).
                self.key.add_to_resource_policy(
                    iam.PolicyStatement(
                        principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                        actions=[
                            "kms:Encrypt*",
                            "kms:Decrypt*",
                            "kms:ReEncrypt*",
                            "kms:GenerateDataKey*",
                            "kms:Describe*",
                        ],
                        resources=["*"],  # in a key policy, "*" is this key
                        conditions={
                            "ArnLike": {
                                "kms:EncryptionContext:aws:logs:arn": (
                                    f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                                )
                            }
                        },
                    )
                )
        self.log_bucket = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # S3 server access logging can only deliver to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(config.log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                )
            ],
            removal_policy=removal,
            auto_delete_objects=disposable,
        )
        acknowledge(
            self.log_bucket,
            "AwsSolutions-S1",
            "This is the access-log destination of the data bucket; logging it to itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Data",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.KMS if self.key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key,
            bucket_key_enabled=bool(self.key),
            enforce_ssl=True,
            versioned=True,
            server_access_logs_bucket=self.log_bucket,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=self._lifecycle(config),
            removal_policy=removal,
            auto_delete_objects=disposable,
        )
        self.table = dynamodb.Table(
            self,
            "Recommendations",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute="expires_at",
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED
                if self.key
                else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=self.key,
            removal_policy=removal,
        )

    @staticmethod
    def _lifecycle(config: AppConfig) -> list[s3.LifecycleRule]:
        # S3 lifecycle filters are literal prefixes (no wildcards), and the contract keeps every
        # run's files under runs/<run_id>/, so the scratch of a run (knn/, transform/) cannot be aimed
        # at alone: whole runs expire after `run_expiry_days` (> the items' TTL, so a published run's
        # metrics outlive its items). input/ never expires. See docs/decisions/0006.
        return [
            s3.LifecycleRule(
                id="expire-runs",
                prefix=RUNS_PREFIX,
                expiration=Duration.days(config.run_expiry_days),
            ),
            s3.LifecycleRule(
                id="noncurrent-versions",
                noncurrent_version_expiration=Duration.days(config.noncurrent_expiry_days),
                abort_incomplete_multipart_upload_after=Duration.days(1),
                expired_object_delete_marker=True,
            ),
        ]
