"""IAM enforced by the embedded AWS: requests run as an assumed role and are authorised like on AWS."""

from __future__ import annotations

import json
import re

import boto3
import pytest
from botocore.exceptions import ClientError

from pipeline_steps.local import access
from pipeline_steps.local.server import LocalAws

BUCKET = "access-test-bucket"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture(scope="module")
def aws():
    with LocalAws() as local:
        local.client("s3").create_bucket(Bucket=BUCKET)
        local.client("dynamodb").create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield local


def role_client(aws: LocalAws, name: str, service: str, *statements: dict, trust: dict = TRUST):
    """A client acting as a new role with these statements, assumed as Lambda would."""
    iam = aws.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(
        RoleName=name,
        PolicyName="p",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
    )
    return access.role_credentials(arn, "lambda.amazonaws.com").client(service)


def allow(actions, resources) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def error(exc: pytest.ExceptionInfo) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def test_a_role_may_do_what_its_policy_allows_and_nothing_else(aws):
    aws.client("s3").put_object(Bucket=BUCKET, Key="in/a.csv", Body=b"x")
    s3 = role_client(aws, "reader", "s3", allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/in/*"))
    assert s3.get_object(Bucket=BUCKET, Key="in/a.csv")["Body"].read() == b"x"
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="in/b.csv", Body=b"y")
    code, message = error(denied)
    assert code == "AccessDenied" and denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "assumed-role/reader/lambda is not authorized to perform: s3:PutObject" in message
    assert f"arn:aws:s3:::{BUCKET}/in/b.csv" in message


def test_reading_a_missing_key_is_403_without_list_bucket_and_404_with_it(aws):
    """S3 API reference, GetObject: NoSuchKey only for callers allowed s3:ListBucket."""
    no_list = role_client(aws, "no-list", "s3", allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*"))
    with pytest.raises(ClientError) as denied:
        no_list.get_object(Bucket=BUCKET, Key="missing.json")
    assert error(denied)[0] == "AccessDenied" and "s3:ListBucket" in error(denied)[1]
    with_list = role_client(
        aws,
        "with-list",
        "s3",
        allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*"),
        allow("s3:ListBucket", f"arn:aws:s3:::{BUCKET}"),
    )
    with pytest.raises(ClientError) as missing:
        with_list.get_object(Bucket=BUCKET, Key="missing.json")
    assert error(missing)[0] == "NoSuchKey"


def test_sse_kms_writes_and_reads_need_the_key(aws):
    key = aws.client("kms").create_key()["KeyMetadata"]["Arn"]
    bucket = "access-test-kms"
    aws.client("s3").create_bucket(Bucket=bucket)
    aws.client("s3").put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
            ]
        },
    )
    objects = allow(["s3:PutObject", "s3:GetObject"], f"arn:aws:s3:::{bucket}/*")
    without_key = role_client(aws, "no-key", "s3", objects)
    with pytest.raises(ClientError) as denied:
        without_key.put_object(Bucket=bucket, Key="a", Body=b"x")
    assert "kms:GenerateDataKey" in error(denied)[1] and key in error(denied)[1]
    writer = role_client(aws, "key-writer", "s3", objects, allow("kms:GenerateDataKey", key))
    writer.put_object(Bucket=bucket, Key="a", Body=b"x")
    with pytest.raises(ClientError) as no_decrypt:
        writer.get_object(Bucket=bucket, Key="a")
    assert "kms:Decrypt" in error(no_decrypt)[1]


def test_transactions_need_each_item_action_and_errors_are_the_services_own(aws):
    table = f"arn:aws:dynamodb:{aws.region}:{aws.account_id}:table/t"
    dynamodb = role_client(aws, "writer", "dynamodb", allow(["dynamodb:PutItem", "dynamodb:GetItem"], table))
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "a"}})
    with pytest.raises(ClientError) as denied:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "t", "Item": {"pk": {"S": "b"}}}},
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {"S": "a"}},
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "1"}},
                    }
                },
            ]
        )
    code, message = error(denied)
    # JSON-protocol services answer AccessDeniedException with HTTP 400 (DynamoDB "Common errors";
    # SageMaker's in aws/aws-cdk#26012: "Status Code: 400; Error Code: AccessDeniedException").
    assert code == "AccessDeniedException"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "dynamodb:UpdateItem" in message and table in message
    assert "Item" not in dynamodb.get_item(TableName="t", Key={"pk": {"S": "b"}})  # nothing half-written


def test_a_service_only_assumes_roles_that_trust_it(aws):
    arn = aws.client("iam").create_role(RoleName="lambda-only", AssumeRolePolicyDocument=json.dumps(TRUST))[
        "Role"
    ]["Arn"]
    assert access.role_credentials(arn, "lambda.amazonaws.com").session_token
    with pytest.raises(
        ClientError, match=re.escape("sagemaker.amazonaws.com is not authorized to perform: sts:AssumeRole")
    ):
        access.role_credentials(arn, "sagemaker.amazonaws.com")


def test_unknown_credentials_are_refused(aws):
    s3 = boto3.client(
        "s3",
        endpoint_url=aws.endpoint,
        region_name=aws.region,
        aws_access_key_id="AKIANOTAKEY0000",
        aws_secret_access_key="x",
    )
    with pytest.raises(ClientError):
        s3.list_objects_v2(Bucket=BUCKET)
