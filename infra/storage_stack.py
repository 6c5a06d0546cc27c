"""Stateful stack: the data bucket and the recommendations table (RETAIN), exported by fixed names.

The pipeline stack imports them by those names (not CDK's generated cross-stack exports), so the
exports are stable across refactors and every IAM finding that names the bucket is predictable.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnOutput, Environment, Fn, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import AppConfig
from infra.storage import Storage


@dataclass(frozen=True)
class StorageExports:
    """The export names of one deployment's storage."""

    project: str

    def name(self, what: str) -> str:
        return f"{self.project}-{what}"


class StorageStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        disposable: bool = False,
        env: Environment | None = None,
    ) -> None:
        super().__init__(scope, construct_id, env=env)
        storage = Storage(self, "Storage", config=config, disposable=disposable)
        self.storage = storage
        self.exports = StorageExports(config.project)
        values = {
            "bucket-name": storage.bucket.bucket_name,
            "bucket-arn": storage.bucket.bucket_arn,
            "table-name": storage.table.table_name,
            "table-arn": storage.table.table_arn,
        }
        if storage.key is not None:
            values["key-arn"] = storage.key.key_arn
        for what, value in values.items():
            CfnOutput(self, what.title().replace("-", ""), value=value, export_name=self.exports.name(what))


class ImportedStorage(Construct):
    """The storage stack's bucket, table and key, imported by export name into another stack."""

    def __init__(
        self, scope: Construct, construct_id: str, *, exports: StorageExports, kms_enabled: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket_arn_export = exports.name("bucket-arn")
        self.bucket = s3.Bucket.from_bucket_attributes(
            self,
            "Bucket",
            bucket_arn=Fn.import_value(self.bucket_arn_export),
            bucket_name=Fn.import_value(exports.name("bucket-name")),
        )
        self.key: kms.IKey | None = None
        if kms_enabled:
            self.key = kms.Key.from_key_arn(self, "Key", Fn.import_value(exports.name("key-arn")))
        self.table = dynamodb.Table.from_table_attributes(
            self,
            "Table",
            table_name=Fn.import_value(exports.name("table-name")),
            encryption_key=self.key,
        )
