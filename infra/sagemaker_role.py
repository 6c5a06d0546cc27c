"""The execution role of the SageMaker training jobs, the k-NN model and the batch transform."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import images
from infra.kms_access import allow_key
from infra.nag import acknowledge, finding

# contracts.md: what the jobs read (channels, model data) and write (their output paths).
READ_PREFIXES = (
    "runs/*/prepared/train/",
    "runs/*/prepared/test/",
    "runs/*/knn/train/",
    "runs/*/knn/queries/",
    "runs/*/knn/model/",
)
WRITE_PREFIXES = ("runs/*/fm/", "runs/*/knn/model/", "runs/*/transform/")
LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs")


class SageMakerRole(Construct):
    """`role`: reads only the channels and model data, writes only job outputs, pulls only our two images."""

    def __init__(
        self, scope: Construct, construct_id: str, *, bucket: s3.IBucket, key: kms.IKey | None
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        objects = [bucket.arn_for_objects(p + "*") for p in dict.fromkeys((*READ_PREFIXES, *WRITE_PREFIXES))]
        log_groups = [
            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:{g}:*" for g in LOG_GROUPS
        ]
        statements = [
            iam.PolicyStatement(
                sid="ReadChannelsAndModels",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(p + "*") for p in READ_PREFIXES],
            ),
            iam.PolicyStatement(
                sid="WriteJobOutputs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(p + "*") for p in WRITE_PREFIXES],
            ),
            iam.PolicyStatement(
                sid="ListRunPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={
                    "StringLike": {"s3:prefix": [p + "*" for p in (*READ_PREFIXES, *WRITE_PREFIXES)]}
                },
            ),
            iam.PolicyStatement(
                sid="PullAlgorithmImages",
                actions=[
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "ecr:BatchCheckLayerAvailability",
                ],
                resources=[images.repository_arn(a, region) for a in images.ALGORITHMS],
            ),
            iam.PolicyStatement(sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            iam.PolicyStatement(
                sid="JobLogs",
                actions=[
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                    "logs:DescribeLogStreams",
                ],
                resources=log_groups,
            ),
            iam.PolicyStatement(
                sid="JobMetrics",
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
            ),
        ]
        policy = iam.Policy(self, "Policy", statements=statements, roles=[self.role])
        allow_key(key, self.role)
        self.policy = policy
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions (AWS requires '*'); "
            "cloudwatch:PutMetricData has none either and is limited to SageMaker's namespaces by condition.",
            applies_to=["Resource::*"],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "Channels, model data and job outputs live under runs/<run_id>/ (run id known only at run time); "
            "SageMaker names its log streams per job inside its two fixed log groups.",
            applies_to=[finding(self, r) for r in objects + log_groups],
        )
