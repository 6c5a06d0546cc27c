#!/usr/bin/env python3
"""Real-AWS integration test: run by `make integ` through the pinned `integ-runner` (needs credentials).

It deploys the two project stacks exactly as `app.py` builds them (own `topx:project`, schedule off,
small instances, few FM epochs, storage that deletes itself on teardown), a fixtures stack and an
assertions stack (aws-cdk.integ-tests-alpha), then:

1. uploads a slice of MovieLens 100k (users 1..200) to the data bucket's `input/` prefix; the slice
   is cut at synth time from the dataset cache (`pipeline_steps.datasets.movielens`), never stored
   in the repository (GroupLens terms);
2. starts one execution of the pipeline, waits for SUCCEEDED, then reads the pointer item and one
   user's item from DynamoDB and checks they name that execution's run;
3. runs a k-NN probe next to it: three item vectors and one query, encoded at synth time with the
   project's own `encode_dense`, trained with the built-in `knn:1` (INNER_PRODUCT) and scored by a
   batch transform with `Accept: application/jsonlines; verbose=true`, the pipeline's settings.
   A small Lambda lists the transform's output objects and parses every line; the assertion checks
   the output object's name, the line's keys and the neighbour order against the constants below.
   The Lambda prints the raw `.out` to its log group (kept after teardown) and returns it in the
   probe execution's output.

integ-runner then destroys every stack. `tests/integ/test_integ_app.py` synthesizes this app
offline (no AWS) and compares it with the checked-in snapshot `integ/snapshot/`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # integ-runner runs this file directly, from the repository root
    sys.path.insert(0, str(ROOT))


def _runner_context() -> dict[str, Any]:
    """The context the CDK CLI passes in, without the feature flags integ-runner adds.

    integ-runner synthesizes with its own list of recommended feature flags; the project's users
    deploy with none (cdk.json sets only `topx:` keys). Exactly those flags are dropped (other
    context, e.g. a bootstrap qualifier, is kept) so that the stacks under test are the ones users
    deploy, and this app synthesizes the same under integ-runner, the CDK CLI and the offline test.
    Must run before aws_cdk is imported: the CDK reads these variables once.
    """
    context: dict[str, Any] = {}
    raw = os.environ.pop("CDK_CONTEXT_JSON", None)
    if raw:
        context.update(json.loads(raw))
    overflow = os.environ.pop("CONTEXT_OVERFLOW_LOCATION_ENV", None)
    if overflow and Path(overflow).is_file():
        context.update(json.loads(Path(overflow).read_text()))
    flags = ROOT / "node_modules" / "@aws-cdk" / "integ-runner" / "lib" / "recommended-feature-flags.json"
    added = set(json.loads(flags.read_text())) if flags.is_file() else set()
    return {k: v for k, v in context.items() if k not in added}


_CLI_CONTEXT = _runner_context()

import aws_cdk as cdk  # noqa: E402
import numpy as np  # noqa: E402
from aws_cdk import aws_ec2 as ec2  # noqa: E402
from aws_cdk import aws_iam as iam  # noqa: E402
from aws_cdk import aws_lambda as lambda_  # noqa: E402
from aws_cdk import aws_logs as logs  # noqa: E402
from aws_cdk import aws_s3 as s3  # noqa: E402
from aws_cdk import aws_s3_deployment as s3deploy  # noqa: E402
from aws_cdk import aws_stepfunctions as sfn  # noqa: E402
from aws_cdk import aws_stepfunctions_tasks as tasks  # noqa: E402
from aws_cdk.integ_tests_alpha import ExpectedResult, IApiCall, IntegTest, Match  # noqa: E402
from constructs import Construct  # noqa: E402

from app import add_project_stacks, default_context  # noqa: E402
from infra import images  # noqa: E402
from infra.config import AppConfig  # noqa: E402
from pipeline_steps.datasets import movielens  # noqa: E402
from pipeline_steps.formats.recordio import encode_dense  # noqa: E402

PROJECT = "fm-knn-topx-integ"
# The smallest general-purpose SageMaker size, for both training jobs and both transforms. Not checked
# against the built-in algorithms' supported-instance lists (no account to ask): if SageMaker rejects
# it for one of them, the run fails with that message; change it here.
INSTANCE_TYPE = "ml.m5.large"
# Overrides of cdk.json for the stacks under test (everything else is the default users deploy).
CONTEXT: dict[str, Any] = {
    "topx:project": PROJECT,
    "topx:schedule": "off",
    "topx:state_machine_timeout_hours": 2,
    "topx:log_retention_days": 7,
    "topx:fm.instance_type": INSTANCE_TYPE,
    "topx:fm.max_runtime_seconds": 1800,
    "topx:fm.hyperparameters.epochs": "2",
    "topx:fm.hyperparameters.num_factors": "16",
    "topx:knn.instance_type": INSTANCE_TYPE,
    "topx:knn.max_runtime_seconds": 1800,
    "topx:transform.instance_type": INSTANCE_TYPE,
    "topx:transform.max_runtime_seconds": 1800,
}
# Region: `topx:region` of cdk.json unless the Makefile passes another one (INTEG_REGION).
REGION_ENV = "TOPX_INTEG_REGION"

# MovieLens slice: every rating of users 1..MAX_USER (u.data order): 19,747 ratings.
MAX_USER = 200
SLICE_KEY = "ml-100k-users-1-200.data"
INPUT_PREFIX = "input/"
USER_ID = "1"  # whose published item is read back (user 1 has 272 ratings: always trained)

# Waiting for the executions. A CloudFormation custom resource cannot wait longer than an hour.
PIPELINE_TIMEOUT = cdk.Duration.minutes(50)
PROBE_TIMEOUT = cdk.Duration.minutes(45)
POLL_INTERVAL = cdk.Duration.minutes(1)
ENDED = "^(SUCCEEDED|FAILED|TIMED_OUT|ABORTED)$"  # Step Functions' terminal execution statuses

# ---- k-NN probe -----------------------------------------------------------------------------
# Three items (labels 1, 2, 3) and one query, all exact in float32. Inner products with the query:
# item 1 -> 2.0, item 2 -> 3.0 (the best), item 3 -> 1.0.
PROBE_ITEMS = [[2.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
PROBE_LABELS = [1.0, 2.0, 3.0]
PROBE_QUERY = [[1.0, 0.0, 0.0, 0.0]]
PROBE_PREFIX = "probe/"
PROBE_TRAIN_KEY = "train/items.rec"  # under PROBE_PREFIX
PROBE_QUERY_KEY = "queries/query.rec"  # under PROBE_PREFIX
PROBE_HYPERPARAMETERS = {
    "feature_dim": "4",
    "k": "3",
    "sample_size": "3",
    "predictor_type": "classifier",
    "index_metric": "INNER_PRODUCT",
    "index_type": "faiss.Flat",
}
PROBE_ACCEPT = "application/jsonlines; verbose=true"  # what the pipeline's transform asks for
# What the project assumes and a first real run settles (docs/contracts.md, formats/knn_output.py):
# - the output object is named after the input object plus ".out" (TransformOutput docs), directly
#   under S3OutputPath;
# - one JSON object per non-blank line, with exactly these keys;
# - neighbours sorted by "distance" ascending whatever the metric, so with INNER_PRODUCT the best
#   item (label 2) is LAST. Distances are reported rounded to 4 decimals by the reader Lambda.
# Blank lines are counted and reported (`blank_lines`) but not asserted: the reader skips them.
EXPECTED_OUTPUT_OBJECTS = ["query.rec.out"]
EXPECTED_LINE_KEYS = ["distances", "labels", "predicted_label"]
EXPECTED_LABELS = [3.0, 1.0, 2.0]
EXPECTED_DISTANCES = [1.0, 2.0, 3.0]

# Lists the transform output under a prefix, logs every object raw and parses every line.
PROBE_READER = """
import json
import boto3

s3 = boto3.client("s3")


def handler(event, context):
    bucket, prefix = event["bucket"], event["prefix"]
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    raw, records, blank, errors = {}, [], 0, []
    for key in sorted(keys):
        text = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", "replace")
        raw[key[len(prefix):]] = text
        print("KNN_PROBE_RAW_OUT s3://%s/%s %s" % (bucket, key, json.dumps(text)))
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                blank += 1
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                errors.append("%s:%d: %s" % (key, number, e))
                continue
            records.append({
                "keys": sorted(obj) if isinstance(obj, dict) else None,
                "labels": obj.get("labels") if isinstance(obj, dict) else None,
                "distances": [round(float(d), 4) for d in obj.get("distances") or []]
                if isinstance(obj, dict) else None,
                "predicted_label": obj.get("predicted_label") if isinstance(obj, dict) else None,
            })
    report = {
        "prefix": prefix,
        "object_names": sorted(raw),
        "records": records,
        "blank_lines": blank,
        "ends_with_newline": {name: text.endswith("\\n") for name, text in raw.items()},
        "errors": errors,
        "raw": raw,
    }
    print("KNN_PROBE_REPORT " + json.dumps(report))
    return report
"""


# Not integ-runner's `integ_pipeline.py.snapshot/` (a full cloud assembly, which integ-runner
# rewrites after every run): a normalized subset that `make integ-snapshot` writes.
SNAPSHOT_DIR = Path(__file__).resolve().with_name("snapshot")
# The stacks this file defines; the project's own stacks are checked by tests/integ, not snapshotted
# (they change with every infra edit and are covered by tests/infra).
SNAPSHOT_STACKS = (f"{PROJECT}-fixtures", f"{PROJECT}-assertions")
_ASSET_HASH = re.compile(r"[0-9a-f]{64}")


def slice_dir(cache: Path | None = None) -> Path:
    """Write the MovieLens slice (from the dataset cache, downloaded once) into a cache folder."""
    data = movielens.load(cache)
    out = (cache or movielens.cache_dir()) / "integ" / "ml-100k-slice"
    target = out / SLICE_KEY
    if not target.exists():
        rows = [
            line
            for line in data.u_data.read_text(encoding="utf-8").splitlines()
            if line.split("\t", 1)[0].isdigit() and int(line.split("\t", 1)[0]) <= MAX_USER
        ]
        out.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text("\n".join(rows) + "\n", encoding="utf-8")
        tmp.replace(target)
    return out


def probe_dir(cache: Path | None = None) -> Path:
    """Write the probe's RecordIO files (the project's encoder; deterministic bytes) into a cache folder."""
    out = (cache or movielens.cache_dir()) / "integ" / "knn-probe"
    files = {
        PROBE_TRAIN_KEY: encode_dense(np.array(PROBE_ITEMS, np.float32), np.array(PROBE_LABELS, np.float32)),
        PROBE_QUERY_KEY: encode_dense(np.array(PROBE_QUERY, np.float32)),
    }
    for key, data in files.items():
        path = out / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
    return out


class KnnProbe(Construct):
    """Bucket + data, a SageMaker role, and the state machine train -> model -> transform -> read."""

    def __init__(self, scope: Construct, construct_id: str, *, region: str, data: Path) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=cdk.RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        s3deploy.BucketDeployment(
            self,
            "Data",
            sources=[s3deploy.Source.asset(str(data))],
            destination_bucket=self.bucket,
            destination_key_prefix=PROBE_PREFIX,
        )
        role = iam.Role(self, "SageMakerRole", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
        self.bucket.grant_read_write(role)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer",
                ],
                resources=[images.repository_arn("knn", region)],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "ecr:GetAuthorizationToken",
                    "cloudwatch:PutMetricData",
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                resources=["*"],
            )
        )
        image = tasks.DockerImage.from_registry(images.image_uri("knn", region))
        name = sfn.JsonPath.format("knn-probe-{}", sfn.JsonPath.execution_name)
        instance = ec2.InstanceType(INSTANCE_TYPE.removeprefix("ml."))
        # s3:// URIs like the pipeline's (S3Location.from_bucket would render https:// URLs).
        locations = sfn.Pass(
            self,
            "Locations",
            parameters={
                "train": f"s3://{self.bucket.bucket_name}/{PROBE_PREFIX}{PROBE_TRAIN_KEY.split('/')[0]}/",
                "model": f"s3://{self.bucket.bucket_name}/{PROBE_PREFIX}model/",
            },
            result_path="$.locations",
        )
        train = tasks.SageMakerCreateTrainingJob(
            self,
            "Train",
            training_job_name=name,
            role=role,
            algorithm_specification=tasks.AlgorithmSpecification(
                training_image=image, training_input_mode=tasks.InputMode.FILE
            ),
            hyperparameters=PROBE_HYPERPARAMETERS,
            input_data_config=[
                tasks.Channel(
                    channel_name="train",
                    content_type="application/x-recordio-protobuf",
                    data_source=tasks.DataSource(
                        s3_data_source=tasks.S3DataSource(
                            s3_location=tasks.S3Location.from_json_expression("$.locations.train"),
                            s3_data_type=tasks.S3DataType.S3_PREFIX,
                            s3_data_distribution_type=tasks.S3DataDistributionType.FULLY_REPLICATED,
                        )
                    ),
                )
            ],
            output_data_config=tasks.OutputDataConfig(
                s3_output_location=tasks.S3Location.from_json_expression("$.locations.model")
            ),
            resource_config=tasks.ResourceConfig(
                instance_count=1, instance_type=instance, volume_size=cdk.Size.gibibytes(1)
            ),
            stopping_condition=tasks.StoppingCondition(max_runtime=cdk.Duration.minutes(30)),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_selector={"model.$": "$.ModelArtifacts.S3ModelArtifacts"},
            result_path="$.train",
        )
        model = tasks.SageMakerCreateModel(
            self,
            "CreateModel",
            model_name=name,
            role=role,
            primary_container=tasks.ContainerDefinition(
                image=image,
                mode=tasks.Mode.SINGLE_MODEL,
                model_s3_location=tasks.S3Location.from_json_expression("$.train.model"),
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        output_prefix = sfn.JsonPath.format(PROBE_PREFIX + "out/{}/", sfn.JsonPath.execution_name)
        transform = tasks.SageMakerCreateTransformJob(
            self,
            "Transform",
            transform_job_name=name,
            model_name=name,
            role=role,
            transform_input=tasks.TransformInput(
                transform_data_source=tasks.TransformDataSource(
                    s3_data_source=tasks.TransformS3DataSource(
                        s3_uri=f"s3://{self.bucket.bucket_name}/{PROBE_PREFIX}{PROBE_QUERY_KEY.split('/')[0]}/",
                        s3_data_type=tasks.S3DataType.S3_PREFIX,
                    )
                ),
                content_type="application/x-recordio-protobuf",
                split_type=tasks.SplitType.RECORD_IO,
            ),
            transform_output=tasks.TransformOutput(
                s3_output_path=sfn.JsonPath.format(
                    f"s3://{self.bucket.bucket_name}/{PROBE_PREFIX}out/{{}}/", sfn.JsonPath.execution_name
                ),
                accept=PROBE_ACCEPT,
                assemble_with=tasks.AssembleWith.LINE,
            ),
            transform_resources=tasks.TransformResources(instance_count=1, instance_type=instance),
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            result_path=sfn.JsonPath.DISCARD,
        )
        reader_logs = logs.LogGroup(
            self,
            "ReaderLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.reader = lambda_.Function(
            self,
            "Reader",
            runtime=lambda_.Runtime.PYTHON_3_12,
            handler="index.handler",
            code=lambda_.Code.from_inline(PROBE_READER),
            timeout=cdk.Duration.minutes(1),
            log_group=reader_logs,
        )
        self.bucket.grant_read(self.reader)
        read = tasks.LambdaInvoke(
            self,
            "ReadOutput",
            lambda_function=self.reader,
            payload=sfn.TaskInput.from_object({"bucket": self.bucket.bucket_name, "prefix": output_prefix}),
            payload_response_only=True,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(
                locations.next(train).next(model).next(transform).next(read)
            ),
            timeout=cdk.Duration.hours(1),
            comment=f"{PROJECT}: k-NN probe (3 items, 1 query, INNER_PRODUCT, verbose JSON lines)",
        )


class FixturesStack(cdk.Stack):
    """The MovieLens slice in the project's bucket (`input/`) and the k-NN probe."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, data: Path, probe: Path, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        bucket = s3.Bucket.from_bucket_attributes(
            self,
            "DataBucket",
            bucket_arn=cdk.Fn.import_value(f"{config.project}-bucket-arn"),
            bucket_name=cdk.Fn.import_value(f"{config.project}-bucket-name"),
        )
        s3deploy.BucketDeployment(
            self,
            "Interactions",
            sources=[s3deploy.Source.asset(str(data))],
            destination_bucket=bucket,
            destination_key_prefix=INPUT_PREFIX,
        )
        self.probe = KnnProbe(self, "KnnProbe", region=config.region, data=probe)


def placeholder_dir(root: Path) -> Path:
    """Two made-up ratings under the slice's file name: offline synths need no MovieLens download."""
    out = root / "placeholder-interactions"
    out.mkdir(parents=True, exist_ok=True)
    (out / SLICE_KEY).write_text("1\t1\t5\t881250949\n2\t1\t3\t881250950\n", encoding="utf-8")
    return out


def execution_name(execution_arn: str) -> str:
    """The last field of `arn:aws:states:<region>:<account>:execution:<machine>:<name>` (a token)."""
    return cdk.Fn.select(7, cdk.Fn.split(":", execution_arn))


def build_integ_app(
    *, outdir: str | None = None, data: Path | None = None, cache: Path | None = None
) -> cdk.App:
    """The integ app. `data`: a folder holding the interaction file (default: the MovieLens slice);
    `cache`: where the generated files go (default: the project's dataset cache)."""
    app = cdk.App(context=default_context(), post_cli_context={**_CLI_CONTEXT, **CONTEXT}, outdir=outdir)
    context = app.node.get_all_context()
    region = os.environ.get(REGION_ENV) or context["topx:region"]
    context["topx:region"] = region
    config = AppConfig.from_context(context)  # no account: templates stay account-agnostic
    storage, pipeline = add_project_stacks(app, config, disposable_storage=True)
    env = cdk.Environment(region=config.region)
    fixtures = FixturesStack(
        app,
        f"{PROJECT}-fixtures",
        config=config,
        data=data or slice_dir(cache),
        probe=probe_dir(cache),
        env=env,
    )
    fixtures.add_stack_dependency(storage, "uploads into the data bucket imported by export name")
    assertions = cdk.Stack(app, f"{PROJECT}-assertions", env=env)
    assertions.add_stack_dependency(fixtures, "the interactions must be in the bucket before the run starts")
    integ = IntegTest(
        app,
        "Integ",
        test_cases=[storage, pipeline, fixtures],
        assertion_stack=assertions,
        regions=[config.region],
        stack_update_workflow=False,  # the snapshot keeps no assets; there is nothing to update from
        diff_assets=False,
    )
    pipeline_run = add_pipeline_assertions(integ, pipeline.state_machine.state_machine_arn, config)
    probe_run = add_probe_assertions(integ, fixtures.probe.state_machine.state_machine_arn)
    # Read by integ/run.py to print the probe's report (raw .out included) before teardown.
    cdk.CfnOutput(assertions, "PipelineExecutionArn", value=pipeline_run)
    cdk.CfnOutput(assertions, "ProbeExecutionArn", value=probe_run)
    return app


def add_pipeline_assertions(integ: IntegTest, state_machine_arn: str, config: AppConfig) -> str:
    """Start the pipeline, wait for its end, expect SUCCEEDED, check the pointer and one user's item.

    Returns the execution ARN."""
    table = cdk.Fn.import_value(f"{config.project}-table-name")
    start = integ.assertions.aws_api_call(
        "StepFunctions", "startExecution", {"stateMachineArn": state_machine_arn, "input": "{}"}
    )
    execution_arn = start.get_att_string("executionArn")
    run_id = execution_name(execution_arn)  # a UUID: the guard keeps it as the run id
    ended = wait_until_ended(integ, execution_arn, PIPELINE_TIMEOUT)
    done = integ.assertions.aws_api_call(
        "StepFunctions", "describeExecution", {"executionArn": execution_arn}
    )
    done.expect(ExpectedResult.object_like({"status": "SUCCEEDED"}))
    pointer = integ.assertions.aws_api_call(
        "DynamoDB",
        "getItem",
        {"TableName": table, "Key": {"pk": {"S": "pointer"}, "sk": {"S": "current"}}, "ConsistentRead": True},
    )
    pointer.expect(
        ExpectedResult.object_like(
            {"Item": {"pk": {"S": "pointer"}, "sk": {"S": "current"}, "run_id": {"S": run_id}}}
        )
    )
    user = integ.assertions.aws_api_call(
        "DynamoDB",
        "getItem",
        {
            "TableName": table,
            "Key": {"pk": {"S": f"u#{USER_ID}"}, "sk": {"S": run_id}},
            "ConsistentRead": True,
        },
    )
    user.expect(
        ExpectedResult.object_like(
            {
                "Item": {
                    "pk": {"S": f"u#{USER_ID}"},
                    "sk": {"S": run_id},
                    "items": {"S": Match.string_like_regexp(r"\S")},
                    "expires_at": {"N": Match.string_like_regexp(r"^[0-9]+$")},
                }
            }
        )
    )
    start.next(ended).next(done).next(pointer).next(user)
    return execution_arn


def add_probe_assertions(integ: IntegTest, state_machine_arn: str) -> str:
    """Start the probe, wait for its end, expect SUCCEEDED and the expected report; returns the ARN."""
    start = integ.assertions.aws_api_call(
        "StepFunctions", "startExecution", {"stateMachineArn": state_machine_arn, "input": "{}"}
    )
    execution_arn = start.get_att_string("executionArn")
    ended = wait_until_ended(integ, execution_arn, PROBE_TIMEOUT)
    done = integ.assertions.aws_api_call(
        "StepFunctions", "describeExecution", {"executionArn": execution_arn}
    )
    done.expect(
        ExpectedResult.object_like(
            {
                "status": "SUCCEEDED",
                "output": Match.serialized_json(
                    Match.object_like(
                        {
                            "object_names": EXPECTED_OUTPUT_OBJECTS,
                            "errors": [],
                            "records": [
                                Match.object_like(
                                    {
                                        "keys": EXPECTED_LINE_KEYS,
                                        "labels": EXPECTED_LABELS,
                                        "distances": EXPECTED_DISTANCES,
                                    }
                                )
                            ],
                        }
                    )
                ),
            }
        )
    )
    start.next(ended).next(done)
    return execution_arn


def wait_until_ended(integ: IntegTest, execution_arn: str, timeout: cdk.Duration) -> IApiCall:
    """Poll until the execution has ended, however it ended: a failed run fails the next assertion at
    once (with its error and cause in the message) instead of being polled until the timeout."""
    call = integ.assertions.aws_api_call(
        "StepFunctions", "describeExecution", {"executionArn": execution_arn}
    )
    call.expect(ExpectedResult.object_like({"status": Match.string_like_regexp(ENDED)}))
    call.wait_for_assertions(total_timeout=timeout, interval=POLL_INTERVAL, backoff_rate=1)
    return call


def normalized(template: Any) -> Any:
    """A template without what changes on every synth or edit: asset hashes and assertion salts."""
    if isinstance(template, dict):
        return {k: normalized(v) for k, v in template.items() if k != "salt"}
    if isinstance(template, list):
        return [normalized(v) for v in template]
    if isinstance(template, str):
        return _ASSET_HASH.sub("<asset-hash>", template)
    return template


def snapshot_of(assembly: Path) -> dict[str, Any]:
    """The snapshotted part of a cloud assembly: the test manifest and this file's stacks, normalized."""
    files = ["integ.json", *(f"{stack}.template.json" for stack in SNAPSHOT_STACKS)]
    found = {}
    for name in files:
        document = json.loads((assembly / name).read_text())
        if name == "integ.json":
            document.pop("minimumCliVersion", None)  # follows the installed aws-cdk-lib, not this test
        else:  # what the CLI adds and a plain synth does not: path metadata, version reporting
            resources = document.get("Resources", {})
            resources.pop("CDKMetadata", None)
            for resource in resources.values():
                resource.pop("Metadata", None)
            document.get("Conditions", {}).pop("CDKMetadataAvailable", None)
            if not document.get("Conditions", True):
                document.pop("Conditions")
        found[name] = normalized(document)
    return found


def write_snapshot() -> None:
    """Synthesize offline (placeholder interactions) and rewrite SNAPSHOT_DIR (`make integ-snapshot`)."""
    with tempfile.TemporaryDirectory() as tmp:
        build_integ_app(outdir=f"{tmp}/out", data=placeholder_dir(Path(tmp)), cache=Path(tmp)).synth()
        snapshot = snapshot_of(Path(tmp) / "out")
    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for old in SNAPSHOT_DIR.glob("*.json"):
        old.unlink()
    for name, document in snapshot.items():
        (SNAPSHOT_DIR / name).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(snapshot)} files to {SNAPSHOT_DIR.relative_to(ROOT)}/")


if __name__ == "__main__":
    if sys.argv[1:] == ["--snapshot"]:
        write_snapshot()
    else:  # integ-runner or the CDK CLI (integ/run.py): CDK_OUTDIR says where
        build_integ_app().synth()
