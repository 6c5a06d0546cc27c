"""CDK as the oracle of the state machine's IAM: what CDK's own SageMaker tasks grant, ours allows.

A separate in-memory CDK app builds a state machine from CDK's `SageMakerCreateTrainingJob` (RUN_JOB),
`SageMakerCreateModel` and `SageMakerCreateTransformJob` (RUN_JOB); every action CDK grants to that
state machine's role (not to the SageMaker roles CDK creates) must be allowed by our pipeline's
state machine role on the concrete ARNs our runs use: the jobs and model named by the guard,
the two managed EventBridge rules, our SageMaker role. Our resources may be narrower than CDK's.
When CDK learns a new permission (as `sagemaker:AddTags`, aws/aws-cdk#27264 and #32536), this fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest

from pipeline_steps.guard.core import run_names
from tests.infra.conftest import ACCOUNT, REGION, Synth, resources

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
SAGEMAKER = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
RULES = f"arn:aws:events:{REGION}:{ACCOUNT}:rule"
Statement = dict[str, Any]


def _list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _resolver(template: dict[str, Any]):
    """CloudFormation values -> strings: pseudo parameters, and `GetAtt X.Arn` of roles/functions."""
    types = {k: v["Type"] for k, v in template["Resources"].items()}

    def resolve(value: Any) -> str:
        if isinstance(value, str):
            return value
        (fn, arg), *_ = value.items()
        if fn == "Fn::Join":
            return arg[0].join(resolve(part) for part in arg[1])
        if fn == "Ref":
            return PSEUDO.get(arg, f"unresolved:{arg}")
        if fn == "Fn::GetAtt" and arg[1] == "Arn" and types.get(arg[0]) == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{arg[0]}"
        if fn == "Fn::GetAtt" and arg[1] == "Arn" and types.get(arg[0]) == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{arg[0]}"
        return f"unresolved:{fn}:{arg}"

    return resolve


def state_machine_statements(template: dict[str, Any]) -> list[Statement]:
    """The statements of every policy attached to the (one) state machine's role, resolved."""
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    role = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    resolve = _resolver(template)
    found = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                resolved = dict(statement)
                if "Resource" in statement:
                    resolved["Resource"] = [resolve(r) for r in _list(statement["Resource"])]
                found.append(resolved)
    assert found
    return found


def _glob(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcards: `*` any run of characters, `?` one character."""
    regex = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(regex, text, re.IGNORECASE if ignore_case else 0) is not None


def _condition_holds(condition: dict[str, dict[str, Any]], context: dict[str, str]) -> bool:
    for operator, pairs in condition.items():
        for key, values in pairs.items():
            if key not in context:
                return False
            if operator in ("StringEquals", "ArnEquals"):
                ok = context[key] in _list(values)
            elif operator in ("StringLike", "ArnLike"):
                ok = any(_glob(v, context[key]) for v in _list(values))
            else:  # an operator this evaluator does not know never allows
                ok = False
            if not ok:
                return False
    return True


def allowed(statements: Iterable[Statement], action: str, resource: str, context: dict[str, str]) -> bool:
    """Identity-policy evaluation: some Allow matches (action, resource, condition), no Deny does."""

    def matches(s: Statement) -> bool:
        if "NotAction" in s or "NotResource" in s:
            return s["Effect"] == "Deny"  # not used by us; count it against us
        return (
            any(_glob(a, action, ignore_case=True) for a in _list(s["Action"]))
            and any(_glob(r, resource) for r in s["Resource"])
            and _condition_holds(s.get("Condition", {}), context)
        )

    statements = list(statements)
    return any(matches(s) for s in statements if s["Effect"] == "Allow") and not any(
        matches(s) for s in statements if s["Effect"] == "Deny"
    )


@pytest.fixture(scope="module")
def cdk_grants() -> list[Statement]:
    """What CDK's own SageMaker tasks put on their state machine's role."""
    import aws_cdk as cdk
    from aws_cdk import aws_stepfunctions as sfn
    from aws_cdk import aws_stepfunctions_tasks as tasks
    from aws_cdk.assertions import Template

    app = cdk.App()
    stack = cdk.Stack(app, "Oracle", env=cdk.Environment(account=ACCOUNT, region=REGION))
    image = tasks.DockerImage.from_registry(f"382416733822.dkr.ecr.{REGION}.amazonaws.com/knn:1")
    train = tasks.SageMakerCreateTrainingJob(
        stack,
        "Train",
        training_job_name=sfn.JsonPath.string_at("$.run.fm_job_name"),
        algorithm_specification=tasks.AlgorithmSpecification(
            training_image=image, training_input_mode=tasks.InputMode.FILE
        ),
        input_data_config=[
            tasks.Channel(
                channel_name="train",
                data_source=tasks.DataSource(
                    s3_data_source=tasks.S3DataSource(
                        s3_location=tasks.S3Location.from_json_expression("$.prepare.train_s3_uri")
                    )
                ),
            )
        ],
        output_data_config=tasks.OutputDataConfig(
            s3_output_location=tasks.S3Location.from_json_expression("$.run.fm_output_s3_uri")
        ),
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
    )
    model = tasks.SageMakerCreateModel(
        stack,
        "Model",
        model_name=sfn.JsonPath.string_at("$.run.model_name"),
        primary_container=tasks.ContainerDefinition(
            image=image, model_s3_location=tasks.S3Location.from_json_expression("$.knn.model_s3_uri")
        ),
    )
    transform = tasks.SageMakerCreateTransformJob(
        stack,
        "Transform",
        transform_job_name=sfn.JsonPath.string_at("$.run.transform_job_name"),
        model_name=sfn.JsonPath.string_at("$.run.model_name"),
        transform_input=tasks.TransformInput(
            transform_data_source=tasks.TransformDataSource(
                s3_data_source=tasks.TransformS3DataSource(s3_uri="s3://bucket/queries/")
            )
        ),
        transform_output=tasks.TransformOutput(s3_output_path="s3://bucket/transform/"),
        integration_pattern=sfn.IntegrationPattern.RUN_JOB,
    )
    sfn.StateMachine(
        stack, "Machine", definition_body=sfn.DefinitionBody.from_chainable(train.next(model).next(transform))
    )
    return state_machine_statements(Template.from_stack(stack).to_json())


@pytest.fixture(scope="module")
def ours(default_synth: Synth) -> tuple[list[Statement], list[str]]:
    """Our state machine role's statements, and the concrete ARNs one of our runs uses."""
    template = default_synth.template("pipeline")
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine")
    names = run_names(
        "2026-11-27-nightly",
        "bucket",
        project="fm-knn-topx",
        execution_arn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{machine}:2026-11-27-nightly",
        start_time="2026-11-27T03:00:00.000Z",
    )
    (sagemaker_role,) = [
        logical
        for logical, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    ]
    concrete = [
        f"{SAGEMAKER}:training-job/{names['fm_job_name']}",
        f"{SAGEMAKER}:training-job/{names['knn_job_name']}",
        f"{SAGEMAKER}:model/{names['model_name']}",
        f"{SAGEMAKER}:transform-job/{names['transform_job_name']}",
        f"{RULES}/StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        f"{RULES}/StepFunctionsGetEventsForSageMakerTransformJobsRule",
        f"arn:aws:iam::{ACCOUNT}:role/{sagemaker_role}",
    ]
    return state_machine_statements(template), concrete


def _service(arn: str) -> str:
    return arn.split(":")[2]


def _requests(cdk_grants: list[Statement], concrete: list[str]) -> list[tuple[str, str, dict[str, str]]]:
    """(action, our concrete resource, request context) for every action CDK grants.

    A CDK resource is mapped onto ours by matching it as a pattern; the role CDK creates for
    SageMaker stands for any role (we pass our own). Conditions CDK attaches (PassedToService) are
    the request context: our statement must allow that request.
    """
    requests = []
    for statement in cdk_grants:
        assert statement["Effect"] == "Allow"
        context = {
            k: _list(v)[0] for pairs in statement.get("Condition", {}).values() for k, v in pairs.items()
        }
        for action in _list(statement["Action"]):
            for pattern in statement["Resource"]:
                pattern = re.sub(r"(arn:aws:iam::\d+:role/).*", r"\1*", pattern)
                service = action.split(":")[0]
                targets = [c for c in concrete if _service(c) == service and _glob(pattern, c)]
                assert targets, (action, pattern)  # CDK's grant is about something our runs use
                requests += [(action, target, context) for target in targets]
    return requests


def test_cdk_grants_what_the_sagemaker_integrations_need(cdk_grants: list[Statement]) -> None:
    actions = {a for s in cdk_grants for a in _list(s["Action"])}
    assert {
        "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
        "sagemaker:CreateModel", "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob",
        "sagemaker:StopTransformJob", "sagemaker:ListTags", "sagemaker:AddTags", "iam:PassRole",
        "events:PutTargets", "events:PutRule", "events:DescribeRule",
    } <= actions  # fmt: skip


def test_our_state_machine_role_allows_every_cdk_grant_on_our_own_resources(
    cdk_grants: list[Statement], ours: tuple[list[Statement], list[str]]
) -> None:
    statements, concrete = ours
    requests = _requests(cdk_grants, concrete)
    denied = [(a, r) for a, r, context in requests if not allowed(statements, a, r, context)]
    assert denied == []
    # PassRole only with the condition CDK uses, and only our own role.
    passes = [r for a, r, _ in requests if a == "iam:PassRole"]
    assert passes and set(passes) == {concrete[-1]}
    assert not allowed(
        statements, "iam:PassRole", concrete[-1], {"iam:PassedToService": "lambda.amazonaws.com"}
    )
    assert not allowed(statements, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/Other", {
        "iam:PassedToService": "sagemaker.amazonaws.com"
    })  # fmt: skip


def test_the_oracle_would_catch_a_missing_add_tags(
    cdk_grants: list[Statement], ours: tuple[list[Statement], list[str]]
) -> None:
    """Without AddTags (aws/aws-cdk#26012, #32294) the CreateTrainingJob of a `.sync` task is denied."""
    statements, concrete = ours
    without = [
        {**s, "Action": [a for a in _list(s["Action"]) if a != "sagemaker:AddTags"]}
        for s in statements
        if _list(s["Action"]) != ["sagemaker:AddTags"]
    ]
    requests = _requests(cdk_grants, concrete)
    denied = {(a, r) for a, r, context in requests if not allowed(without, a, r, context)}
    assert denied == {
        ("sagemaker:AddTags", concrete[0]),
        ("sagemaker:AddTags", concrete[1]),
        ("sagemaker:AddTags", concrete[3]),
    }
