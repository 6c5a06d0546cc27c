"""The optional read API (`topx:api`, docs/decisions/0013-read-api.md): API Gateway HTTP API -> the
query Lambda (`pipeline_steps.query.handler.handler`).

- Routes `GET /users/{id}/recommendations` and `GET /items/{id}/related`, both AWS_IAM (SigV4; the
  caller needs `execute-api:Invoke` on `arn:aws:execute-api:<region>:<account>:<api-id>/<stage>/GET/
  <path>`, API Gateway developer guide, "Control access to HTTP APIs with IAM authorization") or,
  with `auth: jwt`, a JWT authoriser (issuer + audience; "Control access to HTTP APIs with JWT
  authorizers").
- The `$default` stage (auto-deployed) throttles every route (`DefaultRouteSettings`:
  `ThrottlingRateLimit`, `ThrottlingBurstLimit`; "Throttle requests to your HTTP APIs") and writes
  JSON access logs to its own log group ("Configure logging for HTTP APIs"; the `$context`
  variables are those of "Customize HTTP API access logs"), retention from
  `topx:log_retention_days`, encrypted with the customer key when `topx:kms` is on.
- The function's role may call `dynamodb:GetItem` on the table and nothing else there (plus
  `kms:Decrypt` with a customer-key table: "How Amazon DynamoDB uses AWS KMS", reads need the
  caller to be allowed to decrypt with the table's key), and write its own log group.
- With item metadata (`item_metadata_key` + `item_fields`): `s3:GetObject` on exactly that object
  of the data bucket, nothing else in S3. With `topx:kms` the bucket's objects are SSE-KMS with the
  same customer key, and downloading one needs `kms:Decrypt` on it (Amazon S3 user guide, "Using
  server-side encryption with AWS KMS keys (SSE-KMS)": permissions), which the role already has.
  Without `s3:ListBucket`, a missing object answers 403 AccessDenied rather than 404 (S3 API
  Reference, GetObject, "Permissions"); the function names the object either way.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import CfnOutput, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra import bundling
from infra.config import ApiConfig, AppConfig
from infra.nag import acknowledge
from infra.retention import retention

HANDLER = "pipeline_steps.query.handler.handler"
ROUTES = ("/users/{id}/recommendations", "/items/{id}/related")
# One JSON object per request. $context.identity.userArn is the SigV4 caller (IAM auth),
# $context.authorizer.claims.sub the token's subject (JWT auth).
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "sourceIp": "$context.identity.sourceIp",
    "caller": "$context.identity.userArn",
    "subject": "$context.authorizer.claims.sub",
}


class ReadApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        api: ApiConfig,
        table: dynamodb.ITable,
        bucket: s3.IBucket,
        key: kms.IKey | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        log_group = logs.LogGroup(
            self,
            "FunctionLogs",
            retention=retention(config.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_group.grant_write(self.role)
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["dynamodb:GetItem"], resources=[table.table_arn])
        )
        if key is not None:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["kms:Decrypt"], resources=[key.key_arn])
            )
        environment = {"TABLE_NAME": table.table_name, "POINTER_TTL_SECONDS": str(api.pointer_ttl_seconds)}
        if api.item_metadata_key:
            environment |= _item_metadata(api, bucket.bucket_name)
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["s3:GetObject"], resources=[bucket.arn_for_objects(api.item_metadata_key)]
                )
            )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=bundling.RUNTIME,
            architecture=bundling.ARCHITECTURE,
            code=bundling.step_code(),
            handler=HANDLER,
            role=self.role,
            environment=environment,
            log_group=log_group,
            memory_size=api.memory_mb,
            timeout=Duration.seconds(10),
            ephemeral_storage_size=Size.mebibytes(512),
            description=f"{config.project} read API: recommendations and related items",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            f"Pinned to {bundling.RUNTIME.name}: the bundle's wheels are resolved for CPython "
            f"{bundling.PYTHON_VERSION} (infra/bundling.py); moving runtime means re-testing that set.",
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{config.project}-read",
            description=f"{config.project}: users' top x and items' related items",
            create_default_stage=False,
        )
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=retention(config.log_retention_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=api.throttle_rate, burst_limit=api.throttle_burst),
            access_log_settings=_AccessLogs(self.access_logs),
        )
        authorizer: apigwv2.IHttpRouteAuthorizer
        if api.auth == "jwt":
            authorizer = authorizers.HttpJwtAuthorizer(
                "Jwt", api.jwt_issuer, jwt_audience=list(api.jwt_audience)
            )
        else:
            authorizer = authorizers.HttpIamAuthorizer()
        integration = integrations.HttpLambdaIntegration(
            "Query", self.function, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
        )
        for path in ROUTES:
            self.http_api.add_routes(
                path=path, methods=[apigwv2.HttpMethod.GET], integration=integration, authorizer=authorizer
            )
        CfnOutput(self, "Url", value=self.http_api.api_endpoint)
        CfnOutput(
            self,
            "InvokeArn",
            value=Stack.of(self).format_arn(
                service="execute-api", resource=self.http_api.api_id, resource_name="$default/GET/*"
            ),
            description="grant execute-api:Invoke on this ARN to the callers (IAM auth)",
        )


def _item_metadata(api: ApiConfig, bucket_name: str) -> dict[str, str]:
    """The handler's item metadata environment (pipeline_steps/query/handler.py)."""
    return {
        "ITEM_METADATA_BUCKET": bucket_name,
        "ITEM_METADATA_KEY": api.item_metadata_key,
        "ITEM_FIELDS": json.dumps(list(api.item_fields), ensure_ascii=False),
        "ITEM_METADATA_MAX_BYTES": str(api.item_metadata_max_mb * 1024 * 1024),
        "ITEM_METADATA_CHECK_SECONDS": str(api.item_metadata_check_seconds),
    }


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogs:
    """IAccessLogSettings (a jsii interface): the log group and the JSON format above."""

    def __init__(self, group: logs.ILogGroup) -> None:
        self._group = group

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return apigwv2.LogGroupLogDestination(self._group)

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")))
