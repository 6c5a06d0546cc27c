"""The adapter for what moto lacks to run this project's state machine offline (pinned to moto 5.2.5).

moto gives us the AWS control planes (CloudFormation, S3, DynamoDB, IAM, Lambda, SageMaker, SNS,
Step Functions with LocalStack's ASL interpreter) but no compute. This module bridges exactly five
gaps, each at the narrowest point we found in moto's code:

1. **Lambda without Docker.** ``LambdaFunction._invoke_lambda`` is the one method that starts a
   Docker container. We replace it with an in-process call of the function's ``Handler`` string,
   with the function's environment variables set for the duration of the call and a minimal
   context object. moto's own ``invoke`` still does the rest (status, ``FunctionError`` header).
2. **SageMaker jobs without compute.** moto records ``CreateTrainingJob`` / ``CreateTransformJob``
   and reports them ``Completed`` at once. We wrap the two API handlers
   (``SageMakerResponse.create_*_job``): after moto recorded the job, its status is set to
   ``InProgress`` and the exact request runs through ``pipeline_steps.local_algorithms`` in a
   thread, which then sets ``Completed`` (artifacts, final metrics) or ``Failed`` (FailureReason).
   ``CreateModel`` is moto's own; transforms find ``ModelDataUrl`` through it.
3. **``sagemaker:*.sync`` in Step Functions.** moto's interpreter only forwards SageMaker calls
   (no ``.sync``). We register a SageMaker service task (at ``state_task_factory``'s lookup) that
   calls the API and, for ``.sync``, polls ``Describe*`` like AWS: ``Completed`` -> the Describe
   output; ``Failed``/``Stopped`` -> ``States.TaskFailed`` with the Describe JSON (FailureReason
   inside) as cause; an API error -> ``SageMaker.AmazonSageMakerException``.
4. **State machines from CloudFormation are not executable.** moto's CloudFormation creates them in
   the plain Step Functions backend, while executions run in the parser backend. ``mirror_state_
   machines`` re-registers each one (same name, definition, role, hence same ARN) in the latter.
5. **Stopping a job.** moto 5.2.5 implements neither ``StopTrainingJob`` nor ``StopTransformJob``
   (the state machine calls them through ``arn:aws:states:::aws-sdk:sagemaker:stop*Job`` when a
   ``.sync`` task times out; moto's own ``StateTaskServiceAwsSdk`` forwards those calls to the
   embedded SageMaker unchanged). We add the two API handlers to ``SageMakerResponse``: an
   ``InProgress`` job becomes ``Stopping`` (anything else is a ``ValidationException``, as on
   SageMaker) and its stop is recorded; when the local job's thread returns, the job becomes
   ``Stopped`` and the algorithm's result is discarded. The local algorithms do not poll
   ``stop_requested(name)`` (the test fakes do), so a stopped local job runs to its end in the
   background and may still write its output files; only its status and result are those of a
   stopped job. The ``.sync`` resolver (3.) reports ``Stopped`` as ``States.TaskFailed``.

Nothing else of moto is re-implemented. Patches are installed by ``install()`` and removed by
``uninstall()``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import moto
from botocore.config import Config as BotoConfig

MOTO_VERSION = "5.2.5"
if moto.__version__ != MOTO_VERSION:
    raise ImportError(
        f"pipeline_steps.local.adapter patches moto internals and is pinned to moto=={MOTO_VERSION}; "
        f"found moto=={moto.__version__}. Install the pinned version (requirements*.txt, constraints.txt) "
        "or re-check every patch point listed in docs/local-mode.md before moving the pin."
    )

# Imported after the version check: these are the internals the patches rely on.
from botocore.exceptions import ClientError  # noqa: E402
from moto.awslambda.models import LambdaFunction  # noqa: E402
from moto.core.responses import EmptyResult  # noqa: E402
from moto.sagemaker.exceptions import ValidationError  # noqa: E402
from moto.sagemaker.models import sagemaker_backends  # noqa: E402
from moto.sagemaker.responses import SageMakerResponse  # noqa: E402
from moto.stepfunctions.models import stepfunctions_backends  # noqa: E402
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails  # noqa: E402
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (  # noqa: E402
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (  # noqa: E402
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (  # noqa: E402
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (  # noqa: E402
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (  # noqa: E402
    resource_eval_s3 as item_reader_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer.resource_eval import (  # noqa: E402
    resource_eval_s3 as result_writer_s3,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.state_map import StateMap  # noqa: E402
from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: E402
    lambda_eval_utils,
    state_task_factory,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: E402
    state_task_service_aws_sdk,
    state_task_service_sfn,
    state_task_service_sns,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (  # noqa: E402
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (  # noqa: E402
    StateTaskService,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E402, E501
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import (  # noqa: E402
    StateTaskLambda,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails  # noqa: E402
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str  # noqa: E402
from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: E402

from pipeline_steps.local import access, iam  # noqa: E402
from pipeline_steps.local.iam_requests import MANAGED_TAG  # noqa: E402

LogFn = Callable[[str], None]
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")

# The SageMaker actions our state machine may use; their parameters pass through unfiltered.
_SAGEMAKER_ACTIONS = {"createtrainingjob", "createtransformjob", "createmodel", "createprocessingjob"}
_SYNC_DESCRIBE = {
    "createtrainingjob": "describe_training_job",
    "createtransformjob": "describe_transform_job",
    "createprocessingjob": "describe_processing_job",
}
_JOB_NAME_PARAM = {
    "createtrainingjob": "TrainingJobName",
    "createtransformjob": "TransformJobName",
    "createprocessingjob": "ProcessingJobName",
}
_STATUS_KEY = {
    "createtrainingjob": "TrainingJobStatus",
    "createtransformjob": "TransformJobStatus",
    "createprocessingjob": "ProcessingJobStatus",
}


@dataclass
class _State:
    installed: bool = False
    originals: dict[str, Any] = field(default_factory=dict)
    job_log: LogFn = print
    s3_factory: Callable[[], Any] | None = None
    algorithms: Any = None  # an object with run_training_job / run_transform_job; None = ours
    lambda_lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: list[threading.Thread] = field(default_factory=list)
    injections: dict[str, dict[str, str]] = field(default_factory=dict)  # image repository -> overrides
    # Stop requests by (kind, job name); the lock makes "stop an InProgress job" and "finish a job"
    # one step each, so a result landing during a stop can neither overwrite it nor be lost.
    stops: set[tuple[str, str]] = field(default_factory=set)
    job_lock: threading.Lock = field(default_factory=threading.Lock)


_STATE = _State()


# ---------------------------------------------------------------------------------------------
# 1. Lambda: run the handler in-process


@dataclass(frozen=True)
class LambdaContext:
    """The subset of the Lambda context object our handlers (and Powertools-style code) read."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


def _check_handler_in_code(fn: LambdaFunction, module: str) -> None:
    """Fail like AWS would if the deployed zip lacks the handler module (a mis-built asset)."""
    if not fn.code_bytes:
        return
    wanted = {module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"}
    with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as zf:
        if wanted.isdisjoint(zf.namelist()):
            raise ImportError(
                f"Unable to import module '{module}': not in the deployed code of {fn.function_name}"
            )


def call_handler(fn: LambdaFunction, event: Any) -> tuple[str, bool]:
    """Import ``fn.handler`` and call it with the function's environment; returns (payload, errored)."""
    context = LambdaContext(
        function_name=fn.function_name,
        function_version=str(fn.version),
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size),
        timeout_seconds=int(fn.timeout),
        log_group_name=f"/aws/lambda/{fn.function_name}",
    )
    env = {k: str(v) for k, v in (fn.environment_vars or {}).items()}
    env.update(AWS_LAMBDA_FUNCTION_NAME=fn.function_name, _HANDLER=str(fn.handler))
    # os.environ is process-wide: one invocation at a time keeps each handler's variables its own.
    with _STATE.lambda_lock:
        saved = {k: os.environ.get(k) for k in [*env, *_CREDENTIAL_VARIABLES]}
        try:
            if access.enforcing():  # Lambda hands the function its execution role's credentials
                env.update(access.role_credentials(str(fn.role), "lambda.amazonaws.com").environment())
        except ClientError as exc:
            return json.dumps({"errorMessage": str(exc), "errorType": "AccessDeniedException"}), True
        os.environ.update(env)
        # boto3's default session caches the credentials it first resolved: start a fresh one.
        boto3.DEFAULT_SESSION = None
        try:
            module_name, _, func_name = str(fn.handler).rpartition(".")
            _check_handler_in_code(fn, module_name)
            func = getattr(importlib.import_module(module_name), func_name)
            result = func(event, context)
            return json.dumps(result), False
        except Exception as exc:  # the error travels back as Lambda's FunctionError payload
            payload = {
                "errorMessage": str(exc),
                "errorType": type(exc).__name__,
                "stackTrace": traceback.format_exception(exc)[-5:],
            }
            return json.dumps(payload), True
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            boto3.DEFAULT_SESSION = None


def _invoke_lambda_in_process(self: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
    if event is None:
        event = {}
    elif isinstance(event, str | bytes):  # moto passes the literal "{}" for an empty payload
        event = json.loads(event or "{}")
    payload, errored = call_handler(self, event)
    return payload, errored, ""


# ---------------------------------------------------------------------------------------------
# 2. SageMaker: run the local algorithms when a job is created


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _s3_client(role_arn: str | None = None) -> Any:
    """The job's S3 client: as its role when IAM is enforced (SageMaker reads and writes as it)."""
    if access.enforcing() and role_arn:
        return access.role_credentials(role_arn, "sagemaker.amazonaws.com").client("s3")
    if _STATE.s3_factory is not None:
        return _STATE.s3_factory()
    return boto3.client("s3")


def _check_job_role(role_arn: str, image: str, log_group: str, name: str) -> None:
    """What SageMaker does with the job's role before the algorithm starts: pull the image, log.

    Image: ``<registry account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>``; the role needs
    ``ecr:GetAuthorizationToken`` (on *) and the pull actions on that repository; logs go to
    ``/aws/sagemaker/<TrainingJobs|TransformJobs>`` (SageMaker developer guide, "How to use SageMaker
    AI execution roles").
    """
    registry, _, path = image.partition("/")
    registry_account, region = registry.split(".")[0], registry.split(".")[3]
    repository = path.split("@", 1)[0].split(":", 1)[0]
    repo_arn = f"arn:aws:ecr:{region}:{registry_account}:repository/{repository}"
    group_arn = (
        f"arn:aws:logs:{os.environ['AWS_DEFAULT_REGION']}:{_account_of(role_arn)}:log-group:{log_group}"
    )
    needed = [
        iam.Authorization("ecr:GetAuthorizationToken", "*"),
        iam.Authorization("ecr:BatchGetImage", repo_arn),
        iam.Authorization("ecr:GetDownloadUrlForLayer", repo_arn),
        iam.Authorization("logs:CreateLogStream", f"{group_arn}:log-stream:{name}/algo-1"),
        iam.Authorization("logs:PutLogEvents", f"{group_arn}:log-stream:{name}/algo-1"),
    ]
    for request in needed:
        access.check(role_arn, "sagemaker.amazonaws.com", request)


def _account_of(arn: str) -> str:
    return arn.split(":")[4]


def _finish_job(job: Any, status_attr: str, result: dict[str, Any], status_key: str) -> None:
    now = _utcnow()
    setattr(job, status_attr, result.get(status_key, "Failed"))
    job.failure_reason = result.get("FailureReason") or None
    job.last_modified_time = now
    if status_attr == "training_job_status":
        job.secondary_status = job.training_job_status
        job.training_end_time = now
        if result.get("ModelArtifacts"):
            job.model_artifacts = result["ModelArtifacts"]
        job.final_metric_data_list = [
            {"MetricName": m["MetricName"], "Value": float(m["Value"]), "Timestamp": m.get("Timestamp", now)}
            for m in result.get("FinalMetricDataList", [])
        ]
    else:
        job.transform_end_time = now


def _run_job(kind: str, backend: Any, request: dict[str, Any]) -> None:
    local_algorithms = _STATE.algorithms
    if local_algorithms is None:
        from pipeline_steps import local_algorithms
    if kind == "training":
        name, job = request["TrainingJobName"], backend.training_jobs[request["TrainingJobName"]]
        status_attr, status_key = "training_job_status", "TrainingJobStatus"
    else:
        name, job = request["TransformJobName"], backend.transform_jobs[request["TransformJobName"]]
        status_attr, status_key = "transform_job_status", "TransformJobStatus"

    def log(message: str) -> None:
        _STATE.job_log(f"[{name}] {message}")

    try:
        if kind == "training":
            role = request.get("RoleArn", "")
            if access.enforcing():
                image = request["AlgorithmSpecification"]["TrainingImage"]
                _check_job_role(role, image, "/aws/sagemaker/TrainingJobs", name)
            result = local_algorithms.run_training_job(request, s3=_s3_client(role), log=log)
        else:
            model = backend.describe_model(request["ModelName"])
            container = model.primary_container or (model.containers or [{}])[0]
            role = model.execution_role_arn
            if access.enforcing():
                _check_job_role(role, container["Image"], "/aws/sagemaker/TransformJobs", name)

            def model_resolver(model_name: str) -> str:
                return container["ModelDataUrl"]

            result = local_algorithms.run_transform_job(
                request, s3=_s3_client(role), model_resolver=model_resolver, log=log
            )
    except access.AccessDenied as exc:  # SageMaker reports these as the job's failure reason
        result = {status_key: "Failed", "FailureReason": f"ClientError: {exc.response['Error']['Message']}"}
        log(result["FailureReason"])
    except Exception as exc:  # a crash of the local container is a failed job, as on SageMaker
        result = {status_key: "Failed", "FailureReason": f"AlgorithmError: {type(exc).__name__}: {exc}"}
        log(traceback.format_exc())
    with _STATE.job_lock:
        if (kind, name) in _STATE.stops:  # stopped meanwhile: the late result is discarded
            log(f"stopped; the algorithm's result ({result.get(status_key)}) is discarded")
            result = {status_key: "Stopped"}
        _finish_job(job, status_attr, result, status_key)


def inject_hyperparameters(image_repository: str, overrides: dict[str, str]) -> None:
    """Failure injection: the next training job of this algorithm (``factorization-machines``,
    ``knn``) gets these hyperparameters, as if the request had carried them; one-shot."""
    _STATE.injections[image_repository] = dict(overrides)


def clear_injections() -> None:
    _STATE.injections.clear()


def _repository(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]


def _start_job(kind: str, response: SageMakerResponse) -> None:
    request = json.loads(response.body)
    backend = response.sagemaker_backend
    job: Any  # moto's FakeTrainingJob or FakeTransformJob
    if kind == "training":
        job = backend.training_jobs[request["TrainingJobName"]]
        overrides = _STATE.injections.pop(
            _repository(request["AlgorithmSpecification"]["TrainingImage"]), None
        )
        if overrides:
            request.setdefault("HyperParameters", {}).update(overrides)
            job.hyper_parameters = request["HyperParameters"]  # Describe shows what the job ran with
            _STATE.job_log(f"[{job.training_job_name}] failure injection: hyperparameters {overrides}")
        job.training_job_status, job.secondary_status = "InProgress", "Training"
        job.model_artifacts = None  # moto pre-fills it; SageMaker sets it only on success
    else:
        job = backend.transform_jobs[request["TransformJobName"]]
        job.transform_job_status = "InProgress"
    job.failure_reason = None
    with _STATE.job_lock:
        _STATE.stops.discard((kind, request[_STOP_KINDS[kind][0]]))  # a name created anew
    thread = threading.Thread(target=_run_job, args=(kind, backend, request), daemon=True, name=f"job-{kind}")
    _STATE.jobs.append(thread)
    thread.start()


def _create_training_job(self: SageMakerResponse) -> Any:
    result = _original(SageMakerResponse, "create_training_job")(self)
    _start_job("training", self)
    return result


def _create_transform_job(self: SageMakerResponse) -> Any:
    result = _original(SageMakerResponse, "create_transform_job")(self)
    _start_job("transform", self)
    return result


def _create_processing_job(self: SageMakerResponse) -> Any:
    """CreateProcessingJob (the Spark prepare, decision 0016): moto records it, then it runs on
    PySpark `local[*]` in a thread (`local/spark_processing.py`) like the training jobs."""
    result = _original(SageMakerResponse, "create_processing_job")(self)
    request = json.loads(self.body)
    job: Any = self.sagemaker_backend.processing_jobs[request["ProcessingJobName"]]
    job.processing_job_status = "InProgress"
    job.failure_reason = None  # moto's job has no such field; Describe shows it when set
    thread = threading.Thread(
        target=_run_processing_job, args=(job, request), daemon=True, name="job-processing"
    )
    _STATE.jobs.append(thread)
    thread.start()
    return result


def _run_processing_job(job: Any, request: dict[str, Any]) -> None:
    name, role = request["ProcessingJobName"], request.get("RoleArn", "")

    def log(message: str) -> None:
        _STATE.job_log(f"[{name}] {message}")

    from pipeline_steps.local.spark_processing import run_processing_job

    run = getattr(_STATE.algorithms, "run_processing_job", None) or run_processing_job
    try:
        if access.enforcing():
            image = request["AppSpecification"]["ImageUri"]
            _check_job_role(role, image, "/aws/sagemaker/ProcessingJobs", name)
        result = run(request, s3=_s3_client(role), log=log)
    except access.AccessDenied as exc:
        reason = f"ClientError: {exc.response['Error']['Message']}"
        result = {"ProcessingJobStatus": "Failed", "FailureReason": reason}
        log(result["FailureReason"])
    except Exception as exc:  # the application's failure is the job's, as on SageMaker
        reason = f"AlgorithmError: {type(exc).__name__}: {exc}"
        result = {"ProcessingJobStatus": "Failed", "FailureReason": reason}
        log(traceback.format_exc())
    with _STATE.job_lock:
        if job.processing_job_status == "Stopped":  # moto's StopProcessingJob: the result is discarded
            return
        job.processing_job_status = result.get("ProcessingJobStatus", "Failed")
        job.failure_reason = result.get("FailureReason") or None
        job.processing_end_time = job.last_modified_time = _utcnow()


_STOP_KINDS = {
    "training": ("TrainingJobName", "training_jobs", "training_job_status"),
    "transform": ("TransformJobName", "transform_jobs", "transform_job_status"),
}


def _stop_job(kind: str, response: SageMakerResponse) -> Any:
    """StopTrainingJob / StopTransformJob: InProgress -> Stopping; the job thread ends it Stopped."""
    name_param, collection, status_attr = _STOP_KINDS[kind]
    name = response._get_param(name_param)
    job = getattr(response.sagemaker_backend, collection).get(name)
    if job is None:
        raise ValidationError(message=f"Could not find {kind} job '{name}'.")
    with _STATE.job_lock:
        status = getattr(job, status_attr)
        if status != "InProgress":
            raise ValidationError(message=f"The {kind} job {name} is {status} and cannot be stopped.")
        setattr(job, status_attr, "Stopping")
        if kind == "training":
            job.secondary_status = "Stopping"
        job.last_modified_time = _utcnow()
        _STATE.stops.add((kind, name))
    _STATE.job_log(f"[{name}] stop requested")
    return EmptyResult()


def _stop_training_job(self: SageMakerResponse) -> Any:
    return _stop_job("training", self)


def _stop_transform_job(self: SageMakerResponse) -> Any:
    return _stop_job("transform", self)


def stop_requested(name: str) -> bool:
    """Whether the training or transform job ``name`` was asked to stop: a local algorithm (or a
    test fake) may poll this to end early; its result is discarded either way."""
    return ("training", name) in _STATE.stops or ("transform", name) in _STATE.stops


def wait_for_jobs(timeout: float = 60.0) -> None:
    """Join the local job threads (used at shutdown so no job writes to a stopped server)."""
    deadline = time.monotonic() + timeout
    for thread in list(_STATE.jobs):
        thread.join(max(0.0, deadline - time.monotonic()))
    _STATE.jobs[:] = [t for t in _STATE.jobs if t.is_alive()]


# ---------------------------------------------------------------------------------------------
# 3. Step Functions: the SageMaker optimised integration with .sync


def _jsonable(value: Any) -> Any:
    # Step Functions hands timestamps to the next state as epoch numbers, not datetimes.
    if isinstance(value, datetime):
        return value.timestamp() * 1000
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _task_failed(*, error: str, cause: str, resource: str, resource_type: str) -> EventDetails:
    """The history event details of a failed task (a partial TypedDict, as moto builds them)."""
    details = TaskFailedEventDetails(error=error, cause=cause, resource=resource, resourceType=resource_type)
    return cast(EventDetails, {"taskFailedEventDetails": details})


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """``arn:aws:states:::sagemaker:<action>[.sync]`` as AWS runs it, minus the compute."""

    def __init__(self) -> None:
        # WaitForTaskToken must be listed too: moto's callback base class always sets up (and later
        # interrupts) a task-token endpoint for .sync tasks, and crashes on None without it.
        patterns: set[Any] = {ResourceCondition.Sync, ResourceCondition.WaitForTaskToken}
        super().__init__(supported_integration_patterns=patterns)

    def _action(self) -> str:
        return self.resource.api_action.lower()

    def _get_supported_parameters(self) -> set[str] | None:
        # An empty set = known action, parameters passed through unfiltered.
        return set() if self._action() in _SAGEMAKER_ACTIONS else None

    def _from_error(self, env: Any, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):
            error = "SageMaker.AmazonSageMakerException"
            code = ex.response["Error"]["Code"]
            cause = f"{ex.response['Error']['Message']} (Service: AmazonSageMaker; Error Code: {code})"
            return FailureEvent(
                env=env,
                error_name=CustomErrorName(error),
                event_type=HistoryEventType.TaskFailed,
                event_details=_task_failed(
                    error=error,
                    cause=cause,
                    resource=self._get_sfn_resource(),
                    resource_type=self._get_sfn_resource_type(),
                ),
            )
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        client = _service_client(resource_runtime_part.region, "sagemaker")
        if self._action() in _SYNC_DESCRIBE and self.resource.condition == ResourceCondition.Sync:
            # .sync jobs are tagged by Step Functions, which needs sagemaker:AddTags (aws-cdk#26012),
            # and watched through its managed EventBridge rule (the events:* grants of the guide's
            # "IAM policies for Amazon SageMaker"): both as the state machine's role.
            tags = [t for t in normalised_parameters.get("Tags", []) if t.get("Key") != MANAGED_TAG["Key"]]
            normalised_parameters = {**normalised_parameters, "Tags": [*tags, MANAGED_TAG]}
            _ensure_sync_rule(resource_runtime_part.region, self._action())
        response = getattr(client, self._get_boto_service_action())(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        env.stack.append(response)

    def _build_sync_resolver(self, env, resource_runtime_part, normalised_parameters, state_credentials):
        action = self._action()
        if action not in _SYNC_DESCRIBE:
            raise RuntimeError(
                f"Unsupported .sync callback procedure in resource {self.resource.resource_arn}"
            )
        client = _service_client(resource_runtime_part.region, "sagemaker")
        env.stack.pop()  # the Create* response; .sync returns the Describe* output instead
        name_param = _JOB_NAME_PARAM[action]
        describe = getattr(client, _SYNC_DESCRIBE[action])
        status_key = _STATUS_KEY[action]

        def resolve() -> dict[str, Any] | None:
            output = describe(**{name_param: normalised_parameters[name_param]})
            output.pop("ResponseMetadata", None)
            status = output.get(status_key)
            if status == "Completed":
                return _jsonable(output)
            if status in ("Failed", "Stopped"):
                raise FailureEventException(
                    FailureEvent(
                        env=env,
                        error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                        event_type=HistoryEventType.TaskFailed,
                        event_details=_task_failed(
                            resource=self._get_sfn_resource(),
                            resource_type=self._get_sfn_resource_type(),
                            error=StatesErrorNameType.StatesTaskFailed.to_name(),
                            cause=to_json_str(_jsonable(output)),
                        ),
                    )
                )
            return None  # still InProgress: the caller polls again

        return resolve


_SYNC_RULES = {
    "createprocessingjob": (
        "StepFunctionsGetEventsForSageMakerProcessingJobsRule",
        "SageMaker Processing Job State Change",
    ),
    "createtrainingjob": (
        "StepFunctionsGetEventsForSageMakerTrainingJobsRule",
        "SageMaker Training Job State Change",
    ),
    "createtransformjob": (
        "StepFunctionsGetEventsForSageMakerTransformJobsRule",
        "SageMaker Transform Job State Change",
    ),
}


def _ensure_sync_rule(region: str, action: str) -> None:
    """Describe, then put the managed rule and its target, as Step Functions does for .sync."""
    name, detail_type = _SYNC_RULES[action]
    events = _service_client(region, "events")
    with contextlib.suppress(events.exceptions.ResourceNotFoundException):
        events.describe_rule(Name=name)
    pattern = {"source": ["aws.sagemaker"], "detail-type": [detail_type]}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    target = f"arn:aws:states:{region}:{access.account()}:stateMachine:managed-sync-target"
    events.put_targets(Rule=name, Targets=[{"Id": "StepFunctionsManaged", "Arn": target}])


def _service_client(region: str, service: str, state_credentials: Any = None) -> Any:
    """A client for Step Functions' own calls: as the running state machine's role when enforcing."""
    if not access.enforcing():
        return _original(lambda_eval_utils, "boto_client_for")(
            region=region, service=service, state_credentials=state_credentials
        )
    credentials = access.acting_credentials()
    if credentials is None:
        raise RuntimeError(f"a Step Functions {service} call outside a state evaluation: no role to act as")
    return credentials.client(
        service,
        region=region,
        config=BotoConfig(retries={"max_attempts": 0, "total_max_attempts": 1}, read_timeout=300),
    )


def _acting_as_state_machine(original: Callable[..., Any]) -> Callable[..., Any]:
    def _eval_execution(self: Any, env: Any) -> Any:
        with access.acting_as(access.step_functions_credentials(env)):
            return original(self, env)

    return _eval_execution


# Modules of moto's interpreter that build their own boto clients (with fixed dummy keys).
_CLIENT_MODULES = (
    lambda_eval_utils,
    state_task_service_sns,
    state_task_service_aws_sdk,
    state_task_service_sfn,
    item_reader_s3,
    result_writer_s3,
)
_ACTING_CLASSES = (StateTaskService, StateTaskLambda, StateMap)


def _scale_retry_waits(scale: float) -> None:
    """Retry intervals of the interpreter, times ``scale`` (1 = as written; tests use less)."""
    retrier_decl.time = _ScaledTime(scale) if scale != 1 else time  # type: ignore[assignment]


class _ScaledTime:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _state_task_service_for(service_name: str) -> Any:
    if service_name == "sagemaker":
        return StateTaskServiceSageMaker()
    return _original(state_task_factory, "state_task_service_for")(service_name=service_name)


# ---------------------------------------------------------------------------------------------
# 4. CloudFormation-created state machines -> the executing backend


def mirror_state_machines(account_id: str, region: str) -> list[str]:
    """Register every CloudFormation-created state machine in moto's executing backend; returns ARNs."""
    plain = stepfunctions_backends[account_id][region]
    parser = stepfunctions_parser_backends[account_id][region]
    known = {sm.arn for sm in parser.state_machines}
    arns = []
    for sm in plain.state_machines:
        if sm.arn not in known:
            parser.create_state_machine(name=sm.name, definition=sm.definition, roleArn=sm.roleArn)
        arns.append(sm.arn)
    return arns


# ---------------------------------------------------------------------------------------------


_STOP_HANDLERS = {"stop_training_job": _stop_training_job, "stop_transform_job": _stop_transform_job}


def install(
    *,
    job_log: LogFn = print,
    s3_factory: Callable[[], Any] | None = None,
    algorithms: Any = None,
    retry_time_scale: float = 1.0,
) -> None:
    """Install the patches (idempotent). ``job_log`` receives local job progress (FM epochs...);
    ``algorithms`` replaces ``pipeline_steps.local_algorithms`` (tests use tiny fakes);
    ``retry_time_scale`` shortens the interpreter's Retry waits (tests of failure paths)."""
    _STATE.job_log = job_log
    _STATE.s3_factory = s3_factory
    _STATE.algorithms = algorithms
    _scale_retry_waits(retry_time_scale)
    if _STATE.installed:
        return
    # Added, not replaced: moto 5.2.5 has no such handlers (uninstall removes them again).
    for action in _STOP_HANDLERS:
        if hasattr(SageMakerResponse, action):
            raise ImportError(f"moto now implements SageMakerResponse.{action}: re-check patch point 5")
    for owner, name, replacement in _replacements():
        original = getattr(owner, name)
        _STATE.originals[_key(owner, name)] = original
        setattr(owner, name, replacement if replacement is not None else _acting_as_state_machine(original))
    for action, handler in _STOP_HANDLERS.items():
        setattr(SageMakerResponse, action, handler)
    _STATE.installed = True


def _key(owner: Any, name: str) -> str:
    return f"{getattr(owner, '__name__', owner)}.{name}"


def _replacements() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement); None = wrap the original so it acts as its state machine."""
    return [
        (LambdaFunction, "_invoke_lambda", _invoke_lambda_in_process),
        (SageMakerResponse, "create_training_job", _create_training_job),
        (SageMakerResponse, "create_transform_job", _create_transform_job),
        (SageMakerResponse, "create_processing_job", _create_processing_job),
        (state_task_factory, "state_task_service_for", _state_task_service_for),
        *((module, "boto_client_for", _service_client) for module in _CLIENT_MODULES),
        *((cls, "_eval_execution", None) for cls in _ACTING_CLASSES),
    ]


def _original(owner: Any, name: str) -> Any:
    return _STATE.originals[_key(owner, name)]


def uninstall() -> None:
    """Restore moto's originals."""
    if not _STATE.installed:
        return
    for owner, name, _ in _replacements():
        setattr(owner, name, _original(owner, name))
    for action in _STOP_HANDLERS:
        delattr(SageMakerResponse, action)
    _scale_retry_waits(1.0)
    _STATE.installed = False


def sagemaker_job(account_id: str, region: str, name: str) -> Any:
    """moto's record of a training or transform job (for tests and the report)."""
    backend = sagemaker_backends[account_id][region]
    return backend.training_jobs.get(name) or backend.transform_jobs.get(name)


__all__ = [
    "MOTO_VERSION",
    "LambdaContext",
    "StateTaskServiceSageMaker",
    "call_handler",
    "clear_injections",
    "inject_hyperparameters",
    "install",
    "mirror_state_machines",
    "sagemaker_job",
    "stop_requested",
    "uninstall",
    "wait_for_jobs",
]
