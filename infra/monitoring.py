"""Alarms and a small dashboard for the pipeline."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class Monitoring(Construct):
    """Alarms for what the state machine's own Catch path cannot report (timeouts, aborted runs,
    step functions erroring outside a run), all to the notification topic; and a dashboard."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: Mapping[str, lambda_.IFunction],
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        period = Duration.minutes(5)
        action = actions.SnsAction(topic)
        alarm_metrics = {
            "TimedOut": state_machine.metric_timed_out(period=period),
            "Aborted": state_machine.metric_aborted(period=period),
            "Throttled": state_machine.metric_throttled(period=period),
        }
        self.alarms = []
        for name, metric in alarm_metrics.items():
            alarm = cloudwatch.Alarm(
                self,
                f"Executions{name}",
                metric=metric.with_(statistic="Sum"),
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"The pipeline state machine reported Executions{name}.",
            )
            alarm.add_alarm_action(action)
            self.alarms.append(alarm)

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard")
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Runs",
                left=[
                    state_machine.metric_started(period=Duration.hours(1)),
                    state_machine.metric_succeeded(period=Duration.hours(1)),
                    state_machine.metric_failed(period=Duration.hours(1)),
                    state_machine.metric_timed_out(period=Duration.hours(1)),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Run duration (ms)",
                left=[state_machine.metric_time(period=Duration.hours(1))],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Step duration (ms, max)",
                left=[f.metric_duration(statistic="Maximum", label=n) for n, f in functions.items()],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Step errors", left=[f.metric_errors(label=n) for n, f in functions.items()], width=12
            ),
        )
