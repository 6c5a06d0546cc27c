"""The step Lambda functions (guard, prepare, repackage, evaluate, publish), each with its own role.

One code asset (`pipeline_steps/` + numpy) serves every function; handlers differ. Each role gets
exactly the S3 prefixes of docs/contracts.md its step reads or writes, and only the table actions
it uses. Every function logs to its own log group (retention from config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra import bundling
from infra.config import AppConfig
from infra.nag import acknowledge, finding
from infra.retention import retention


@dataclass(frozen=True)
class StepAccess:
    """S3 key patterns (relative to the bucket) a step reads and writes, and its table actions."""

    read: Sequence[str]
    write: Sequence[str] = ()
    table_actions: Sequence[str] = ()


def step_access(config: AppConfig) -> dict[str, StepAccess]:
    prepare = config.steps.prepare
    inputs = [prepare["input_prefix"], prepare["test_prefix"]]
    inputs = [p if p.endswith("/") else p + "/" for p in inputs if p]
    rw_table = ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem")
    rw_table += ("dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DescribeTable")
    return {
        "guard": StepAccess(read=()),
        "prepare": StepAccess(read=[*inputs, "runs/*/prepared/"], write=["runs/*/prepared/"]),
        "repackage": StepAccess(
            read=["runs/*/prepared/", "runs/*/fm/", "runs/*/knn/train/", "runs/*/knn/queries/"],
            write=["runs/*/knn/train/", "runs/*/knn/queries/"],
        ),
        "evaluate": StepAccess(
            read=["runs/*/prepared/", "runs/*/knn/queries/", "runs/*/transform/", "runs/*/evaluation/"],
            write=["runs/*/evaluation/"],
            table_actions=("dynamodb:GetItem", "dynamodb:Query"),
        ),
        "publish": StepAccess(
            read=["runs/*/prepared/", "runs/*/knn/queries/", "runs/*/transform/", "runs/*/evaluation/"],
            table_actions=rw_table,
        ),
    }


class StepFunctions(Construct):
    """`functions[name]` for name in guard, prepare, repackage, evaluate, publish."""

    HANDLERS: Mapping[str, str] = {
        name: f"pipeline_steps.{name}.handler.handler"
        for name in ("guard", "prepare", "repackage", "evaluate", "publish")
    }

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        key: kms.IKey | None,
    ) -> None:
        super().__init__(scope, construct_id)
        code = bundling.step_code()
        access = step_access(config)
        self.functions: dict[str, lambda_.Function] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name, handler in self.HANDLERS.items():
            env = {"BUCKET_NAME": bucket.bucket_name}
            if name != "guard":
                env["STEP_CONFIG"] = json.dumps(dict(config.steps.for_step(name)), sort_keys=True)
            if access[name].table_actions:
                env["TABLE_NAME"] = table.table_name
            log_group = logs.LogGroup(
                self,
                f"{name.title()}Logs",
                retention=retention(config.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            )
            role = iam.Role(
                self, f"{name.title()}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com")
            )
            log_group.grant_write(role)
            small = name == "guard"
            function = lambda_.Function(
                self,
                name.title(),
                runtime=bundling.RUNTIME,
                architecture=bundling.ARCHITECTURE,
                code=code,
                handler=handler,
                role=role,
                environment=env,
                log_group=log_group,
                memory_size=256 if small else config.lambdas.memory_mb,
                timeout=Duration.seconds(30 if small else config.lambdas.timeout_seconds),
                ephemeral_storage_size=Size.mebibytes(512 if small else config.lambdas.ephemeral_mb),
                description=f"{config.project} pipeline step: {name}",
            )
            wildcards = _grant_prefixes(role, bucket, access[name])
            if access[name].table_actions:
                table.grant(role, *access[name].table_actions)
            if key is not None and name != "guard":
                key.grant_encrypt_decrypt(role)
            if wildcards:
                acknowledge(
                    role,
                    "AwsSolutions-IAM5",
                    "Object access is limited to the contract's per-run prefixes; the run id segment is "
                    "only known at run time (runs/<run_id>/...), hence the '*' in that path segment.",
                    applies_to=[finding(self, r) for r in wildcards],
                )
            acknowledge(
                function,
                "AwsSolutions-L1",
                f"Pinned to {bundling.RUNTIME.name}: the bundle's wheels are resolved for CPython "
                f"{bundling.PYTHON_VERSION} (infra/bundling.py); moving runtime means re-testing that set.",
            )
            self.functions[name] = function
            self.log_groups[name] = log_group
        namespace = config.steps.evaluate.get("cloudwatch_namespace")
        if namespace:
            self.functions["evaluate"].add_to_role_policy(
                iam.PolicyStatement(
                    actions=["cloudwatch:PutMetricData"],
                    resources=["*"],
                    conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
                )
            )

    def allow_guard(self, state_machine: sfn.IStateMachine) -> None:
        """Let the guard list this state machine's executions.

        A separate policy (not the role's default policy, which the function depends on) breaks the
        function -> policy -> state machine -> function cycle.
        """
        iam.Policy(
            self,
            "GuardListExecutions",
            roles=[self.functions["guard"].role],
            statements=[
                iam.PolicyStatement(
                    actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]
                )
            ],
        )


def _grant_prefixes(role: iam.IRole, bucket: s3.IBucket, access: StepAccess) -> list[str]:
    """Object-level Get/Put on exactly these key patterns; ListBucket only under them.

    Returns the wildcard object ARNs granted (for the cdk-nag acknowledgement).
    """
    reads = [bucket.arn_for_objects(p + "*") for p in access.read]
    writes = [bucket.arn_for_objects(p + "*") for p in access.write]
    if reads:
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=reads))
    if writes:
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:PutObject"], resources=writes))
    prefixes = sorted({*access.read, *access.write})
    if prefixes:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [p + "*" for p in prefixes]}},
            )
        )
    return list(dict.fromkeys(reads + writes))
