"""The local IAM evaluation (pipeline_steps.local.iam) and what each API call needs (iam_requests)."""

from __future__ import annotations

import pytest

from pipeline_steps.local.iam import Authorization, Decision, UnsupportedCondition, denial_message, evaluate
from pipeline_steps.local.iam_requests import Call, authorizations

BUCKET = "arn:aws:s3:::data"


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource, **condition) -> dict:
    statement = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


def test_allow_needs_action_and_resource_to_match_with_wildcards():
    p = policy(allow(["s3:GetObject"], [f"{BUCKET}/runs/*/prepared/*"]))
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/runs/r1/prepared/a.rec")) is Decision.ALLOW
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/runs/r1/fm/m")) is Decision.IMPLICIT_DENY
    assert (
        evaluate([p], Authorization("s3:PutObject", f"{BUCKET}/runs/r1/prepared/a")) is Decision.IMPLICIT_DENY
    )


def test_actions_match_case_insensitively_resources_case_sensitively():
    p = policy(allow("S3:getobject", f"{BUCKET}/Input/*"))
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/Input/a")) is Decision.ALLOW
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/input/a")) is Decision.IMPLICIT_DENY


def test_question_mark_is_one_character_and_brackets_are_literal():
    p = policy(allow("sns:Publish", ["arn:aws:sns:us-east-1:1:t?", "arn:aws:sns:us-east-1:1:[ab]"]))
    assert evaluate([p], Authorization("sns:Publish", "arn:aws:sns:us-east-1:1:t1")) is Decision.ALLOW
    assert (
        evaluate([p], Authorization("sns:Publish", "arn:aws:sns:us-east-1:1:t12")) is Decision.IMPLICIT_DENY
    )
    assert evaluate([p], Authorization("sns:Publish", "arn:aws:sns:us-east-1:1:a")) is Decision.IMPLICIT_DENY
    assert evaluate([p], Authorization("sns:Publish", "arn:aws:sns:us-east-1:1:[ab]")) is Decision.ALLOW


def test_explicit_deny_wins_over_any_allow():
    p = policy(
        allow("s3:*", "*"),
        {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": f"{BUCKET}/*"},
    )
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/k")) is Decision.ALLOW
    assert evaluate([p], Authorization("s3:DeleteObject", f"{BUCKET}/k")) is Decision.EXPLICIT_DENY


def test_not_action_and_not_resource():
    p = policy({"Effect": "Allow", "NotAction": "iam:*", "NotResource": f"{BUCKET}/secret/*"})
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/open")) is Decision.ALLOW
    assert evaluate([p], Authorization("s3:GetObject", f"{BUCKET}/secret/x")) is Decision.IMPLICIT_DENY
    assert evaluate([p], Authorization("iam:PassRole", "*")) is Decision.IMPLICIT_DENY


def test_a_non_matching_condition_makes_an_allow_not_apply_rather_than_deny():
    """moto treats it as an explicit deny, which would also defeat a second, unconditioned allow."""
    role = "arn:aws:iam::1:role/sm"
    p = policy(
        allow("iam:PassRole", role, StringEquals={"iam:PassedToService": "sagemaker.amazonaws.com"}),
        allow("iam:PassRole", role),
    )
    to_lambda = Authorization("iam:PassRole", role, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert evaluate([p], to_lambda) is Decision.ALLOW
    only_conditioned = policy(p["Statement"][0])
    assert evaluate([only_conditioned], to_lambda) is Decision.IMPLICIT_DENY
    to_sagemaker = Authorization("iam:PassRole", role, {"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert evaluate([only_conditioned], to_sagemaker) is Decision.ALLOW


def test_missing_condition_keys_fail_positive_operators_and_pass_negated_and_if_exists():
    p = policy(allow("s3:ListBucket", BUCKET, StringLike={"s3:prefix": ["runs/*"]}))
    assert evaluate([p], Authorization("s3:ListBucket", BUCKET)) is Decision.IMPLICIT_DENY
    assert evaluate([p], Authorization("s3:ListBucket", BUCKET, {"s3:prefix": "runs/a/"})) is Decision.ALLOW
    assert (
        evaluate([p], Authorization("s3:ListBucket", BUCKET, {"s3:prefix": "input/"}))
        is Decision.IMPLICIT_DENY
    )
    negated = policy(allow("s3:ListBucket", BUCKET, StringNotLike={"s3:prefix": ["secret/*"]}))
    assert evaluate([negated], Authorization("s3:ListBucket", BUCKET)) is Decision.ALLOW
    if_exists = policy(allow("s3:ListBucket", BUCKET, StringLikeIfExists={"s3:prefix": ["runs/*"]}))
    assert evaluate([if_exists], Authorization("s3:ListBucket", BUCKET)) is Decision.ALLOW
    null = policy(allow("s3:ListBucket", BUCKET, Null={"s3:prefix": "true"}))
    assert evaluate([null], Authorization("s3:ListBucket", BUCKET)) is Decision.ALLOW
    assert (
        evaluate([null], Authorization("s3:ListBucket", BUCKET, {"s3:prefix": "a"})) is Decision.IMPLICIT_DENY
    )


def test_numeric_bool_and_arn_operators():
    p = policy(
        allow(
            "cloudwatch:PutMetricData",
            "*",
            NumericLessThanEquals={"x:n": "5"},
            Bool={"aws:SecureTransport": True},
            ArnLike={"aws:SourceArn": "arn:aws:cloudwatch:*:1:alarm:*"},
        )
    )
    context = {
        "x:n": "5",
        "aws:SecureTransport": "true",
        "aws:SourceArn": "arn:aws:cloudwatch:us-east-1:1:alarm:a",
    }
    assert evaluate([p], Authorization("cloudwatch:PutMetricData", "*", context)) is Decision.ALLOW
    assert (
        evaluate([p], Authorization("cloudwatch:PutMetricData", "*", {**context, "x:n": "6"}))
        is Decision.IMPLICIT_DENY
    )


def test_unknown_operators_are_refused_not_guessed():
    p = policy(allow("s3:GetObject", "*", IpAddress={"aws:SourceIp": "10.0.0.0/8"}))
    with pytest.raises(UnsupportedCondition, match="IpAddress"):
        evaluate([p], Authorization("s3:GetObject", "*", {"aws:SourceIp": "10.1.2.3"}))


def test_denial_message_uses_aws_wording_naming_role_action_and_resource():
    request = Authorization("sagemaker:AddTags", "arn:aws:sagemaker:us-east-1:1:training-job/j")
    message = denial_message("arn:aws:sts::1:assumed-role/R/states", request, Decision.IMPLICIT_DENY)
    assert message == (
        "User: arn:aws:sts::1:assumed-role/R/states is not authorized to perform: sagemaker:AddTags on "
        "resource: arn:aws:sagemaker:us-east-1:1:training-job/j because no identity-based policy allows "
        "the sagemaker:AddTags action"
    )
    assert "explicit deny" in denial_message("u", request, Decision.EXPLICIT_DENY)


# ------------------------------------------------------------------------------------- iam_requests


def call(service, operation, params=None, **kw) -> Call:
    return Call(
        service=service, operation=operation, params=params or {}, region="us-east-1", account="1", **kw
    )


def test_sagemaker_create_with_tags_needs_add_tags_and_pass_role_towards_sagemaker():
    found = authorizations(
        call(
            "sagemaker",
            "CreateTrainingJob",
            {
                "TrainingJobName": "Run-FM",
                "RoleArn": "arn:aws:iam::1:role/sm",
                "Tags": [{"Key": "k", "Value": "v"}],
            },
        )
    )
    arn = "arn:aws:sagemaker:us-east-1:1:training-job/run-fm"  # SageMaker ARNs carry lower-cased names
    assert found == [
        Authorization("sagemaker:CreateTrainingJob", arn),
        Authorization("sagemaker:AddTags", arn),
        Authorization(
            "iam:PassRole", "arn:aws:iam::1:role/sm", {"iam:PassedToService": "sagemaker.amazonaws.com"}
        ),
    ]
    model = authorizations(call("sagemaker", "CreateModel", {"ModelName": "m", "ExecutionRoleArn": "r"}))
    assert [a.action for a in model] == ["sagemaker:CreateModel", "iam:PassRole"]


def test_dynamodb_transactions_are_authorised_item_by_item_and_batches_per_table():
    transact = call(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Put": {"TableName": "t"}},
                {"Update": {"TableName": "t"}},
                {"ConditionCheck": {"TableName": "u"}},
            ]
        },
    )
    table = "arn:aws:dynamodb:us-east-1:1:table/"
    assert authorizations(transact) == [
        Authorization("dynamodb:PutItem", table + "t"),
        Authorization("dynamodb:UpdateItem", table + "t"),
        Authorization("dynamodb:ConditionCheckItem", table + "u"),
    ]
    batch = call("dynamodb", "BatchWriteItem", {"RequestItems": {"t": [], "u": []}})
    assert [a.resource for a in authorizations(batch)] == [table + "t", table + "u"]


def test_s3_listing_carries_the_prefix_and_a_missing_object_needs_list_bucket():
    listing = call("s3", "ListBucket", {"prefix": "runs/r/"}, resource=BUCKET)
    assert authorizations(listing) == [Authorization("s3:ListBucket", BUCKET, {"s3:prefix": "runs/r/"})]
    missing = call("s3", "GetObject", resource=f"{BUCKET}/runs/r/m.json", object_exists=False)
    assert [a.action for a in authorizations(missing)] == ["s3:GetObject", "s3:ListBucket"]
    copy = call("s3", "PutObject", resource=f"{BUCKET}/b", headers={"x-amz-copy-source": "/data/a%20b"})
    assert authorizations(copy)[1] == Authorization("s3:GetObject", f"{BUCKET}/a b")


def test_lambda_invoke_cloudwatch_namespace_events_rules_and_fallback():
    invoke = call("lambda", "Invoke", {"FunctionName": "f", "Qualifier": "live"})
    assert authorizations(invoke) == [
        Authorization("lambda:InvokeFunction", "arn:aws:lambda:us-east-1:1:function:f:live")
    ]
    metric = call("monitoring", "PutMetricData", {"Namespace": "TopX"})
    assert authorizations(metric) == [
        Authorization("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "TopX"})
    ]
    rule = call("events", "PutTargets", {"Rule": "StepFunctionsGetEventsForSageMakerTrainingJobsRule"})
    assert authorizations(rule)[0].resource.endswith(
        ":rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule"
    )
    assert authorizations(call("logs", "CreateLogGroup")) == [Authorization("logs:CreateLogGroup", "*")]
