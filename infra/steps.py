"""The step Lambda functions (guard, prepare, repackage, evaluate, publish, report), each with its own role.

One code asset (`pipeline_steps/` + numpy) serves every function; handlers differ. Each role gets
exactly the S3 prefixes of docs/contracts.md its step reads or writes, and only the table actions
it uses. Every function logs to its own log group (retention from config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Size, Stack
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
from infra.kms_access import allow_key
from infra.nag import acknowledge, finding
from infra.retention import retention
from pipeline_steps.common.layout import RunLayout


@dataclass(frozen=True)
class StepAccess:
    """S3 key patterns (relative to the bucket) a step reads and writes, and its table actions."""

    read: Sequence[str]
    write: Sequence[str] = ()
    delete: Sequence[str] = ()  # prepare removes the leftovers of an incomplete earlier attempt
    table_actions: Sequence[str] = ()
    read_keys: Sequence[str] = ()  # exact object keys (the filter files), no wildcard


def step_access(config: AppConfig) -> dict[str, StepAccess]:
    prepare = config.steps.prepare
    # the interactions and the side-feature metadata (docs/decisions/0018)
    inputs = [prepare.input_prefix, prepare.test_prefix, prepare.user_features, prepare.item_features]
    inputs = [p if p.endswith("/") else p + "/" for p in inputs if p]
    # publish: GetItem (pointer, run record), UpdateItem (run record), BatchWriteItem (users), PutItem
    # (fallback); the flip's TransactWriteItems is authorised by its Put + Update. Query (status) and
    # ConditionCheckItem (rollback) are the operator CLI's, not the Lambda's.
    rw_table = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem")
    run = RunLayout.wildcard()  # key patterns: `*` for the run id
    results = [run.prepared, run.queries, run.transform, run.evaluation]  # evaluate/publish read these
    # The business filter objects (common/filters.py): exactly those keys, for the two steps that read
    # them (repackage sizes k by them, publish applies them).
    filters = list(config.steps.publish.filter_keys().values())
    return {
        "guard": StepAccess(read=()),
        "prepare": StepAccess(read=[*inputs, run.prepared], write=[run.prepared], delete=[run.prepared]),
        "repackage": StepAccess(
            read=[run.prepared, run.fm], write=[run.knn_train, run.queries], read_keys=filters
        ),
        "evaluate": StepAccess(
            # + the k-NN index's item vectors: the cold protocols rank from them (decision 0018)
            read=[*results, run.knn_train],
            write=[run.evaluation],
            table_actions=("dynamodb:GetItem",),  # the pointer (gate vs the published run)
        ),
        "publish": StepAccess(read=results, table_actions=rw_table, read_keys=filters),
        # report: this run's and the previous run's outputs, the FM output (the local trainer's
        # per-epoch metrics.json); the pointer and the run records (Query pk=run) for the history.
        "report": StepAccess(
            read=[*results, run.fm],
            write=[run.report],
            table_actions=("dynamodb:GetItem", "dynamodb:Query"),
        ),
    }


class StepFunctions(Construct):
    """`functions[name]` for name in guard, prepare, repackage, evaluate, publish, report."""

    HANDLERS: Mapping[str, str] = {
        **{
            name: f"pipeline_steps.{name}.handler.handler"
            for name in ("guard", "prepare", "repackage", "evaluate", "publish", "report")
        },
        # The Distributed Map branch of the publish Choice: one iteration per part, then the flip.
        "publish_part": "pipeline_steps.publish.handler.part_handler",
        "publish_finalize": "pipeline_steps.publish.handler.finalize_handler",
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
        self._config, self._bucket, self._table, self._key = config, bucket, table, key
        self._code = bundling.step_code()
        self._access = step_access(config)
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}  # each function's execution role
        self.log_groups: dict[str, logs.LogGroup] = {}
        for name, handler in self.HANDLERS.items():
            self._function(name, handler, step="publish" if name.startswith("publish") else name)
        self._allow_metrics("evaluate", config.steps.evaluate.cloudwatch_namespace)
        self._allow_metrics("report", config.steps.report.cloudwatch_namespace)
        self._allow_describe_fm()

    def _allow_metrics(self, name: str, namespace: str) -> None:
        """cloudwatch:PutMetricData, only into the quality namespace (condition key cloudwatch:namespace,
        https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/iam-cw-condition-keys-namespace.html);
        the action has no resource-level permissions, hence Resource "*"."""
        if not namespace:
            return
        role = self.roles[name]
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": namespace}},
            )
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "cloudwatch:PutMetricData has no resource-level permissions; limited to the configured "
            "namespace by condition.",
            applies_to=["Resource::*"],
        )

    def _allow_describe_fm(self) -> None:
        """The report reads the FM job's FinalMetricDataList (DescribeTrainingJob), read-only."""
        role = self.roles["report"]
        jobs = Stack.of(self).format_arn(service="sagemaker", resource="training-job", resource_name="*")
        statement = iam.PolicyStatement(actions=["sagemaker:DescribeTrainingJob"], resources=[jobs])
        role.add_to_principal_policy(statement)
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "Read-only DescribeTrainingJob: the FM job's name carries the run id, known only at run "
            "time (the state machine's own grant uses the same training-job/* pattern).",
            applies_to=[finding(self, jobs)],
        )

    def _function(self, name: str, handler: str, *, step: str) -> None:
        config, access = self._config, self._access[step]
        env = {"BUCKET_NAME": self._bucket.bucket_name}
        if step == "guard":
            env["PROJECT_NAME"] = config.project  # the first part of the SageMaker names it derives
        else:
            env["STEP_CONFIG"] = json.dumps(dict(config.steps.for_step(step)), sort_keys=True)
        if access.table_actions:
            env["TABLE_NAME"] = self._table.table_name
        cid = "".join(part.title() for part in name.split("_"))
        log_group = logs.LogGroup(
            self,
            f"{cid}Logs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(self, f"{cid}Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        log_group.grant_write(role)
        small = name == "guard"  # lists executions and formats names: no data
        function = lambda_.Function(
            self,
            cid,
            runtime=bundling.RUNTIME,
            architecture=bundling.ARCHITECTURE,
            code=self._code,
            handler=handler,
            role=role,
            environment=env,
            log_group=log_group,
            memory_size=256 if small else config.lambdas.memory_mb,
            timeout=Duration.seconds(30 if small else config.lambdas.timeout_seconds),
            ephemeral_storage_size=Size.mebibytes(512 if small else config.lambdas.ephemeral_mb),
            description=f"{config.project} pipeline step: {name}",
        )
        wildcards = _grant_prefixes(role, self._bucket, access)
        if access.table_actions:
            self._table.grant(role, *access.table_actions)
        if not small:
            allow_key(self._key, role)
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
        self.roles[name] = role
        self.log_groups[name] = log_group

    def allow_report(self, state_machine: sfn.StateMachine) -> None:
        """Let the report read its own execution's history (seconds per state).

        A separate policy, as for the guard: the state machine depends on the function already.
        Executions of this state machine only (`execution:<state machine name>:*`).
        """
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        policy = iam.Policy(
            self,
            "ReportExecutionHistory",
            roles=[self.roles["report"]],
            statements=[iam.PolicyStatement(actions=["states:GetExecutionHistory"], resources=[executions])],
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5",
            "Executions are named by run id at run time; the pattern is this state machine's executions.",
            applies_to=[finding(self, executions)],
        )

    def allow_guard(self, state_machine: sfn.IStateMachine) -> None:
        """Let the guard list this state machine's executions.

        A separate policy (not the role's default policy, which the function depends on) breaks the
        function -> policy -> state machine -> function cycle.
        """
        iam.Policy(
            self,
            "GuardListExecutions",
            roles=[self.roles["guard"]],
            statements=[
                iam.PolicyStatement(
                    actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]
                )
            ],
        )


def _grant_prefixes(role: iam.IRole, bucket: s3.IBucket, access: StepAccess) -> list[str]:
    """Object-level Get/Put/Delete on exactly these key patterns, and ListBucket.

    ListBucket has no `s3:prefix` condition on purpose: S3 answers a GetObject on a missing key with
    404 NoSuchKey only to callers allowed to list the bucket (otherwise 403), and the steps rely on
    NoSuchKey (prepare's "manifest already there?" check, evaluate's and publish's fallbacks).
    It exposes key names, never object contents. Returns the wildcard object ARNs granted.
    """
    arns = {
        name: [bucket.arn_for_objects(p + "*") for p in getattr(access, name)]
        for name in ("read", "write", "delete")
    }
    for name, action in (("read", "s3:GetObject"), ("write", "s3:PutObject"), ("delete", "s3:DeleteObject")):
        if arns[name]:
            role.add_to_principal_policy(iam.PolicyStatement(actions=[action], resources=arns[name]))
    if access.read_keys:
        exact = [bucket.arn_for_objects(key) for key in access.read_keys]
        role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:GetObject"], resources=exact))
    if any(arns.values()) or access.read_keys:
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )
    return list(dict.fromkeys(arns["read"] + arns["write"] + arns["delete"]))
