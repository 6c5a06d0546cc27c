"""The guard step: deterministic run ids within SageMaker's name rules, and the skip decision (moto)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto import mock_aws

from pipeline_steps.guard.core import (
    MAX_RUN_ID,
    GuardInputError,
    earlier_active_run,
    execution_hash,
    run_id_for,
    run_names,
)
from pipeline_steps.guard.handler import guard

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
EXECUTION_NAME = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="-_"),
    min_size=1,
    max_size=80,
)
SAGEMAKER_KEYS = ("fm_job_name", "knn_job_name", "model_name", "transform_job_name")
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:fm-knn-topx-pipeline-WorkflowStateMachine-AbC"
ARN = MACHINE.replace(":stateMachine:", ":execution:") + ":abc"
START = "2026-11-27T03:00:00.123Z"


def _names(name: str = "abc", *, project: str = "fm-knn-topx", arn: str = ARN, start: str = START) -> dict:
    return run_names(name, "bkt", project=project, execution_arn=arn, start_time=start)


def test_valid_short_names_are_kept_as_run_id_and_namespaced_for_sagemaker() -> None:
    assert run_id_for("2026-11-27-nightly") == "2026-11-27-nightly"
    names = _names("abc")
    h = execution_hash(ARN, START)
    assert re.fullmatch(r"[0-9a-f]{8}", h)
    assert names["run_id"] == "abc"
    assert names["fm_job_name"] == f"fm-knn-topx-abc-{h}-fm"
    assert names["knn_job_name"] == names["model_name"] == f"fm-knn-topx-abc-{h}-knn"
    assert names["transform_job_name"] == f"fm-knn-topx-abc-{h}-tr"
    assert names["fm_output_s3_uri"] == "s3://bkt/runs/abc/fm/"
    assert names["knn_output_s3_uri"] == "s3://bkt/runs/abc/knn/model/"
    assert names["transform_output_s3_uri"] == "s3://bkt/runs/abc/transform/"
    assert names["transform_output_prefix"] == "runs/abc/transform/"


def test_long_or_invalid_names_are_rewritten_deterministically() -> None:
    long = "a" * 80
    assert run_id_for(long) == run_id_for(long)
    assert len(run_id_for(long)) == MAX_RUN_ID
    assert run_id_for("my_run_1") != run_id_for("my-run-1")  # the hash keeps them apart
    assert run_id_for("my_run_1").startswith("my-run-1-")
    assert run_id_for("___").startswith("run-")
    with pytest.raises(GuardInputError):
        run_id_for("")


PROJECT = st.text(alphabet=st.characters(codec="ascii"), min_size=0, max_size=40)


@given(EXECUTION_NAME, PROJECT)
def test_every_execution_name_and_project_give_valid_job_names(name: str, project: str) -> None:
    names = _names(name, project=project)
    for key in SAGEMAKER_KEYS:
        assert SAGEMAKER_NAME.fullmatch(names[key]) and len(names[key]) <= 63, (name, project, names[key])
    assert run_id_for(name) == names["run_id"]


def test_long_and_odd_inputs_are_cut_to_63_with_the_prefix_and_hash_kept() -> None:
    names = _names("x_" * 40, project="My Very Long Project Name!!")
    h = execution_hash(ARN, START)
    assert len(names["knn_job_name"]) == 63 and SAGEMAKER_NAME.fullmatch(names["knn_job_name"])
    assert names["knn_job_name"].startswith("My-Very-Long-Pro-x-x-")  # project cut to 16 chars
    assert names["knn_job_name"].endswith(f"-{h}-knn") and names["fm_job_name"].endswith(f"-{h}-fm")
    assert _names("run", project="__")["fm_job_name"].startswith("topx-run-")  # nothing left of it


def test_sagemaker_names_are_stable_per_execution_and_differ_across_executions() -> None:
    first = _names("nightly")
    assert _names("nightly") == first  # a retried state or a redrive: same ARN, same start time
    other_deployment = ARN.replace("StateMachine-AbC", "StateMachine-XyZ")
    later = "2027-02-25T03:00:00.456Z"  # the same execution name, reused after 90 days
    for changed in (_names("nightly", arn=other_deployment), _names("nightly", start=later)):
        assert changed["run_id"] == first["run_id"] == "nightly"  # the S3 prefix stays the run id
        for key in SAGEMAKER_KEYS:
            assert changed[key] != first[key] and changed[key].startswith("fm-knn-topx-nightly-")
    with pytest.raises(GuardInputError):
        _names("nightly", start="")


def test_earliest_running_execution_proceeds_and_ties_break_by_arn() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    running = [{"executionArn": "arn:a", "startDate": t0}, {"executionArn": "arn:b", "startDate": t0}]
    assert earlier_active_run(running, execution_arn="arn:a", start_time=t0.isoformat()) is None
    assert earlier_active_run(running, execution_arn="arn:b", start_time="2026-01-01T00:00:00Z") == "arn:a"
    later = [{"executionArn": "arn:c", "startDate": t0 + timedelta(hours=1)}]
    assert earlier_active_run(later, execution_arn="arn:a", start_time=t0) is None


@mock_aws
def test_handler_lists_this_state_machines_running_executions() -> None:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    iam = boto3.client("iam", region_name="us-east-1")
    role = iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = json.dumps(
        {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 600, "End": True}}}
    )
    machine = sfn.create_state_machine(name="pipeline", definition=definition, roleArn=role)[
        "stateMachineArn"
    ]
    first = sfn.start_execution(stateMachineArn=machine, name="first")
    second = sfn.start_execution(stateMachineArn=machine, name="second")
    described = {e["name"]: e for e in sfn.list_executions(stateMachineArn=machine)["executions"]}

    def event(name: str, arn: str) -> dict:
        start = described[name]["startDate"].isoformat()
        return {
            "execution_name": name,
            "execution_arn": arn,
            "state_machine_arn": machine,
            "start_time": start,
        }

    result = guard(event("second", second["executionArn"]), bucket="bkt", project="proj", sfn=sfn)
    assert result["skip"] is True and result["blocking_execution_arn"] == first["executionArn"]
    assert result["run_id"] == "second"
    assert result["fm_job_name"].startswith("proj-second-") and result["fm_job_name"].endswith("-fm")
    result = guard(event("first", first["executionArn"]), bucket="bkt", project="proj", sfn=sfn)
    assert result["skip"] is False and result["blocking_execution_arn"] == ""
    with pytest.raises(GuardInputError, match="start_time"):
        guard(
            {"execution_name": "x", "execution_arn": "a", "state_machine_arn": machine},
            bucket="b",
            project="p",
            sfn=sfn,
        )
