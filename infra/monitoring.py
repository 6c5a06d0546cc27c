"""Alarms and a small dashboard for the pipeline, and the alarms on run quality and drift."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import AppConfig

QUALITY_PERIOD = Duration.hours(1)


class Monitoring(Construct):
    """Alarms for what the state machine's own Catch path cannot report (timeouts, aborted runs,
    step functions erroring outside a run), all to the notification topic; and a dashboard.

    With `topx:alarms.enabled`, two more alarms to the same topic on the metrics the report step
    puts after each run: the quality ratio vs the previous run below `min_ratio_vs_previous`, and
    `drift_at_x` above `max_drift`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_machine: sfn.StateMachine,
        functions: Mapping[str, lambda_.IFunction],
        topic: sns.ITopic,
        config: AppConfig,
    ) -> None:
        super().__init__(scope, construct_id)
        period = Duration.minutes(5)
        action = actions.SnsAction(topic)
        alarm_metrics = {
            "TimedOut": state_machine.metric_timed_out(period=period),
            "Aborted": state_machine.metric_aborted(period=period),
            "Throttled": state_machine.metric_throttled(period=period),
        }
        self.alarms: list[cloudwatch.Alarm] = []
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
        quality = self._quality_alarms(config, action) if config.alarms.enabled else []

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
        if quality:
            # Graphs with the thresholds drawn, not AlarmWidgets: the dashboard then does not depend on
            # the alarms (which the local rehearsal cannot create, docs/local-mode.md).
            self.dashboard.add_widgets(
                *(
                    cloudwatch.GraphWidget(
                        title=title,
                        left=[alarm.metric],
                        left_annotations=[cloudwatch.HorizontalAnnotation(value=threshold, label="alarm")],
                        width=12,
                    )
                    for title, alarm, threshold in (
                        ("Quality vs the previous run", quality[0], config.alarms.min_ratio_vs_previous),
                        ("Drift vs the previous run", quality[1], config.alarms.max_drift),
                    )
                ),
                cloudwatch.GraphWidget(
                    title="Model vs most popular", left=self._evaluate_metrics(config), width=12
                ),
            )

    def _quality_alarms(self, config: AppConfig, action: actions.SnsAction) -> list[cloudwatch.Alarm]:
        """One datapoint per run (PutMetricData by the report step). Missing data is not breaching, so
        the alarm fires on the period holding a bad run's datapoint and returns to OK afterwards
        (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html,
        "Configuring how CloudWatch alarms treat missing data"); each transition to ALARM notifies."""
        alarms = config.alarms
        ratio_name = f"{config.steps.report.ratio_metric}_ratio_vs_previous"
        specs = (
            ("QualityDropVsPrevious", ratio_name, "Minimum", alarms.min_ratio_vs_previous,
             cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
             f"{ratio_name} < {alarms.min_ratio_vs_previous}: the run ranks worse than the previous one"),
            ("DriftVsPrevious", "drift_at_x", "Maximum", alarms.max_drift,
             cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
             f"drift_at_x > {alarms.max_drift}: the users' lists changed more than expected"),
        )  # fmt: skip
        created = []
        for cid, metric_name, statistic, threshold, operator, description in specs:
            alarm = cloudwatch.Alarm(
                self,
                cid,
                metric=cloudwatch.Metric(
                    namespace=alarms.namespace,
                    metric_name=metric_name,
                    statistic=statistic,
                    period=QUALITY_PERIOD,
                ),
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=operator,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            alarm.add_alarm_action(action)
            created.append(alarm)
        self.alarms.extend(created)
        return created

    @staticmethod
    def _evaluate_metrics(config: AppConfig) -> list[cloudwatch.IMetric]:
        """The evaluate step's `<metric>_at_x` of the gate metric, model and baseline."""
        evaluate = config.steps.evaluate
        return [
            cloudwatch.Metric(
                namespace=config.alarms.namespace,
                metric_name=f"{evaluate.gate_metric}_at_x",
                dimensions_map={**evaluate.cloudwatch_dimensions, "Variant": variant},
                statistic="Average",
                period=QUALITY_PERIOD,
                label=variant,
            )
            for variant in ("model", "baseline")
        ]
