"""The optional read API (`topx:api`): HTTP API, IAM auth by default, JWT option, throttling, access
logs, GetItem-only grants, cdk-nag clean (Template.from_stack)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.api import ACCESS_LOG_FORMAT, HANDLER, ROUTES
from infra.config import AppConfig, ConfigError
from tests.infra.conftest import OPTIONS, Synth, resources
from tests.infra.test_infra_nag import _findings

API = {"throttle_rate": 40, "throttle_burst": 80, "pointer_ttl_seconds": 15}


@pytest.fixture(scope="module")
def api_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk-api")
    app = build_app({"topx:api": json.dumps(API)}, outdir=str(outdir))
    app.synth()  # cdk-nag runs here: any unacknowledged finding fails the synth
    return Synth(outdir=outdir, app=app)


@pytest.fixture(scope="module")
def api(api_synth: Synth) -> Template:
    return Template.from_stack(api_synth.app.node.find_child("fm-knn-topx-pipeline"))


def test_api_is_off_by_default(default_synth: Synth) -> None:
    template = default_synth.template("pipeline")
    assert resources(template, "AWS::ApiGatewayV2::Api") == {}
    functions = resources(template, "AWS::Lambda::Function").values()
    assert HANDLER not in [f["Properties"]["Handler"] for f in functions]


def test_routes_use_iam_auth_by_default(api: Template) -> None:
    api.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    api.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    routes = api.find_resources("AWS::ApiGatewayV2::Route")
    assert sorted(r["Properties"]["RouteKey"] for r in routes.values()) == sorted(f"GET {p}" for p in ROUTES)
    assert {r["Properties"]["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}
    api.resource_count_is("AWS::ApiGatewayV2::Authorizer", 0)
    api.has_resource_properties(
        "AWS::ApiGatewayV2::Integration", {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"}
    )


def test_stage_throttles_and_writes_json_access_logs(api: Template) -> None:
    api.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {"ThrottlingRateLimit": 40, "ThrottlingBurstLimit": 80},
            "AccessLogSettings": {
                "DestinationArn": {"Fn::GetAtt": [Match.string_like_regexp("ReadApiAccessLogs"), "Arn"]},
                "Format": Match.any_value(),
            },
        },
    )
    (stage,) = api.find_resources("AWS::ApiGatewayV2::Stage").values()
    assert json.loads(stage["Properties"]["AccessLogSettings"]["Format"]) == ACCESS_LOG_FORMAT
    logs = api.find_resources("AWS::Logs::LogGroup")
    access = next(v for k, v in logs.items() if k.startswith("ReadApiAccessLogs"))
    assert access["Properties"]["RetentionInDays"] == 30  # topx:log_retention_days
    assert "KmsKeyId" not in access["Properties"]  # topx:kms off


def _statements(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    policies = template.find_resources("AWS::IAM::Policy")
    found = []
    for policy in policies.values():
        roles = [r["Ref"] for r in policy["Properties"]["Roles"]]
        if any(r.startswith(role_prefix) for r in roles):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_function_may_only_get_items_from_the_table(api: Template) -> None:
    api.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Environment": {
                "Variables": {
                    "TABLE_NAME": {"Fn::ImportValue": "fm-knn-topx-table-name"},
                    "POINTER_TTL_SECONDS": "15",
                }
            },
        },
    )
    statements = _statements(api, "ReadApiRole")
    actions = sorted(
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == ["dynamodb:GetItem", "logs:CreateLogStream", "logs:PutLogEvents"]
    (table,) = [s for s in statements if s["Action"] == "dynamodb:GetItem"]
    assert "table/" in json.dumps(table["Resource"]) and "index" not in json.dumps(table["Resource"])
    assert all(s["Effect"] == "Allow" and "*" not in json.dumps(s["Resource"]) for s in statements)


def test_api_synth_has_zero_nag_findings(api_synth: Synth) -> None:
    report = api_synth.outdir / "validation-report.json"
    assert not report.exists() or _findings(json.loads(report.read_text())) == []


def test_jwt_option_kms_and_throttle_in_the_every_option_synth(options_synth: Synth) -> None:
    template = options_synth.template("pipeline")
    (authorizer,) = resources(template, "AWS::ApiGatewayV2::Authorizer").values()
    props = authorizer["Properties"]
    assert props["AuthorizerType"] == "JWT"
    assert props["JwtConfiguration"] == {
        "Audience": ["example-client-id"],
        "Issuer": OPTIONS["topx:api.jwt_issuer"],
    }
    assert props["IdentitySource"] == ["$request.header.Authorization"]
    routes = resources(template, "AWS::ApiGatewayV2::Route").values()
    assert {r["Properties"]["AuthorizationType"] for r in routes} == {"JWT"}
    (stage,) = resources(template, "AWS::ApiGatewayV2::Stage").values()
    assert stage["Properties"]["DefaultRouteSettings"]["ThrottlingRateLimit"] == 25
    logs = resources(template, "AWS::Logs::LogGroup")
    access = next(v for k, v in logs.items() if k.startswith("ReadApiAccessLogs"))
    assert access["Properties"]["KmsKeyId"] == {"Fn::ImportValue": "fm-knn-topx-key-arn"}
    statements = [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if any(r["Ref"].startswith("ReadApiRole") for r in p["Properties"]["Roles"])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert {
        "Action": "kms:Decrypt",
        "Effect": "Allow",
        "Resource": {"Fn::ImportValue": "fm-knn-topx-key-arn"},
    } in (statements)
    key_policy = next(iter(resources(options_synth.template("storage"), "AWS::KMS::Key").values()))
    logs_statement = [
        s
        for s in key_policy["Properties"]["KeyPolicy"]["Statement"]
        if "logs." in json.dumps(s.get("Principal"))
    ]
    assert len(logs_statement) == 1 and "kms:EncryptionContext:aws:logs:arn" in json.dumps(logs_statement)


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"auth": "cognito"}, "topx:api.auth: 'cognito' is not one of 'iam', 'jwt'"),
        ({"auth": "jwt", "jwt_audience": ["a"]}, "topx:api.jwt_issuer: expected an https:// issuer URL"),
        ({"auth": "jwt", "jwt_issuer": "https://issuer.example"}, "topx:api.jwt_audience: at least one"),
        ({"jwt_issuer": "https://issuer.example"}, "only used with auth 'jwt'"),
        ({"throttle_rate": 0}, "topx:api.throttle_rate: must be in 1..10000"),
        ({"throttle_burst": 6000}, "topx:api.throttle_burst: must be in 1..5000"),
        ({"pointer_ttl_seconds": 301}, "topx:api.pointer_ttl_seconds: must be in 0..300"),
        ({"cache": 1}, "topx:api: unknown key(s) ['cache']"),
    ],
)
def test_api_config_errors_name_the_key(api: dict[str, Any], message: str) -> None:
    from app import default_context

    with pytest.raises(ConfigError, match=re.escape(message)):
        AppConfig.from_context({**default_context(), "topx:api": api})


METADATA_API = {**API, "item_metadata_key": "catalog/items.csv", "item_fields": ["title", "genres"]}


@pytest.fixture(scope="module")
def metadata_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Item metadata on, with the customer key (the bucket's objects are then SSE-KMS)."""
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk-api-metadata")
    app = build_app({"topx:api": json.dumps(METADATA_API), "topx:kms": "true"}, outdir=str(outdir))
    app.synth()  # cdk-nag: any unacknowledged finding fails the synth
    return Synth(outdir=outdir, app=app)


def test_item_metadata_grants_get_object_on_exactly_that_key(metadata_synth: Synth) -> None:
    template = Template.from_stack(metadata_synth.app.node.find_child("fm-knn-topx-pipeline"))
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": HANDLER,
            "Environment": {
                "Variables": Match.object_like(
                    {
                        "ITEM_METADATA_BUCKET": {"Fn::ImportValue": "fm-knn-topx-bucket-name"},
                        "ITEM_METADATA_KEY": "catalog/items.csv",
                        "ITEM_FIELDS": '["title", "genres"]',
                        "ITEM_METADATA_MAX_BYTES": str(50 * 1024 * 1024),
                        "ITEM_METADATA_CHECK_SECONDS": "300",
                    }
                )
            },
        },
    )
    statements = _statements(template, "ReadApiRole")
    s3_statements = [s for s in statements if "s3:" in json.dumps(s["Action"])]
    assert len(s3_statements) == 1 and s3_statements[0]["Action"] == "s3:GetObject"
    resource = json.dumps(s3_statements[0]["Resource"])
    assert resource.endswith('"/catalog/items.csv"]]}') and "*" not in resource
    kms = [s for s in statements if s["Action"] == "kms:Decrypt"]
    assert kms == [
        {"Action": "kms:Decrypt", "Effect": "Allow", "Resource": {"Fn::ImportValue": "fm-knn-topx-key-arn"}}
    ]
    report = metadata_synth.outdir / "validation-report.json"
    assert not report.exists() or _findings(json.loads(report.read_text())) == []


def test_without_item_metadata_the_function_has_no_s3_access(api: Template) -> None:
    statements = _statements(api, "ReadApiRole")
    assert not [s for s in statements if "s3:" in json.dumps(s["Action"])]
    (function,) = [
        f
        for f in api.find_resources("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == HANDLER
    ]
    assert not [v for v in function["Properties"]["Environment"]["Variables"] if v.startswith("ITEM_")]


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"item_fields": ["title"]}, "topx:api.item_metadata_key: required with item_fields"),
        ({"item_metadata_key": "c/items.csv"}, "topx:api.item_fields: name at least one column"),
        (
            {"item_metadata_key": "c/*.csv", "item_fields": ["t"]},
            "topx:api.item_metadata_key: an exact S3 key without '*' or '?'",
        ),
        (
            {"item_metadata_key": "runs/items.csv", "item_fields": ["t"]},
            "topx:api.item_metadata_key: must not be under runs/",
        ),
        (
            {"item_metadata_key": "input/items.csv", "item_fields": ["t"]},
            "topx:api.item_metadata_key: 'input/items.csv' lies under the input prefix 'input/'",
        ),
        (
            {"item_metadata_key": "c/items.csv", "item_fields": ["score"]},
            "topx:api.item_fields: distinct non-empty column names other than ['item_id', 'score']",
        ),
        (
            {"item_metadata_key": "c/items.csv", "item_fields": ["t", "t"]},
            "topx:api.item_fields: distinct non-empty",
        ),
        (
            {"item_metadata_key": "c/items.csv", "item_fields": ["t"], "item_metadata_max_mb": 100},
            "topx:api.memory_mb: 512 MB cannot parse an item metadata object of item_metadata_max_mb = 100",
        ),
        ({"item_metadata_max_mb": 0}, "topx:api.item_metadata_max_mb: must be in 1..1024"),
    ],
)
def test_item_metadata_config_errors_name_the_key(api: dict[str, Any], message: str) -> None:
    from app import default_context

    with pytest.raises(ConfigError, match=re.escape(message)):
        AppConfig.from_context({**default_context(), "topx:api": api})
