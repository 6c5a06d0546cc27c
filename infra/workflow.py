"""The state machine: guard -> prepare -> train FM -> repackage -> train k-NN -> model -> transform
-> evaluate -> publish -> report, with Catch -> notify (SNS) -> Fail on every failure path up to
publish. The report runs once the recommendations are live: its failure is notified, never a Fail.

SageMaker states are plain ASL (CustomState) so the request is exactly what SageMaker,
docs/state-machine.md and the local runner see; the request bodies and their IAM statements come
from `infra/sagemaker_tasks.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra import sagemaker_tasks as sm
from infra.config import AppConfig
from infra.nag import acknowledge, finding, policy_wildcards
from infra.retention import retention
from pipeline_steps.common.layout import RunLayout

if TYPE_CHECKING:
    from infra.spark_prepare import SparkPrepare

LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# Step Functions reports every SageMaker API error, throttling included, under this one name; a
# failed *job* is States.TaskFailed and is never retried (a new job would need a new name).
SAGEMAKER_TRANSIENT = ["SageMaker.AmazonSageMakerException"]
SNS_TRANSIENT = ["SNS.ThrottledException", "SNS.InternalErrorException", "SNS.KMSThrottlingException"]
PUBLISH_MAX_CONCURRENCY = 10  # parallel DynamoDB writers; each already batches and backs off


class Workflow(Construct):
    """`state_machine` and its `log_group`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        functions: Mapping[str, lambda_.IFunction],
        sagemaker_role: iam.IRole,
        topic: sns.ITopic,
        bucket: s3.IBucket,
        key: kms.IKey | None = None,
        spark_prepare: SparkPrepare | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._bucket = bucket
        self._role = sagemaker_role
        self._key_arn = key.key_arn if key is not None else None
        region = Stack.of(self).region

        failed = sfn.Fail(self, "RunFailed", error_path="$.error.Error", cause_path="$.error.Cause")
        notify = tasks.SnsPublish(
            self,
            "NotifyFailure",
            topic=topic,
            subject=f"{config.project}: pipeline run failed",
            message=sfn.TaskInput.from_object(
                {
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "run": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "error": sfn.JsonPath.string_at("$.error.Error"),
                    "cause": sfn.JsonPath.string_at("$.error.Cause"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(errors=SNS_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        # If even the notification fails, the run still ends in Fail with the original error.
        notify.add_catch(failed, errors=["States.ALL"], result_path="$.notify_error")
        notify.next(failed)
        self._notify = notify

        guard = self._lambda(
            "Guard",
            functions["guard"],
            {
                "execution_name": sfn.JsonPath.string_at("$$.Execution.Name"),
                "execution_arn": sfn.JsonPath.string_at("$$.Execution.Id"),
                "state_machine_arn": sfn.JsonPath.string_at("$$.StateMachine.Id"),
                "start_time": sfn.JsonPath.string_at("$$.Execution.StartTime"),
            },
            "$.run",
        )
        skipped = sfn.Succeed(
            self, "SkippedAnotherRunActive", comment="an earlier execution is still running"
        )
        prepare = self._lambda("Prepare", functions["prepare"], {"run_id": "$.run.run_id"}, "$.prepare")
        train_fm = self._training("TrainFM", "fm", with_test=True)
        train_fm_no_test = self._training("TrainFMWithoutTest", "fm", with_test=False)
        repackage = self._lambda(
            "Repackage",
            functions["repackage"],
            {
                "run_id": "$.run.run_id",
                "manifest_key": "$.prepare.manifest_key",
                "model_s3_uri": "$.fm.model_s3_uri",
            },
            "$.repackage",
        )
        train_knn = self._training("TrainKNN", "knn", with_test=False)
        create_model = self._task(
            "CreateModel",
            "arn:aws:states:::sagemaker:createModel",
            sm.model_request(config, region=region, role_arn=sagemaker_role.role_arn),
            sm.MODEL_RESULT,
            "$.model",
        )
        transform = self._task(
            "Transform",
            "arn:aws:states:::sagemaker:createTransformJob.sync",
            sm.transform_request(config, key_arn=self._key_arn),
            sm.TRANSFORM_RESULT,
            "$.transform",
            # A transform job has no StoppingCondition of its own: this bound is the only one.
            timeout_seconds=config.transform.max_runtime_seconds,
            stop=("stopTransformJob", {"TransformJobName.$": "$.run.transform_job_name"}),
        )
        run_outputs = {
            "run_id": "$.run.run_id",
            "manifest_key": "$.prepare.manifest_key",
            "queries_manifest_key": "$.repackage.queries_manifest_key",
            "transform_output_s3_uri": "$.transform.output_s3_uri",
        }
        evaluate = self._lambda("Evaluate", functions["evaluate"], run_outputs, "$.evaluate")
        publish = self._publish(functions, run_outputs)
        done = sfn.Succeed(self, "Published")
        report = self._report(functions["report"], run_outputs, topic, done)

        has_test = (
            sfn.Choice(self, "HasTestSet")
            .when(sfn.Condition.string_equals("$.prepare.test_s3_uri", ""), train_fm_no_test)
            .otherwise(train_fm)
        )
        train_fm.next(repackage)
        train_fm_no_test.next(repackage)
        repackage.next(train_knn).next(create_model).next(transform).next(evaluate).next(publish).next(report)
        prepare.next(has_test)
        first: sfn.IChainable = prepare
        if spark_prepare is not None:  # the Spark job writes the run; the Lambda returns its result
            first = self._spark_prepare(spark_prepare, bucket).next(prepare)
        definition = guard.next(
            sfn.Choice(self, "AnotherRunActive")
            .when(sfn.Condition.boolean_equals("$.run.skip", True), skipped)
            .otherwise(first)
        )

        self.log_group = logs.LogGroup(
            self, "Logs", retention=retention(config.log_retention_days), removal_policy=RemovalPolicy.DESTROY
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.hours(config.state_machine_timeout_hours),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            comment=f"{config.project}: retrain FM, index with k-NN, publish top-x to DynamoDB",
        )
        statements, sagemaker_arns = sm.state_machine_statements(
            sagemaker_role.role_arn, spark_prepare.role.role_arn if spark_prepare is not None else None
        )
        for statement in statements:
            self.state_machine.role.add_to_principal_policy(statement)
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "Log delivery and X-Ray actions (CDK-generated for logging/tracing) have no resource-level "
            "permissions; SageMaker job and model names carry the run id, known only at run time.",
            applies_to=["Resource::*", *(finding(self, a) for a in sagemaker_arns)],
        )
        batches = self._bucket.arn_for_objects(RunLayout.wildcard().publish_batches)
        self.state_machine.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:GetObject"], resources=[batches])
        )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "The publish Map's ItemReader reads each run's publish-batches.json; the run id is known "
            "only at run time (the key pattern names the object exactly otherwise).",
            applies_to=[finding(self, batches)],
        )
        fan_out_policy = self.state_machine.node.try_find_child("DistributedMapPolicy")
        if isinstance(fan_out_policy, iam.Policy):
            acknowledge(
                fan_out_policy,
                "AwsSolutions-IAM5",
                "CDK's Distributed Map grant: child executions of this state machine only (their names "
                "are generated per run).",
                applies_to=policy_wildcards(fan_out_policy),
            )
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "CDK's Lambda task grant: our own step functions' ARNs and their ':*' versions/aliases.",
            applies_to=[finding(self, f"{f.function_arn}:*") for f in functions.values()],
        )

    # -- state builders ------------------------------------------------------------------------

    def _lambda(
        self,
        name: str,
        function: lambda_.IFunction,
        payload: Mapping[str, str] | None,
        result_path: str,
        *,
        catch: bool = True,
    ) -> tasks.LambdaInvoke:
        """A Lambda task whose result is the handler's return value; `payload` None = the state input."""

        def value(v: str) -> Any:
            return sfn.JsonPath.string_at(v) if v.startswith("$") else v

        task = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=function,
            payload=None
            if payload is None
            else sfn.TaskInput.from_object({k: value(v) for k, v in payload.items()}),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
        task.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=6, backoff_rate=2)
        if catch:  # a Map iteration's failure is caught on the Map state instead
            task.add_catch(self._notify, errors=["States.ALL"], result_path="$.error")
        return task

    def _report(
        self,
        function: lambda_.IFunction,
        run_outputs: Mapping[str, str],
        topic: sns.ITopic,
        done: sfn.Succeed,
    ) -> tasks.LambdaInvoke:
        """The report, after Publish: the run is already live, so a failed report must not fail it.

        Its Catch notifies the topic (subject "...report failed") and the execution still ends in
        Published; so does a failed notification. The error is kept in `$.report_error`.
        """
        payload = {
            **run_outputs,
            "fm_job_name": "$.fm.job_name",
            "fm_model_s3_uri": "$.fm.model_s3_uri",
            "execution_arn": "$$.Execution.Id",
        }
        report = self._lambda("Report", function, payload, "$.report", catch=False)
        notify = tasks.SnsPublish(
            self,
            "NotifyReportFailure",
            topic=topic,
            subject=f"{self._config.project}: run report failed (the run is published)",
            message=sfn.TaskInput.from_object(
                {
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "run": sfn.JsonPath.string_at("$$.Execution.Name"),
                    "error": sfn.JsonPath.string_at("$.report_error.Error"),
                    "cause": sfn.JsonPath.string_at("$.report_error.Cause"),
                }
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        notify.add_retry(errors=SNS_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        notify.add_catch(done, errors=["States.ALL"], result_path="$.notify_error")
        notify.next(done)
        report.add_catch(notify, errors=["States.ALL"], result_path="$.report_error")
        report.next(done)
        return report

    def _spark_prepare(self, spark: SparkPrepare, bucket: s3.IBucket) -> sfn.CustomState:
        """The Spark prepare's processing job (decision 0016), before the prepare Lambda."""
        config = self._config
        step_config = json.dumps(dict(config.steps.for_step("prepare")), sort_keys=True)  # = the Lambda's
        request = sm.processing_request(
            config,
            region=Stack.of(self).region,
            role_arn=spark.role.role_arn,
            bucket_name=bucket.bucket_name,
            script_uri=spark.script.s3_object_url,
            script_name=spark.script.s3_object_key,
            package_uri=spark.package.s3_object_url,
            step_config=step_config,
            key_arn=self._key_arn,
        )
        return self._task(
            "PrepareSpark",
            "arn:aws:states:::sagemaker:createProcessingJob.sync",
            request,
            sm.PROCESSING_RESULT,
            "$.prepare_job",
            timeout_seconds=sm.PROCESSING_MAX_RUNTIME_SECONDS + 3600,  # + provisioning, image pull
            stop=("stopProcessingJob", {"ProcessingJobName.$": sm.PROCESSING_JOB_NAME}),
        )

    def _training(self, name: str, algorithm: str, *, with_test: bool) -> sfn.CustomState:
        region = Stack.of(self).region
        job_name = "$.run.fm_job_name" if algorithm == "fm" else "$.run.knn_job_name"
        return self._task(
            name,
            "arn:aws:states:::sagemaker:createTrainingJob.sync",
            sm.training_request(
                self._config,
                algorithm,
                region=region,
                role_arn=self._role.role_arn,
                with_test=with_test,
                key_arn=self._key_arn,
            ),
            sm.TRAINING_RESULT,
            "$.fm" if algorithm == "fm" else "$.knn",
            timeout_seconds=sm.training_timeout(self._config, algorithm),
            stop=("stopTrainingJob", {"TrainingJobName.$": job_name}),
        )

    def _task(
        self,
        name: str,
        resource: str,
        parameters: Mapping[str, Any],
        selector: Mapping[str, str],
        result_path: str,
        timeout_seconds: int | None = None,
        stop: tuple[str, Mapping[str, str]] | None = None,
    ) -> sfn.CustomState:
        """A SageMaker task; `stop` = (SageMaker API, its parameters) to stop the job on States.Timeout."""
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": resource.replace("arn:aws:", f"arn:{Aws.PARTITION}:", 1),
            "Parameters": parameters,
            "ResultSelector": selector,
            "ResultPath": result_path,
        }
        if timeout_seconds:
            state["TimeoutSeconds"] = timeout_seconds
        task = sfn.CustomState(self, name, state_json=state)
        task.add_retry(
            errors=SAGEMAKER_TRANSIENT, interval=Duration.seconds(15), max_attempts=4, backoff_rate=2
        )
        if stop is not None:
            # Before the States.ALL catch: the first matching Catch wins (ASL spec, "Fallback states").
            task.add_catch(self._stop_state(name, *stop), errors=["States.Timeout"], result_path="$.error")
        task.add_catch(self._notify, errors=["States.ALL"], result_path="$.error")
        return task

    def _stop_state(self, name: str, api: str, parameters: Mapping[str, str]) -> sfn.CustomState:
        return stop_job_state(self, f"Stop{name}", api=api, parameters=parameters, notify=self._notify)

    def _publish(
        self, functions: Mapping[str, lambda_.IFunction], payload: Mapping[str, str]
    ) -> sfn.IChainable:
        """Choice at run time on repackage's user count (decision 0015): one `Publish` Lambda up to
        `topx:publish.fan_out_above_users` users, a Distributed Map over ranges of the query parts above."""
        single = self._lambda("Publish", functions["publish"], payload, "$.publish")
        # One child execution per range of query parts (decision 0015 "Publish fan-out in batches"):
        # repackage writes the ranges as a JSON array (common/batches.py) and the Map reads it with
        # s3:getObject, ReaderConfig.InputType JSON; each item's value is {"first_part", "last_part",
        # "n_lists"} (https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html).
        # `bucket_name_path` rather than `bucket`: CDK would grant s3:GetObject on the whole bucket;
        # the exact key pattern is granted in __init__ (`publish_batches_grant`).
        fan_out = sfn.DistributedMap(
            self,
            "PublishParts",
            item_reader=sfn.S3JsonItemReader(
                bucket_name_path=self._bucket.bucket_name,
                key=sfn.JsonPath.string_at("$.repackage.publish_batches_key"),
            ),
            item_selector={
                **{k: sfn.JsonPath.string_at(v) for k, v in payload.items()},
                "first_part": sfn.JsonPath.number_at("$$.Map.Item.Value.first_part"),
                "last_part": sfn.JsonPath.number_at("$$.Map.Item.Value.last_part"),
            },
            max_concurrency=PUBLISH_MAX_CONCURRENCY,
            result_path=sfn.JsonPath.DISCARD,
        )
        fan_out.item_processor(self._lambda("PublishPart", functions["publish_part"], None, "$", catch=False))
        fan_out.add_catch(self._notify, errors=["States.ALL"], result_path="$.error")
        finalize = self._lambda("PublishFinalize", functions["publish_finalize"], payload, "$.publish")
        fan_out.next(finalize)
        threshold = self._config.steps.publish.fan_out_above_users
        return (
            sfn.Choice(self, "PublishFanOut")
            .when(sfn.Condition.number_greater_than("$.repackage.n_users", threshold), fan_out)
            .otherwise(single)
            .afterwards()
        )


def stop_job_state(
    scope: Construct, construct_id: str, *, api: str, parameters: Mapping[str, str], notify: sfn.IChainable
) -> sfn.CustomState:
    """The state that stops the job of a timed-out `.sync` task, then goes to `notify`.

    When TimeoutSeconds fires, Step Functions fails the task with States.Timeout; AWS documents
    no guarantee that the SageMaker job is stopped then (the `.sync` pattern's page,
    https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html, says nothing
    of it), and a job left running keeps billing and may still write its output. So the Catch
    stops it explicitly with the AWS SDK integration (`arn:aws:states:::aws-sdk:sagemaker:stop*Job`,
    https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html); the
    role's sagemaker:Stop*Job on the job patterns covers it. `$.error` (States.Timeout) is kept
    for the notification; a failed stop is recorded in `$.stop_error` and still notifies.
    (A module function, not a Workflow method, so the local-mode test app builds the same state.)
    """
    stop = sfn.CustomState(
        scope,
        construct_id,
        state_json={
            "Type": "Task",
            "Resource": f"arn:{Aws.PARTITION}:states:::aws-sdk:sagemaker:{api}",
            "Parameters": dict(parameters),
            "ResultPath": sfn.JsonPath.DISCARD,  # renders as null: keep the state data
        },
    )
    stop.add_catch(notify, errors=["States.ALL"], result_path="$.stop_error")
    stop.next(notify)
    return stop
