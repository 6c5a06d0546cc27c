"""The rehearsal fails where AWS would: remove one permission from the synthesized template, run
that cloud assembly (`run --assembly DIR`) with IAM enforced, and the run fails at the state that
needs it, with an AccessDenied naming the role and the action. The same assembly, unmodified,
succeeds."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from pipeline_steps.local import cli
from pipeline_steps.local.deploy import synth_cached
from tests.local.test_local_end_to_end import _write_interactions

# The same small configuration as the end-to-end test (tests/local/test_local_end_to_end.py).
CONTEXT = {
    "topx:prepare.test_prefix": cli.TEST_PREFIX,
    "topx:x": 5,
    "topx:prepare.user_col": "user",
    "topx:prepare.item_col": "item",
    "topx:prepare.rating_col": "rating",
    "topx:prepare.timestamp_col": "timestamp",
    "topx:fm.hyperparameters.epochs": 3,
    "topx:fm.hyperparameters.num_factors": 8,
}
PIPELINE = "fm-knn-topx-pipeline.template.json"


@pytest.fixture(scope="module")
def assembly() -> Path:
    path, _ = synth_cached(context=CONTEXT, log=lambda _m: None)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    ratings, held, _ = _write_interactions(tmp_path_factory.mktemp("permissions-data"))
    return ratings, held


def _role_of_function(template: dict, handler: str) -> str:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Lambda::Function" and resource["Properties"]["Handler"] == handler:
            return resource["Properties"]["Role"]["Fn::GetAtt"][0]
    raise AssertionError(f"no function with handler {handler}")


def _state_machine_role(template: dict) -> str:
    (machine,) = (
        r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"
    )
    return machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]


def _sagemaker_role(template: dict) -> str:
    for logical_id, resource in template["Resources"].items():
        trust = json.dumps(resource.get("Properties", {}).get("AssumeRolePolicyDocument", {}))
        if resource["Type"] == "AWS::IAM::Role" and "sagemaker.amazonaws.com" in trust:
            return logical_id
    raise AssertionError("no SageMaker role")


def without(template: dict, role: str, action: str) -> dict:
    """The template with ``action`` removed from every policy statement attached to ``role``."""
    edited = copy.deepcopy(template)
    removed = 0
    for resource in edited["Resources"].values():
        if resource["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in resource["Properties"]["Roles"]:
            continue
        kept = []
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            remaining = [a for a in actions if a != action]
            removed += len(actions) - len(remaining)
            if remaining:
                kept.append({**statement, "Action": remaining if len(remaining) > 1 else remaining[0]})
        resource["Properties"]["PolicyDocument"]["Statement"] = kept
    assert removed, f"{action} is not granted to {role}: nothing to remove"
    return edited


def run_assembly(source: Path, workdir: Path, data: tuple[Path, Path], edit=None) -> dict:
    """Copy the assembly, apply ``edit`` to the pipeline template, run it; returns the report."""
    target = workdir / "assembly"
    shutil.copytree(source, target)
    if edit is not None:
        path = target / PIPELINE
        path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    ratings, held = data
    out = workdir / "out"
    code = cli.main(
        [
            "run",
            "--assembly",
            str(target),
            "--ratings",
            str(ratings),
            "--test",
            str(held),
            "--retry-wait-scale",
            "0.01",
            "--out",
            str(out),
        ]
    )
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (code == 0) == (report["status"] == "SUCCEEDED")
    return report


CASES = {
    "prepare cannot read its input": (
        lambda t: without(t, _role_of_function(t, "pipeline_steps.prepare.handler.handler"), "s3:GetObject"),
        "Prepare",
        "s3:GetObject",
        "StepsPrepareRole",
    ),
    "the state machine cannot tag the jobs .sync starts": (
        lambda t: without(t, _state_machine_role(t), "sagemaker:AddTags"),
        "TrainFM",
        "sagemaker:AddTags",
        "WorkflowStateMachineRole",
    ),
    "the SageMaker role cannot write the model": (
        lambda t: without(t, _sagemaker_role(t), "s3:PutObject"),
        "TrainFM",
        "s3:PutObject",
        "SageMakerRole",
    ),
    "publish cannot batch-write the users' lists": (
        lambda t: without(
            t, _role_of_function(t, "pipeline_steps.publish.handler.handler"), "dynamodb:BatchWriteItem"
        ),
        "Publish",
        "dynamodb:BatchWriteItem",
        "StepsPublishRole",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_missing_permission_fails_the_run_at_the_state_that_needs_it(case, assembly, data, tmp_path):
    edit, state, action, role = CASES[case]
    report = run_assembly(assembly, tmp_path, data, edit)
    assert report["status"] == "FAILED"
    failures = report["failures"]
    assert {f["state"] for f in failures} == {state}, failures
    failure = failures[-1]
    assert f"is not authorized to perform: {action}" in failure["cause"], failure
    assert f"assumed-role/fm-knn-topx-pipeline-{role}" in failure["cause"], failure
    assert report.get("pointer") is None  # nothing was published


def test_the_same_assembly_unmodified_succeeds(assembly, data, tmp_path):
    report = run_assembly(assembly, tmp_path, data)
    assert report["status"] == "SUCCEEDED"
    assert report["pointer"]["run_id"] == report["run_id"]
