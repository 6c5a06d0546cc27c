"""The failure-notification topic (+ optional e-mail subscription)."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
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
        # `enforce_ssl` makes CDK write a topic policy holding only the TLS deny; a topic policy
        # replaces SNS's default one, so CloudWatch alarm actions would fail with "not authorized to
        # perform: SNS:Publish". Allow the CloudWatch service principal, limited to alarms of this
        # account and region (confused-deputy conditions). AWS docs: "Example cases for Amazon SNS
        # access control" / "Cross-service confused deputy prevention" in the Amazon SNS Developer
        # Guide, https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html
        alarms = f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": alarms},
                },
            )
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
