"""The execution role of the SageMaker training jobs, the k-NN model and the batch transform."""

from __future__ import annotations

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import images
from infra.config import VpcConfig
from infra.kms_access import allow_key, allow_volume_grants
from infra.nag import acknowledge, finding
from pipeline_steps.common.layout import RunLayout

# contracts.md: what the jobs read (channels, model data) and write (their output paths).
_RUN = RunLayout.wildcard()
READ_PREFIXES = (_RUN.train, _RUN.test, _RUN.knn_train, _RUN.queries, _RUN.knn_model)
WRITE_PREFIXES = (_RUN.fm, _RUN.knn_model, _RUN.transform)
LOG_GROUPS = ("/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TransformJobs")
# "Give SageMaker Training Jobs Access to Resources in Your Amazon VPC" and the execution role
# permissions of CreateTrainingJob / CreateModel with a VpcConfig
# (https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html,
# https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html): SageMaker creates (and
# deletes) an elastic network interface per instance in the given subnets, with the role.
ENI_ACTIONS = (
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
)
# No resource-level permissions (Service Authorization Reference, "Actions, resources, and
# condition keys for Amazon EC2"): these only accept "*".
VPC_DESCRIBE_ACTIONS = (
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
)


def job_runtime_statements(
    pull_sid: str, repositories: list[str], log_resources: list[str]
) -> list[iam.PolicyStatement]:
    """What a SageMaker job's container needs to run (training, transform, processing): pull its
    image from ECR, log to CloudWatch Logs, put SageMaker's own metrics (a role for SageMaker jobs,
    https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html)."""
    return [
        iam.PolicyStatement(
            sid=pull_sid,
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=repositories,
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
            resources=log_resources,
        ),
        iam.PolicyStatement(
            sid="JobMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        ),
    ]


class SageMakerRole(Construct):
    """`role`: reads only the channels and model data, writes only job outputs, pulls only our two images."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        key: kms.IKey | None,
        vpc: VpcConfig | None = None,
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
            *job_runtime_statements(
                "PullAlgorithmImages",
                [images.repository_arn(a, region) for a in images.ALGORITHMS],
                log_groups,
            ),
        ]
        policy = iam.Policy(self, "Policy", statements=statements, roles=[self.role])
        # S3 SSE-KMS of the channels read and the outputs written (OutputDataConfig.KmsKeyId: "the
        # SageMaker execution role must include permissions to call kms:Encrypt"; without kms:Decrypt
        # the jobs fail on encrypted objects, aws/aws-cdk#12810), then the volumes' grants.
        allow_key(key, self.role)
        allow_volume_grants(key, self.role)
        self.policy = policy
        self.vpc_policy = self._vpc_policy(vpc) if vpc is not None else None
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

    def _vpc_policy(self, vpc: VpcConfig) -> iam.Policy:
        """The network interfaces of jobs and models in the configured subnets and security groups."""
        ec2 = f"arn:{Aws.PARTITION}:ec2:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        interfaces = f"{ec2}:network-interface/*"
        policy = iam.Policy(
            self,
            "VpcPolicy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(
                    sid="CreateJobInterfaces",
                    actions=["ec2:CreateNetworkInterface"],
                    resources=[
                        *(f"{ec2}:subnet/{s}" for s in vpc.subnet_ids),
                        *(f"{ec2}:security-group/{g}" for g in vpc.security_group_ids),
                        interfaces,
                    ],
                ),
                iam.PolicyStatement(
                    sid="ManageJobInterfaces", actions=list(ENI_ACTIONS), resources=[interfaces]
                ),
                iam.PolicyStatement(
                    sid="DescribeNetwork", actions=list(VPC_DESCRIBE_ACTIONS), resources=["*"]
                ),
            ],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "SageMaker creates one network interface per job instance in the configured subnets and "
            "security groups (listed by id); the interface ids exist only at run time, so they are "
            "named by this account's and region's network-interface/* ARN.",
            applies_to=[finding(self, interfaces)],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "ec2:DescribeNetworkInterfaces/Vpcs/DhcpOptions/Subnets/SecurityGroups, which SageMaker "
            "calls with this role to place jobs in the VPC, have no resource-level permissions (AWS "
            "requires '*'); they only read.",
            applies_to=["Resource::*"],
        )
        return policy
