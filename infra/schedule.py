"""The EventBridge rule that starts a run periodically (absent when `topx:schedule` is off)."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct


class Schedule(Construct):
    """`rule` starts the state machine with `{}` as input; execution names are generated (UUIDs)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, expression: str, state_machine: sfn.IStateMachine
    ) -> None:
        super().__init__(scope, construct_id)
        self.rule = events.Rule(
            self,
            "Rule",
            schedule=events.Schedule.expression(expression),
            description="Start the recommendations pipeline",
            targets=[targets.SfnStateMachine(state_machine, input=events.RuleTargetInput.from_object({}))],
        )
