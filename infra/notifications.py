"""The failure-notification topic (+ optional e-mail subscription)."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.config import AppConfig
from infra.nag import acknowledge


class Notifications(Construct):
    """`topic`: the state machine's Catch path and the alarms publish here."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, key: kms.IKey | None
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self, "Topic", display_name=f"{config.project} pipeline", master_key=key, enforce_ssl=True
        )
        if key is None:
            acknowledge(
                self.topic,
                "AwsSolutions-SNS2",
                "Messages carry only the execution name, error and cause (no data). The AWS-managed SNS key "
                "would stop CloudWatch alarms from publishing here; set topx:kms=true for the customer key.",
            )
        if config.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.notification_email))
