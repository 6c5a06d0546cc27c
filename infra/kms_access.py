"""Use of the optional customer KMS key: the exact actions, without `grant_*`'s `GenerateDataKey*`."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

# S3 (SSE-KMS, bucket key), DynamoDB and SNS with a customer key need no more than these.
ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")


def allow_key(key: kms.IKey | None, principal: iam.IGrantable) -> None:
    if key is not None:
        iam.Grant.add_to_principal(grantee=principal, actions=list(ACTIONS), resource_arns=[key.key_arn])
