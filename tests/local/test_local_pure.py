"""Pure parts of the local runner: history -> progress/timings, CLI context overrides, subsets."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta

import pytest

from pipeline_steps.local import cli
from pipeline_steps.local.progress import watch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(seconds: float, kind: str, **details):
    return {"timestamp": T0 + timedelta(seconds=seconds), "type": kind, **details}


def _entered(s, name):
    return _event(s, "TaskStateEntered", stateEnteredEventDetails={"name": name})


def _exited(s, name):
    return _event(s, "TaskStateExited", stateExitedEventDetails={"name": name})


class FakeSfn:
    """Serves a growing history: one more slice of events per poll, then the final status."""

    def __init__(self, slices, final):
        self.slices, self.final, self.polls = slices, final, 0

    def describe_execution(self, executionArn):
        done = self.polls >= len(self.slices) - 1
        return self.final if done else {"status": "RUNNING", "startDate": T0}

    def get_execution_history(self, executionArn, maxResults):
        events = [e for part in self.slices[: self.polls + 1] for e in part]
        self.polls += 1
        return {"events": events}


def test_watch_times_states_from_event_timestamps_and_reads_failure_reasons():
    cause = json.dumps({"TrainingJobName": "r-fm", "FailureReason": "ClientError: epochs must be >= 1"})
    slices = [
        [_event(0, "ExecutionStarted"), _entered(0, "Prepare")],
        [_exited(2.5, "Prepare"), _entered(2.5, "TrainFM")],
        [
            _event(3.0, "TaskFailed", taskFailedEventDetails={"error": "States.TaskFailed", "cause": cause}),
            _exited(3.0, "TrainFM"),
            _entered(3.0, "NotifyFailure"),
            _exited(3.25, "NotifyFailure"),
            _event(3.5, "ExecutionFailed"),
        ],
    ]
    final = {
        "status": "FAILED",
        "error": "States.TaskFailed",
        "cause": cause,
        "startDate": T0,
        "stopDate": T0 + timedelta(seconds=3.5),
    }
    lines: list[str] = []
    result = watch(FakeSfn(slices, final), "arn", log=lines.append, poll_seconds=0.0, max_poll_seconds=0.0)
    assert result.status == "FAILED"
    assert result.path == ["Prepare", "TrainFM", "NotifyFailure"]
    assert result.stage_seconds == {"Prepare": 2.5, "TrainFM": 0.5, "NotifyFailure": 0.25}
    assert result.total_seconds == 3.5
    assert result.failures == [
        {
            "state": "TrainFM",
            "error": "States.TaskFailed",
            "reason": "ClientError: epochs must be >= 1",
            "cause": cause,
        }
    ]
    assert any(
        "TrainFM failed: States.TaskFailed: ClientError: epochs must be >= 1" in line for line in lines
    )
    assert lines[0].strip().startswith("[") and "> Prepare" in lines[0]


def test_context_overrides_from_cli_arguments():
    args = argparse.Namespace(
        x=5, columns="user_id,2,,ts", context=["topx:fm.hyperparameters.epochs=3", "topx:kms=false"]
    )
    overrides = cli._context_overrides(args, has_test=True)
    assert overrides == {
        "topx:prepare.test_prefix": "input-test/",
        "topx:x": 5,
        "topx:prepare.user_col": "user_id",
        "topx:prepare.item_col": 2,
        "topx:prepare.rating_col": "",
        "topx:prepare.timestamp_col": "ts",
        "topx:fm.hyperparameters.epochs": 3,
        "topx:kms": False,
    }


@pytest.mark.parametrize("columns", ["user", "a,b,c,d,e"])
def test_columns_must_name_two_to_four_columns(columns):
    args = argparse.Namespace(x=None, columns=columns, context=None)
    with pytest.raises(SystemExit, match="USER,ITEM"):
        cli._context_overrides(args, has_test=False)


def test_rerun_epochs_option_is_passed_on_and_checked():
    def options(rerun):
        args = argparse.Namespace(
            assembly=None, no_enforce_iam=False, retry_wait_scale=1.0, rerun_epochs=rerun, put=None
        )
        return cli._run_options(args)

    assert options(4)["rerun_epochs"] == 4 and options(None)["rerun_epochs"] is None
    with pytest.raises(SystemExit, match="--rerun-epochs must be >= 1"):
        options(0)
    # a failed second run fails the command
    assert cli._succeeded({"status": "SUCCEEDED", "rerun": {"status": "SUCCEEDED"}}, None)
    assert not cli._succeeded({"status": "SUCCEEDED", "rerun": {"status": "FAILED"}}, None)


def test_subset_keeps_the_first_users_rows_in_both_files(tmp_path):
    base, test = tmp_path / "ua.base", tmp_path / "ua.test"
    base.write_text("1\t10\t5\t1\n2\t11\t4\t2\n1\t12\t3\t3\n3\t13\t5\t4\n", encoding="utf-8")
    test.write_text("3\t14\t5\t5\n1\t15\t4\t6\n2\t16\t4\t7\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    b, t = cli._subset_users(base, test, 2, tmp_path / "sub")
    assert b.read_text(encoding="utf-8") == "1\t10\t5\t1\n2\t11\t4\t2\n1\t12\t3\t3\n"
    assert t.read_text(encoding="utf-8") == "1\t15\t4\t6\n2\t16\t4\t7\n"


def test_stop_leaves_moto_and_the_process_as_they_were(monkeypatch):
    from moto.awslambda.models import LambdaFunction
    from moto.core.config import default_user_config
    from moto.sagemaker.responses import SageMakerResponse

    from pipeline_steps.local.server import LocalAws

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid")
    originals = (LambdaFunction._invoke_lambda, SageMakerResponse.create_training_job)
    aws = LocalAws().start()
    try:
        assert LambdaFunction._invoke_lambda is not originals[0]
        assert default_user_config["stepfunctions"]["execute_state_machine"] is True
        assert aws.endpoint.startswith("http://127.0.0.1:")
        assert aws.client("s3").list_buckets()["Buckets"] == []
    finally:
        aws.stop()
    assert (LambdaFunction._invoke_lambda, SageMakerResponse.create_training_job) == originals
    assert default_user_config["stepfunctions"]["execute_state_machine"] is False
    assert os.environ["AWS_ENDPOINT_URL"] == "http://elsewhere.invalid"


def test_feature_files_become_uploads_and_prepare_prefixes(tmp_path):
    items = tmp_path / "item-features.tsv"
    items.write_text("item_id\tgenres\n1\tComedy\n", encoding="utf-8")
    columns = "topx:prepare.item_feature_columns=genres:multi:space"
    args = argparse.Namespace(
        x=None, columns=None, context=[columns], item_features=[str(items)], user_features=None
    )
    overrides = cli._context_overrides(args, has_test=False)
    assert overrides == {
        "topx:prepare.item_feature_columns": "genres:multi:space",
        "topx:prepare.item_features": "metadata/items/",
    }
    assert cli._feature_uploads(args) == [("metadata/items/item-features.tsv", items)]
    args.context = None
    with pytest.raises(SystemExit, match="--item-features needs the columns to use"):
        cli._context_overrides(args, has_test=False)
    args.item_features = [str(tmp_path / "missing.tsv")]
    with pytest.raises(SystemExit, match="--item-features: no such file"):
        cli._feature_uploads(args)


def test_a_profile_passes_through_and_its_content_keys_the_cached_assembly(tmp_path):
    """`-c topx:profile=FILE` reaches the app as `cdk -c` does; editing the file re-synthesizes."""
    from pipeline_steps.local.deploy import REPO_ROOT, _source_fingerprint

    args = argparse.Namespace(context=["topx:profile=profiles/100m.json"])
    overrides = cli._context_overrides(args, has_test=False)
    assert overrides == {"topx:profile": "profiles/100m.json"}
    profile = tmp_path / "p.json"
    profile.write_text('{"topx:fm.instance_count": 2}')
    context = {"topx:profile": str(profile)}
    before = _source_fingerprint(context, REPO_ROOT / "app.py")
    profile.write_text('{"topx:fm.instance_count": 3}')
    assert _source_fingerprint(context, REPO_ROOT / "app.py") != before
