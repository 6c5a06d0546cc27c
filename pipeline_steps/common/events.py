"""Step payloads (docs/contracts.md "Step functions payloads"): one dataclass per event and result.

A handler parses its event once (`Event.parse(event)`: every field present, of its type, strings
non-empty; the error names the field) and returns `Result(...).to_json()`, so the JSON each state
passes on has one definition. Extra event keys are ignored (the state machine may add some).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from pipeline_steps.common.errors import InputError


class _Payload:
    STEP: typing.ClassVar[str] = ""

    @classmethod
    def parse(cls, event: Any, *, error: type[Exception] = InputError) -> Self:
        """The typed payload; `error` (an InputError by default) names what is missing or wrong."""
        if isinstance(event, cls):
            return event
        if not isinstance(event, Mapping):
            raise error(f"{cls.STEP} event: expected a JSON object, got {type(event).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        missing = [n for n in names if event.get(n) is None or (hints[n] is str and event.get(n) == "")]
        if missing:
            raise error(f"{cls.STEP} event lacks {missing}; got keys {sorted(event)}")
        for name in names:
            value, hint = event[name], hints[name]
            if not _is(value, hint):
                raise error(f"{cls.STEP} event field {name!r} must be {_name(hint)}, got {value!r}")
        return cls(**{n: event[n] for n in names})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


def _is(value: Any, hint: Any) -> bool:
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _name(hint: Any) -> str:
    return {int: "an integer", bool: "true or false", str: "a string"}.get(hint, str(hint))


# guard: `$$` context fields in, run id + SageMaker names + output locations out (-> $.run)
@dataclass(frozen=True, kw_only=True)
class GuardEvent(_Payload):
    STEP = "guard"
    execution_name: str
    execution_arn: str
    state_machine_arn: str
    start_time: str


@dataclass(frozen=True, kw_only=True)
class GuardResult(_Payload):
    STEP = "guard result"
    skip: bool
    blocking_execution_arn: str  # "" when not skipped
    run_id: str
    fm_job_name: str
    knn_job_name: str
    model_name: str
    transform_job_name: str
    fm_output_s3_uri: str
    knn_output_s3_uri: str
    transform_output_s3_uri: str
    transform_output_prefix: str  # the transform output prefix (the publish Map no longer lists it)


@dataclass(frozen=True, kw_only=True)
class PrepareEvent(_Payload):
    STEP = "prepare"
    run_id: str


@dataclass(frozen=True, kw_only=True)
class PrepareResult(_Payload):
    STEP = "prepare result"
    run_id: str
    manifest_key: str
    train_s3_uri: str
    test_s3_uri: str  # "" when prepare wrote no test shard (HasTestSet)
    feature_dim: str  # a string: it goes straight into the FM hyperparameters
    n_users: int
    n_items: int
    train_rows: int
    test_rows: int


@dataclass(frozen=True, kw_only=True)
class RepackageEvent(_Payload):
    STEP = "repackage"
    run_id: str
    manifest_key: str
    model_s3_uri: str  # FM ModelArtifacts.S3ModelArtifacts


@dataclass(frozen=True, kw_only=True)
class RepackageResult(_Payload):
    STEP = "repackage result"
    knn_train_s3_uri: str
    queries_s3_uri: str
    feature_dim: str  # hyperparameters are strings
    k: str
    sample_size: str
    queries_manifest_key: str
    n_users: int  # the state machine's publish Choice (fan out above a user count)
    n_parts: int  # transform input objects: user parts, then item-query parts
    publish_batches_key: str  # the publish Map's ItemReader object (common/batches.py)


@dataclass(frozen=True, kw_only=True)
class RunResultsEvent(_Payload):
    """The event of evaluate, publish and publish's finalize: where the run's transform output is."""

    STEP = "evaluate/publish"
    run_id: str
    manifest_key: str
    queries_manifest_key: str
    transform_output_s3_uri: str


@dataclass(frozen=True, kw_only=True)
class PublishPartsEvent(RunResultsEvent):
    """One Distributed Map item: the four fields + a range of query parts, both ends included
    (an entry of repackage's `publish_batches_key` object, common/batches.py)."""

    STEP = "publish parts"
    first_part: int
    last_part: int


@dataclass(frozen=True, kw_only=True)
class EvaluateResult(_Payload):
    STEP = "evaluate result"
    metrics_key: str
    passed: bool
    model: dict[str, Any]
    baseline: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class PublishResult(_Payload):
    STEP = "publish result"
    run_id: str
    users_written: int
    pointer: str  # the run id the pointer now names


@dataclass(frozen=True, kw_only=True)
class ReportEvent(RunResultsEvent):
    """The report state's event: the run's outputs + where the FM job and the execution are."""

    STEP = "report"
    fm_job_name: str  # DescribeTrainingJob: the FM's final metrics
    fm_model_s3_uri: str  # the FM output (the local trainer writes metrics.json beside it)
    execution_arn: str  # GetExecutionHistory: seconds per state


@dataclass(frozen=True, kw_only=True)
class ReportResult(_Payload):
    STEP = "report result"
    report_key: str
    previous_run_id: str  # "" when there is no earlier complete run
    sections: list[str]
