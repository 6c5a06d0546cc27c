"""SageMaker request bodies of the state machine's Task states, and the IAM they need.

Pure functions of the typed config: what they return is the ASL `Parameters` (JSONPath `.$` keys
read the state data, see docs/state-machine.md), so tests can check a request without a synth.

Security settings (docs/deploy.md, `topx:sagemaker_security`, `topx:vpc`, `topx:kms`):

- `EnableNetworkIsolation` on both training jobs and on the model (hence the transform): the
  built-in algorithms need no network. "Run Training and Inference Containers in Internet-Free
  Mode" (https://docs.aws.amazon.com/sagemaker/latest/dg/mkt-algo-model-internet-free.html): the
  containers make no outbound calls, get no AWS credentials, and multi-instance training talks only
  to its peers; SageMaker still downloads the channels and uploads the outputs with the execution role.
- `EnableInterContainerTrafficEncryption` on a training job of more than one instance: "Protect
  Communications Between ML Compute Instances in a Distributed Training Job"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/train-encrypt.html); it does not affect a
  single instance, so it is only sent where it means something.
- With the customer key: `OutputDataConfig.KmsKeyId` / `TransformOutput.KmsKeyId` (S3 SSE-KMS of
  what the jobs write; the execution role needs kms:Encrypt, API reference OutputDataConfig) and
  `ResourceConfig.VolumeKmsKeyId` / `TransformResources.VolumeKmsKeyId` (the ML storage volumes).
- `VpcConfig` (subnets, security groups) on both training jobs and on the model: "Give SageMaker
  Training Jobs Access to Resources in Your Amazon VPC"
  (https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html). A transform job has no VpcConfig
  of its own: it runs with its model's.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Aws
from aws_cdk import aws_iam as iam

from infra import images
from infra.config import AppConfig, VpcConfig
from pipeline_steps.prepare import config as paths

RECORDIO = "application/x-recordio-protobuf"
SYNC_RULES = (
    "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
    "StepFunctionsGetEventsForSageMakerTransformJobsRule",
)
TRAINING_RESULT = {"job_name.$": "$.TrainingJobName", "model_s3_uri.$": "$.ModelArtifacts.S3ModelArtifacts"}
MODEL_RESULT = {"model_arn.$": "$.ModelArn"}
TRANSFORM_RESULT = {"job_name.$": "$.TransformJobName", "output_s3_uri.$": "$.TransformOutput.S3OutputPath"}


def vpc_request(vpc: VpcConfig) -> dict[str, list[str]]:
    return {"SecurityGroupIds": list(vpc.security_group_ids), "Subnets": list(vpc.subnet_ids)}


def training_request(
    config: AppConfig,
    algorithm: str,
    *,
    region: str,
    role_arn: str,
    with_test: bool = False,
    key_arn: str | None = None,
) -> dict[str, Any]:
    """CreateTrainingJob for `fm` (channels from prepare) or `knn` (channel + sizes from repackage).

    `key_arn`: the customer KMS key (`topx:kms`) for the output and the ML storage volumes.
    """
    job = config.fm if algorithm == "fm" else config.knn

    def channel(channel_name: str, uri_path: str, sharded: bool) -> dict[str, Any]:
        distribution = "ShardedByS3Key" if sharded and job.instance_count > 1 else "FullyReplicated"
        return {
            "ChannelName": channel_name,
            "ContentType": RECORDIO,
            "InputMode": "File",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri.$": uri_path,
                    "S3DataDistributionType": distribution,
                }
            },
        }

    if algorithm == "fm":
        channels = [channel("train", "$.prepare.train_s3_uri", True)]
        if with_test:
            channels.append(channel("test", "$.prepare.test_s3_uri", False))
        runtime = {"feature_dim.$": "$.prepare.feature_dim"}
        name, output = "$.run.fm_job_name", "$.run.fm_output_s3_uri"
    else:
        channels = [channel("train", "$.repackage.knn_train_s3_uri", False)]
        runtime = {
            "feature_dim.$": "$.repackage.feature_dim",
            "k.$": "$.repackage.k",
            "sample_size.$": "$.repackage.sample_size",
        }
        name, output = "$.run.knn_job_name", "$.run.knn_output_s3_uri"
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": job.max_runtime_seconds}
    output_config: dict[str, str] = {"S3OutputPath.$": output}
    resources: dict[str, Any] = {
        "InstanceType": job.instance_type,
        "InstanceCount": job.instance_count,
        "VolumeSizeInGB": job.volume_gb,
    }
    if key_arn is not None:
        output_config["KmsKeyId"] = key_arn
        resources["VolumeKmsKeyId"] = key_arn
    request: dict[str, Any] = {
        "TrainingJobName.$": name,
        "AlgorithmSpecification": {
            "TrainingImage": images.image_uri(algorithm, region),
            "TrainingInputMode": "File",
        },
        "RoleArn": role_arn,
        "HyperParameters": {**dict(sorted(job.hyperparameters.items())), **runtime},
        "InputDataConfig": channels,
        "OutputDataConfig": output_config,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
    }
    if config.sagemaker_security.network_isolation:
        request["EnableNetworkIsolation"] = True
    if job.instance_count > 1:
        request["EnableInterContainerTrafficEncryption"] = True
    if config.vpc is not None:
        request["VpcConfig"] = vpc_request(config.vpc)
    if config.spot.enabled:
        request["EnableManagedSpotTraining"] = True
        stopping["MaxWaitTimeInSeconds"] = config.spot.max_wait_seconds
    return request


def training_timeout(config: AppConfig, algorithm: str) -> int:
    """Task TimeoutSeconds: SageMaker enforces its own stop; this only bounds a lost `.sync` wait."""
    job = config.fm if algorithm == "fm" else config.knn
    longest = config.spot.max_wait_seconds if config.spot.enabled else job.max_runtime_seconds
    return longest + 3600  # + provisioning and image download


def model_request(config: AppConfig, *, region: str, role_arn: str) -> dict[str, Any]:
    """CreateModel; the transform job inherits its network isolation and VPC."""
    request: dict[str, Any] = {
        "ModelName.$": "$.run.model_name",
        "ExecutionRoleArn": role_arn,
        "PrimaryContainer": {
            "Image": images.image_uri("knn", region),
            "ModelDataUrl.$": "$.knn.model_s3_uri",
        },
    }
    if config.sagemaker_security.network_isolation:
        request["EnableNetworkIsolation"] = True
    if config.vpc is not None:
        request["VpcConfig"] = vpc_request(config.vpc)
    return request


def transform_request(config: AppConfig, *, key_arn: str | None = None) -> dict[str, Any]:
    transform = config.transform
    request: dict[str, Any] = {
        "TransformJobName.$": "$.run.transform_job_name",
        "ModelName.$": "$.run.model_name",
        "MaxPayloadInMB": transform.max_payload_mb,
        "MaxConcurrentTransforms": transform.max_concurrent_transforms,
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri.$": "$.repackage.queries_s3_uri"}
            },
            "ContentType": RECORDIO,
            "SplitType": "RecordIO",
        },
        "TransformOutput": {
            "S3OutputPath.$": "$.run.transform_output_s3_uri",
            "Accept": "application/jsonlines; verbose=true",
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": transform.instance_type,
            "InstanceCount": transform.instance_count,
        },
    }
    if key_arn is not None:
        request["TransformOutput"]["KmsKeyId"] = key_arn
        request["TransformResources"]["VolumeKmsKeyId"] = key_arn
    return request


def state_machine_statements(
    sagemaker_role_arn: str, processing_role_arn: str | None = None
) -> tuple[list[iam.PolicyStatement], list[str]]:
    """What the state machine role needs for these tasks, and the wildcard ARNs among them.

    Job and model names carry the run id (known only at run time), hence `training-job/*` etc.;
    `.sync` needs the two Step Functions-managed EventBridge rules; PassRole is limited to the one
    role, and only towards SageMaker.
    """
    arn = f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}"
    rules = f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:rule"
    jobs = [f"{arn}:training-job/*", f"{arn}:model/*", f"{arn}:transform-job/*"]
    if processing_role_arn is not None:
        jobs.append(f"{arn}:processing-job/*")
    statements = [
        # AddTags: with `.sync`, Step Functions adds the tag MANAGED_BY_AWS=STARTED_BY_STEP_FUNCTIONS
        # to every training and transform job it creates, and SageMaker then authorises the create
        # call for sagemaker:AddTags too (aws/aws-cdk#32294 training, #26012 transform; CDK's own
        # tasks grant it since aws/aws-cdk#32536 and #27264).
        iam.PolicyStatement(
            actions=[
                "sagemaker:CreateTrainingJob",
                "sagemaker:DescribeTrainingJob",
                "sagemaker:StopTrainingJob",
                "sagemaker:AddTags",
            ],
            resources=[jobs[0]],
        ),
        # No AddTags on model/*: CreateModel is a request-response call (no `.sync`), Step Functions
        # adds no tag to it, and CDK's own SageMakerCreateModel grants none (docs/state-machine.md).
        iam.PolicyStatement(actions=["sagemaker:CreateModel"], resources=[jobs[1]]),
        iam.PolicyStatement(
            actions=[
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:StopTransformJob",
                "sagemaker:AddTags",
            ],
            resources=[jobs[2]],
        ),
        # The Step Functions guide's policy for these integrations also lists ListTags (on "*");
        # here it is limited to our own jobs and models.
        iam.PolicyStatement(actions=["sagemaker:ListTags"], resources=jobs),
        iam.PolicyStatement(
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[f"{rules}/{rule}" for rule in SYNC_RULES],
        ),
        iam.PolicyStatement(
            actions=["iam:PassRole"],
            resources=[sagemaker_role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    ]
    if processing_role_arn is not None:
        # The Spark prepare (decision 0016): the same pattern as the training and transform jobs
        # (AddTags: Step Functions tags the jobs it starts with `.sync`), its own `.sync` rule, and
        # PassRole of its own role only.
        statements += [
            iam.PolicyStatement(
                actions=[
                    "sagemaker:CreateProcessingJob",
                    "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob",
                    "sagemaker:AddTags",
                ],
                resources=[jobs[3]],
            ),
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[f"{rules}/{PROCESSING_RULE}"],
            ),
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[processing_role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
        ]
    return statements, jobs


# -- the Spark prepare (topx:prepare.engine = spark; decision 0016) -------------------------------------
# Step Functions' SageMaker integration runs CreateProcessingJob with `.sync` (waits for the job)
# (https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html); the request is the
# API's CreateProcessingJob (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html).
PROCESSING_RULE = "StepFunctionsGetEventsForSageMakerProcessingJobsRule"
PROCESSING_RESULT = {"job_name.$": "$.ProcessingJobName"}
PROCESSING_MAX_RUNTIME_SECONDS = 6 * 3600
PROCESSING_VOLUME_GB = 100  # the inputs are downloaded to it, and Spark spills to it
# `<FM job name>p` (`<project>-<run>-<h>-fmp`): unique per run like the other job names, fixed for
# retries and redrives, and within 63 characters (the guard leaves room for a 4-character suffix).
PROCESSING_JOB_NAME = "States.Format('{}p', $.run.fm_job_name)"


def processing_request(
    config: AppConfig,
    *,
    region: str,
    role_arn: str,
    bucket_name: str,
    script_uri: str,
    script_name: str,
    package_uri: str,
    step_config: str,
    key_arn: str | None = None,
) -> dict[str, Any]:
    """CreateProcessingJob of the Spark prepare: AWS's Spark container runs `spark_job.py`.

    ProcessingInputs are downloaded before the container starts to their `LocalPath`, which must
    lie under /opt/ml/processing/ (API reference, ProcessingS3Input:
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingS3Input.html); with
    S3Prefix every object under the prefix, keeping its path after the prefix. The container's
    `smspark-submit` runs the application on the job's Spark cluster ("Data Processing with Apache
    Spark", https://docs.aws.amazon.com/sagemaker/latest/dg/use-spark-processing-container.html).
    No ProcessingOutput: the job writes the run's prepared files to S3 itself, manifest last (an
    output upload has no order; decision 0016).
    """
    prepare = config.steps.prepare

    def s3_input(name: str, uri: str, local: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    inputs = [
        s3_input("code", script_uri, paths.SPARK_CODE_DIR),
        s3_input("package", package_uri, paths.SPARK_PACKAGE_DIR),
        s3_input("data", f"s3://{bucket_name}/{prepare.input_prefix}", paths.SPARK_DATA_DIR),
    ]
    if prepare.test_prefix:
        inputs.append(s3_input("test", f"s3://{bucket_name}/{prepare.test_prefix}", paths.SPARK_TEST_DIR))
    cluster: dict[str, Any] = {
        "InstanceCount": prepare.spark_instance_count,
        "InstanceType": prepare.spark_instance_type,
        "VolumeSizeInGB": PROCESSING_VOLUME_GB,
    }
    if key_arn is not None:
        cluster["VolumeKmsKeyId"] = key_arn
    request: dict[str, Any] = {
        "ProcessingJobName.$": PROCESSING_JOB_NAME,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": images.spark_image_uri(region),
            "ContainerEntrypoint": ["smspark-submit", f"{paths.SPARK_CODE_DIR}/{script_name}"],
            "ContainerArguments.$": "States.Array('--run-id', $.run.run_id)",
        },
        "ProcessingInputs": inputs,
        "ProcessingResources": {"ClusterConfig": cluster},
        "Environment": {"BUCKET_NAME": bucket_name, "STEP_CONFIG": step_config},
        "StoppingCondition": {"MaxRuntimeInSeconds": PROCESSING_MAX_RUNTIME_SECONDS},
    }
    network: dict[str, Any] = {}
    if prepare.spark_instance_count > 1:
        network["EnableInterContainerTrafficEncryption"] = True
    if config.vpc is not None:
        network["VpcConfig"] = vpc_request(config.vpc)
    if network:
        request["NetworkConfig"] = network
    return request
