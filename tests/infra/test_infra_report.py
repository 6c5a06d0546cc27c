"""The report state, its Lambda's grants, the quality metrics and alarms (Template.from_stack)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.context import ConfigError
from tests.infra.conftest import Synth, render_asl, resources
from tests.infra.test_infra_config import build

NAMESPACE = "fm-knn-topx/quality"


@pytest.fixture(scope="module")
def template(default_synth: Synth) -> dict[str, Any]:
    return dict(Template.from_stack(default_synth.app.node.find_child("fm-knn-topx-pipeline")).to_json())


def statements(template: dict[str, Any], role_fragment: str) -> list[dict[str, Any]]:
    roles = {k for k in resources(template, "AWS::IAM::Role") if role_fragment in k}
    return [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if any(r.get("Ref") in roles for r in p["Properties"]["Roles"])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def actions(statement: dict[str, Any]) -> list[str]:
    a = statement["Action"]
    return a if isinstance(a, list) else [a]


def test_report_runs_after_publish_and_its_failure_notifies_then_succeeds(template: dict[str, Any]) -> None:
    states = render_asl(template)["States"]
    assert states["Publish"]["Next"] == "Report"
    report = states["Report"]
    assert report["Next"] == "Published" and states["Published"]["Type"] == "Succeed"
    # The run is live once published: a failed report is notified, never a Fail.
    assert report["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.report_error", "Next": "NotifyReportFailure"}
    ]
    notify = states["NotifyReportFailure"]
    assert notify["Resource"] == "arn:aws:states:::sns:publish"
    assert notify["Next"] == "Published" and notify["Catch"][0]["Next"] == "Published"
    assert "report failed" in notify["Parameters"]["Subject"]
    assert notify["Parameters"]["Message"]["error.$"] == "$.report_error.Error"
    payload = report["Parameters"]  # the handler's event (payload_response_only)
    assert payload["fm_job_name.$"] == "$.fm.job_name"
    assert payload["fm_model_s3_uri.$"] == "$.fm.model_s3_uri"
    assert payload["execution_arn.$"] == "$$.Execution.Id"
    assert payload["transform_output_s3_uri.$"] == "$.transform.output_s3_uri"
    assert report["ResultPath"] == "$.report"


def test_report_lambda_gets_exactly_its_reads_writes_and_calls(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Lambda::Function").values()
    handler = "pipeline_steps.report.handler.handler"
    (props,) = [f["Properties"] for f in functions if f["Properties"]["Handler"] == handler]
    config = json.loads(props["Environment"]["Variables"]["STEP_CONFIG"])
    assert config["history_runs"] == 20 and config["x"] == 10 and config["cloudwatch_namespace"] == NAMESPACE
    found = statements(template, "ReportRole")

    def keys(action: str) -> set[str]:
        return {
            json.dumps(r).split("/", 1)[1].rstrip('"]}')
            for s in found
            if action in actions(s)
            for r in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        }

    assert keys("s3:PutObject") == {"runs/*/report/*"}
    assert keys("s3:GetObject") == {
        "runs/*/prepared/*", "runs/*/knn/queries/*", "runs/*/transform/*", "runs/*/evaluation/*",
        "runs/*/fm/*",
    }  # fmt: skip
    assert not any("s3:DeleteObject" in actions(s) for s in found)
    table = {a for s in found for a in actions(s) if a.startswith("dynamodb:")}
    assert table == {"dynamodb:GetItem", "dynamodb:Query"}
    (describe,) = [s for s in found if "sagemaker:DescribeTrainingJob" in actions(s)]
    assert actions(describe) == ["sagemaker:DescribeTrainingJob"]
    assert ":training-job/*" in json.dumps(describe["Resource"])
    (history,) = [s for s in found if "states:GetExecutionHistory" in actions(s)]
    assert ":execution:" in json.dumps(history["Resource"]) and "GetAtt" in json.dumps(history["Resource"])
    sagemaker = {a for s in found for a in actions(s) if a.startswith("sagemaker:")}
    assert sagemaker == {"sagemaker:DescribeTrainingJob"}


def test_put_metric_data_only_for_evaluate_and_report_in_their_namespace(template: dict[str, Any]) -> None:
    # (the SageMaker role's own grant is for /aws/sagemaker/*, what the jobs put)
    putters = {
        role
        for role in resources(template, "AWS::IAM::Role")
        if role.startswith("Steps")
        for s in statements(template, role)
        if "cloudwatch:PutMetricData" in actions(s)
    }
    assert {r.split("Role")[0].removeprefix("Steps") for r in putters} == {"Evaluate", "Report"}
    for role in putters:
        (s,) = [s for s in statements(template, role) if "cloudwatch:PutMetricData" in actions(s)]
        assert s["Resource"] == "*"
        assert s["Condition"] == {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}


def test_alarms_on_quality_drop_and_drift_notify_the_topic(template: dict[str, Any]) -> None:
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == NAMESPACE
    }
    assert set(alarms) == {"ndcg_ratio_vs_previous", "drift_at_x"}
    ratio, drift = alarms["ndcg_ratio_vs_previous"], alarms["drift_at_x"]

    def rule(alarm: dict[str, Any]) -> tuple[str, float, str]:
        return alarm["ComparisonOperator"], alarm["Threshold"], alarm["Statistic"]

    assert rule(ratio) == ("LessThanThreshold", 0.9, "Minimum")
    assert rule(drift) == ("GreaterThanThreshold", 0.8, "Maximum")
    (topic,) = resources(template, "AWS::SNS::Topic")
    for alarm in (ratio, drift):
        assert alarm["TreatMissingData"] == "notBreaching" and alarm["EvaluationPeriods"] == 1
        assert alarm["AlarmActions"] == [{"Ref": topic}]
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for text in ("ndcg_ratio_vs_previous", "drift_at_x", "ndcg_at_x", "Drift vs the previous run"):
        assert text in body, text


def test_options_namespace_and_fan_out_report_after_the_flip(options_synth: Synth) -> None:
    template = options_synth.template("pipeline")
    states = render_asl(template)["States"]
    assert states["PublishFinalize"]["Next"] == "Report"
    namespaces = {
        json.dumps(s.get("Condition"))
        for role in resources(template, "AWS::IAM::Role")
        if role.startswith("Steps")
        for s in statements(template, role)
        if "cloudwatch:PutMetricData" in actions(s)
    }
    assert namespaces == {json.dumps({"StringEquals": {"cloudwatch:namespace": "TopX"}})}
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    ours = {"ndcg_ratio_vs_previous", "drift_at_x"}
    namespaces = {a["Properties"]["Namespace"] for a in alarms if a["Properties"].get("MetricName") in ours}
    assert namespaces == {"TopX"}


def test_alarms_config_defaults_switch_off_and_errors() -> None:
    config = build()
    assert config.alarms.enabled and config.alarms.namespace == NAMESPACE
    assert config.steps.evaluate.cloudwatch_namespace == config.steps.report.cloudwatch_namespace == NAMESPACE
    off = build(**{"alarms.enabled": False})
    assert off.steps.evaluate.cloudwatch_namespace == off.steps.report.cloudwatch_namespace == ""
    assert build(**{"report.history_runs": 5}).steps.report.history_runs == 5
    for overrides, message in (
        ({"alarms.max_drift": 2}, "topx:alarms.max_drift: must be in [0.0, 1.0], got 2.0"),
        ({"alarms.namespace": "AWS/Lambda"}, "topx:alarms.namespace: not a CloudWatch namespace"),
        ({"alarms.extra": 1}, "topx:alarms: unknown key(s) ['extra']"),
        ({"evaluate.cloudwatch_namespace": "Other"}, "differs from 'topx:alarms.namespace'"),
        ({"report.history_runs": 0}, "history_runs: must be in 1..500"),
    ):
        with pytest.raises(ConfigError) as info:
            build(**overrides)
        assert message in str(info.value)
