"""Use of the optional customer KMS key: the exact actions, without `grant_*`'s `GenerateDataKey*`."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

# S3 (SSE-KMS, bucket key), DynamoDB and SNS with a customer key need no more than these.
ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")


def allow_key(key: kms.IKey | None, principal: iam.IGrantable) -> None:
    if key is not None:
        iam.Grant.add_to_principal(grantee=principal, actions=list(ACTIONS), resource_arns=[key.key_arn])


def allow_volume_grants(key: kms.IKey | None, principal: iam.IGrantable) -> None:
    """kms:CreateGrant for the ML storage volumes of jobs with a `VolumeKmsKeyId`.

    The SageMaker API permissions reference
    (https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html) lists
    kms:CreateGrant for CreateTrainingJob / CreateTransformJob "only if the associated
    ResourceConfig [TransformResources] has a specified VolumeKmsKeyId and the associated role does
    not have a policy that permits this action": granted to that role (the execution role), so the
    caller needs none. Only grants that an AWS service creates for its own resources (the volumes)
    are allowed (kms:GrantIsForAWSResource, AWS KMS developer guide, "AWS KMS condition keys").
    """
    if key is not None:
        iam.Grant.add_to_principal(
            grantee=principal,
            actions=["kms:CreateGrant"],
            resource_arns=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        )
