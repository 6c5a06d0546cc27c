"""Storage stack: bucket hardening, lifecycle, access logs; table keys, TTL, PITR, encryption."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from tests.infra.conftest import Synth, resources


@pytest.fixture(scope="module")
def storage(default_synth: Synth) -> Template:
    stack = default_synth.app.node.find_child("fm-knn-topx-storage")
    return Template.from_stack(stack)


def _data_bucket(template: dict) -> dict:
    (bucket,) = [
        b
        for b in resources(template, "AWS::S3::Bucket").values()
        if "LoggingConfiguration" in b["Properties"]
    ]
    return bucket


def test_every_bucket_blocks_all_public_access_and_is_versioned(storage: Template) -> None:
    block_all = {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    buckets = storage.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2  # data + access logs
    for bucket in buckets.values():
        assert bucket["Properties"]["PublicAccessBlockConfiguration"] == block_all
        assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
        assert bucket["DeletionPolicy"] == "Retain"


def test_every_bucket_denies_plain_http(storage: Template) -> None:
    policies = storage.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s["Action"] == "s3:*"
            and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_data_bucket_is_encrypted_logged_and_expires_runs(storage: Template) -> None:
    bucket = _data_bucket(storage.to_json())["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "data-bucket/"
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-runs"] == {
        "Id": "expire-runs",
        "Prefix": "runs/",
        "ExpirationInDays": 35,
        "Status": "Enabled",
    }
    assert rules["noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert not any("input/" in str(r.get("Prefix", "")) for r in rules.values())


def test_table_keys_ttl_pitr_billing_encryption(storage: Template) -> None:
    storage.resource_count_is("AWS::DynamoDB::Table", 1)  # AWS::DynamoDB::Table, not GlobalTable (moto)
    storage.has_resource(
        "AWS::DynamoDB::Table",
        {
            "DeletionPolicy": "Retain",
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": Match.array_with(
                    [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ]
                ),
                "BillingMode": "PAY_PER_REQUEST",
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
    )
    storage.resource_count_is("AWS::KMS::Key", 0)


def test_storage_is_exported_by_fixed_names(storage: Template) -> None:
    exports = {o["Export"]["Name"] for o in storage.to_json()["Outputs"].values()}
    assert {"fm-knn-topx-bucket-name", "fm-knn-topx-bucket-arn", "fm-knn-topx-table-name"} <= exports


def test_kms_option_encrypts_bucket_table_and_topic_with_the_rotating_key(options_synth: Synth) -> None:
    storage = options_synth.template("storage")
    (key_id,) = resources(storage, "AWS::KMS::Key")
    assert storage["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    (rule,) = _data_bucket(storage)["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert rule["BucketKeyEnabled"] is True
    (table,) = resources(storage, "AWS::DynamoDB::Table").values()
    assert table["Properties"]["SSESpecification"]["SSEType"] == "KMS"
    pipeline = options_synth.template("pipeline")
    (topic,) = resources(pipeline, "AWS::SNS::Topic").values()
    assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::ImportValue": "fm-knn-topx-key-arn"}
