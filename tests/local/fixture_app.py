"""A small CDK app with the same integrations as the project's pipeline, run by the adapter tests.

Two stacks (storage exports, pipeline imports), a Lambda asset holding ``tests/local/fakes.py``,
the SageMaker ``.sync`` tasks, ``createModel``, a Catch -> SNS -> Fail path, the project's
stop-on-timeout path (a short TimeoutSeconds on the transform, Catch States.Timeout -> the
project's own ``stop_job_state`` -> SNS), and resources moto's CloudFormation cannot create
(alarm, bucket policy) that the deploy step must leave out.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from infra.workflow import stop_job_state
from tests.local.fakes import TRANSFORM_TIMEOUT_SECONDS

HERE = Path(__file__).resolve().parent
IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/{}:1"


def _code_dir() -> str:
    staging = Path(tempfile.mkdtemp(prefix="fixture-code-"))
    (staging / "tests" / "local").mkdir(parents=True)
    (staging / "tests" / "__init__.py").write_text("")
    (staging / "tests" / "local" / "__init__.py").write_text("")
    shutil.copy(HERE / "fakes.py", staging / "tests" / "local" / "fakes.py")
    return str(staging)


class Storage(cdk.Stack):
    def __init__(self, scope, cid, **kw):
        super().__init__(scope, cid, **kw)
        self.bucket = s3.Bucket(self, "Data", enforce_ssl=True)
        self.table = dynamodb.TableV2(
            self,
            "Recs",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            time_to_live_attribute="expires_at",
        )


class Pipeline(cdk.Stack):
    def __init__(self, scope, cid, *, storage: Storage, **kw):
        super().__init__(scope, cid, **kw)
        code = lambda_.Code.from_asset(_code_dir())
        env = {
            "BUCKET_NAME": storage.bucket.bucket_name,
            "TABLE_NAME": storage.table.table_name,
            "STEP_CONFIG": '{"x": 3}',
        }

        def fn(name: str, handler: str) -> lambda_.Function:
            f = lambda_.Function(
                self, name, runtime=lambda_.Runtime.PYTHON_3_11, handler=handler, code=code, environment=env
            )
            storage.bucket.grant_read_write(f)
            return f

        echo, marker, gate = (
            fn("Echo", "tests.local.fakes.echo_env"),
            fn("Marker", "tests.local.fakes.put_marker"),
            fn("Gate", "tests.local.fakes.fail"),
        )
        role = iam.Role(self, "SageMakerRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        storage.bucket.grant_read_write(role)
        # What SageMaker does with a job's role before the algorithm runs: pull the image, write logs.
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:GetAuthorizationToken",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                ],
                resources=["*"],
            )
        )
        topic = sns.Topic(self, "Failures")
        notify = tasks.SnsPublish(
            self, "Notify", topic=topic, message=sfn.TaskInput.from_json_path_at("$.error")
        )
        failed = sfn.Fail(self, "Failed", error="PipelineFailed")
        notify.next(failed)
        run_id = sfn.JsonPath.execution_name
        train = tasks.SageMakerCreateTrainingJob(
            self,
            "Train",
            training_job_name=sfn.JsonPath.format("{}-fm", run_id),
            role=role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=tasks.DockerImage.from_registry(IMAGE.format("factorization-machines")),
                training_input_mode=tasks.InputMode.FILE,
            ),
            hyperparameters={"epochs": sfn.JsonPath.string_at("$.epochs")},
            input_data_config=[
                tasks.Channel(
                    channel_name="train",
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(
                            s3_location=tasks.S3Location.from_bucket(storage.bucket, "in/"),
                        )
                    ),
                )
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_bucket(storage.bucket, "out/")
            ),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path="$.fm",
        )
        model = tasks.SageMakerCreateModel(
            self,
            "Model",
            model_name=sfn.JsonPath.format("{}-knn", run_id),
            primary_container=tasks.ContainerDefinition(
                image=tasks.DockerImage.from_registry(IMAGE.format("knn")),
                model_s3_location=tasks.S3Location.from_json_expression(
                    "$.fm.ModelArtifacts.S3ModelArtifacts"
                ),
            ),
            role=role,
            result_path=sfn.JsonPath.DISCARD,
        )
        transform = tasks.SageMakerCreateTransformJob(
            self,
            "Transform",
            transform_job_name=sfn.JsonPath.format("{}-tr", run_id),
            model_name=sfn.JsonPath.format("{}-knn", run_id),
            role=role,
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(
                        s3_uri=storage.bucket.s3_url_for_object("q/"),
                    )
                )
            ),
            transform_output=tasks.TransformOutput(s3_output_path=storage.bucket.s3_url_for_object("tr/")),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path="$.tr",
            task_timeout=sfn.Timeout.duration(cdk.Duration.seconds(TRANSFORM_TIMEOUT_SECONDS)),
        )
        # As infra/workflow.py does: the timeout's Catch comes before the States.ALL one (loop below).
        stop = stop_job_state(
            self,
            "StopTransform",
            api="stopTransformJob",
            parameters={"TransformJobName.$": "States.Format('{}-tr', $$.Execution.Name)"},
            notify=notify,
        )
        transform.add_catch(stop, errors=["States.Timeout"], result_path="$.error")
        steps = [
            tasks.LambdaInvoke(
                self,
                "EchoStep",
                lambda_function=echo,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"run_id": run_id}),
                result_path="$.echo",
            ),
            tasks.LambdaInvoke(
                self,
                "MarkerStep",
                lambda_function=marker,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"run_id": run_id}),
                result_path="$.marker",
            ),
            train,
            model,
            transform,
            tasks.LambdaInvoke(
                self,
                "GateStep",
                lambda_function=gate,
                payload_response_only=True,
                payload=sfn.TaskInput.from_object({"run_id": run_id}),
                result_path="$.gate",
            ),
        ]
        for step in steps:
            step.add_catch(notify, result_path="$.error")
        chain = sfn.Chain.start(steps[0])
        for step in steps[1:]:
            chain = chain.next(step)
        machine = sfn.StateMachine(self, "Machine", definition_body=sfn.DefinitionBody.from_chainable(chain))
        cloudwatch.Alarm(
            self, "FailedRuns", metric=machine.metric_failed(), threshold=1, evaluation_periods=1
        )


def build_app(context: dict | None = None) -> cdk.App:
    app = cdk.App(context=context or {})
    storage = Storage(app, "fixture-storage")
    Pipeline(app, "fixture-pipeline", storage=storage)
    return app


if __name__ == "__main__":
    build_app().synth()
