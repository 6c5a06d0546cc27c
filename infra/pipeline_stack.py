"""Stateless stack: step functions, SageMaker role, state machine, schedule, notifications, monitoring."""

from __future__ import annotations

from aws_cdk import CfnOutput, Environment, Stack
from constructs import Construct

from infra.api import ReadApi
from infra.config import AppConfig
from infra.kms_access import allow_key
from infra.monitoring import Monitoring
from infra.notifications import Notifications
from infra.sagemaker_role import SageMakerRole
from infra.schedule import Schedule
from infra.spark_prepare import SparkPrepare
from infra.steps import StepFunctions
from infra.storage_stack import ImportedStorage, StorageExports
from infra.workflow import Workflow


class PipelineStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        exports: StorageExports,
        env: Environment | None = None,
    ) -> None:
        super().__init__(scope, construct_id, env=env)
        storage = ImportedStorage(self, "Storage", exports=exports, kms_enabled=config.kms)
        bucket, table, key = storage.bucket, storage.table, storage.key
        steps = StepFunctions(self, "Steps", config=config, bucket=bucket, table=table, key=key)
        sagemaker = SageMakerRole(self, "SageMaker", bucket=bucket, key=key, vpc=config.vpc)
        notifications = Notifications(self, "Notifications", config=config, key=key)
        spark_prepare = (
            SparkPrepare(self, "SparkJob", config=config, bucket=bucket, key=key)
            if config.steps.prepare.engine == "spark"
            else None
        )
        workflow = Workflow(
            self,
            "Workflow",
            config=config,
            functions=steps.functions,
            sagemaker_role=sagemaker.role,
            topic=notifications.topic,
            bucket=bucket,
            key=key,
            spark_prepare=spark_prepare,
        )
        steps.allow_guard(workflow.state_machine)
        steps.allow_report(workflow.state_machine)
        allow_key(key, workflow.state_machine.role)
        if config.schedule:
            Schedule(self, "Schedule", expression=config.schedule, state_machine=workflow.state_machine)
        Monitoring(
            self,
            "Monitoring",
            state_machine=workflow.state_machine,
            functions=steps.functions,
            topic=notifications.topic,
            config=config,
        )
        self.state_machine = workflow.state_machine
        self.read_api = (
            ReadApi(self, "ReadApi", config=config, api=config.api, table=table, bucket=bucket, key=key)
            if config.api
            else None
        )
        CfnOutput(self, "StateMachineArn", value=workflow.state_machine.state_machine_arn)
        CfnOutput(self, "BucketName", value=bucket.bucket_name)
        CfnOutput(self, "TableName", value=table.table_name)
        CfnOutput(self, "TopicArn", value=notifications.topic.topic_arn)
