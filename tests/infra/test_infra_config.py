"""Config validation: clear messages naming the key, -c string values, dotted overrides, cross-checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.config import AppConfig, ConfigError

DEFAULTS: dict[str, Any] = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())[
    "context"
]


def build(**overrides: Any) -> AppConfig:
    context = dict(DEFAULTS)
    context.update({f"topx:{k}": v for k, v in overrides.items()})
    return AppConfig.from_context(context)


def test_defaults_build_explicit_step_configs() -> None:
    config = build()
    assert config.region == "us-east-1" and config.schedule == "rate(7 days)"
    assert config.notification_email is None and config.kms is False
    assert config.fm.hyperparameters["predictor_type"] == "binary_classifier"
    assert config.steps.publish.x == config.steps.evaluate.x == config.steps.repackage.x == 10
    assert config.steps.evaluate.index_metric == "INNER_PRODUCT"
    # defaults of each step's own dataclass are filled in (one source of truth)
    assert config.steps.prepare.holdout_n == 10 and config.steps.publish.ttl_days == 30


def test_feature_prefixes_are_read_by_prepare_only() -> None:
    from infra.steps import step_access

    config = build(
        **{
            "prepare.user_features": "metadata/users/",
            "prepare.user_feature_columns": "age:numeric:5",
            "prepare.item_features": "metadata/items",
            "prepare.item_feature_columns": "genres:multi:pipe",
        }
    )
    access = step_access(config)
    assert {"metadata/users/", "metadata/items/"} <= set(access["prepare"].read)
    others = [p for step, a in access.items() if step != "prepare" for p in a.read]
    assert not any(p.startswith("metadata/") for p in others)


def test_evaluate_reads_the_knn_item_vectors_for_the_cold_protocols() -> None:
    from infra.steps import step_access

    access = step_access(build())
    assert "runs/*/knn/train/" in access["evaluate"].read  # evaluate/cold.py ranks from them
    assert "runs/*/knn/train/" not in access["publish"].read


def test_cli_strings_and_dotted_keys() -> None:
    config = build(
        **{
            "x": "20",
            "kms": "true",
            "schedule": "off",
            "fm.hyperparameters.epochs": "30",
            "fm.hyperparameters.factors_wd": "0.01",
            "prepare.label_mode": "binary",
            "prepare": '{"input_prefix": "data/ratings/"}',
            "notification_email": "ops@example.com",
        }
    )
    assert config.steps.publish.x == 20 and config.kms is True and config.schedule is None
    assert config.fm.hyperparameters["epochs"] == "30" and config.fm.hyperparameters["factors_wd"] == "0.01"
    assert config.steps.prepare.input_prefix == "data/ratings/"  # whole-object override
    assert config.steps.prepare.label_mode == "binary"  # then the dotted key on top
    assert config.notification_email == "ops@example.com"


def test_numeric_hyperparameters_become_sagemaker_strings() -> None:
    config = build(**{"fm.hyperparameters.epochs": 25, "fm.hyperparameters.bias_lr": 0.1})
    assert config.fm.hyperparameters["epochs"] == "25" and config.fm.hyperparameters["bias_lr"] == "0.1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"region": "mars-north-1"}, "topx:region: 'mars-north-1' has no built-in algorithm image"),
        ({"schedule": "every sunday"}, "topx:schedule: 'every sunday' is not an EventBridge expression"),
        ({"notification_email": "nobody"}, "topx:notification_email: 'nobody' is not an e-mail"),
        ({"kms": "maybe"}, "topx:kms: expected true or false"),
        ({"x": 0}, "topx:x: must be in 1..1000"),
        ({"fm.instance_type": "c5.xlarge"}, "topx:fm.instance_type: expected a SageMaker instance type"),
        ({"fm.instance_count": 0}, "topx:fm.instance_count: must be in 1..100"),
        ({"fm.hyperparameters.feature_dim": "10"}, "['feature_dim'] are set by the state machine"),
        ({"knn.hyperparameters.k": "10"}, "['k'] are set by the state machine"),
        ({"fm.hyperparameters.num_factor": "8"}, "unknown SageMaker hyperparameter(s) ['num_factor']"),
        (
            {"fm.hyperparameters.predictor_type": "regressor"},
            "'topx:prepare.label_mode' 'implicit' writes labels",
        ),
        (
            {"knn.hyperparameters.index_metric": "DOT"},
            "topx:knn.hyperparameters.index_metric: must be one of",
        ),
        (
            {"spot.enabled": True, "spot.max_wait_seconds": 600},
            "'topx:spot.max_wait_seconds' (600) must be >=",
        ),
        ({"spot.enable": True}, "topx:spot: unknown key(s) ['enable']"),
        ({"transform": "{not json"}, "topx:transform: not a JSON object"),
        (
            {"transform.max_concurrent_transforms": 0},
            "topx:transform.max_concurrent_transforms: must be in 1..100",
        ),
        (
            {"transform.max_concurrent_transforms": 20},
            "'topx:transform.max_concurrent_transforms' (20) x 'topx:transform.max_payload_mb' (6) = 120 MB "
            "exceeds SageMaker's 100 MB",
        ),
        (
            {"transform.response_budget_bytes": 6_553_501},
            "topx:transform.response_budget_bytes: must be in 1..6553500",
        ),
        (
            {"transform.response_budget_bytes": 30_000},
            "'topx:transform.response_budget_bytes' (30000) is below one verbose k-NN line at "
            "'topx:repackage.max_k' = 1000 (35069 bytes worst case)",
        ),
        (
            {"transform.max_payload_mb": 1, "fm.hyperparameters.num_factors": "300000"},
            "'topx:transform.max_payload_mb' (1) cannot hold one query of 1200036 bytes "
            "('topx:fm.hyperparameters.num_factors' + 1 = 300001 float32 values)",
        ),
        (
            {"repackage.max_payload_mb": 7},
            "'topx:repackage.max_payload_mb' (7) differs from 'topx:transform.max_payload_mb' (6)",
        ),
        ({"run_expiry_days": 30}, "'topx:run_expiry_days' (30) must exceed 'topx:publish.ttl_days' (30.0)"),
        (
            {"schedule": "rate(45 days)"},
            "'topx:publish.ttl_days' (30.0) must exceed the schedule interval ('topx:schedule' "
            "'rate(45 days)' = 45 days)",
        ),
        ({"schedule": "rate(720 hours)"}, "'rate(720 hours)' = 30 days"),
        ({"schedule": "cron(0 3 1 * ? *)"}, "'cron(0 3 1 * ? *)' = 31 days"),
        ({"publish.x": 5}, "'topx:publish.x' (5) differs from 'topx:x' (10)"),
        (
            {"publish.filter_exclude_items_key": "filters/*.txt"},
            "topx:publish.filter_exclude_items_key: an exact S3 key without '*' or '?'",
        ),
        (
            {"publish.filter_exclude_items_key": "runs/r1/unavailable.txt"},
            "topx:publish.filter_exclude_items_key: must not be under runs/",
        ),
        (
            {"publish.filter_user_exclusions_key": "input/bought.csv"},
            "topx:publish.filter_user_exclusions_key: 'input/bought.csv' lies under the input prefix "
            "'input/'",
        ),
        (
            {"publish.filter_metadata_include": ["books"]},
            "topx:publish.filter_metadata_include/exclude: need filter_metadata_key and "
            "filter_metadata_column",
        ),
        (
            {"repackage.read_extra": 3},
            "'topx:repackage.read_extra' (3) differs from 'topx:publish.read_extra' (10)",
        ),
        ({"publish.related_x": -1}, "topx:publish.related_x: must be in 0..1000"),
        ({"publish.users_per_child": 0}, "topx:publish.users_per_child: must be in 1..500000"),
        ({"publish.users_per_child": 600_000}, "topx:publish.users_per_child: must be in 1..500000"),
        (
            {"repackage.users_per_child": 7},
            "'topx:repackage.users_per_child' (7) differs from 'topx:publish.users_per_child' (100000)",
        ),
        ({"prepare.label_mode": "stars"}, "topx:prepare.label_mode: 'stars' is not one of"),
        ({"prepare.negative_ratio": 0}, "topx:prepare.negative_ratio: must be >= 1, got 0"),
        (
            {"evaluate.min_precision": 2.0},
            "topx:evaluate.min_precision: must be in [0.0, 1.0], got 2.0",
        ),
        ({"publish.ttl_day": 3}, "topx:publish: unknown key(s) ['ttl_day']"),
        ({"lambda.memory_mb": 64}, "topx:lambda.memory_mb: must be in 128..10240"),
        ({"prepare.input_prefix": ""}, "'topx:prepare.input_prefix' must not be empty"),
        ({"knn.instance_count": 2}, "'topx:knn.instance_count' must be 1, got 2: SageMaker k-NN splits"),
        (
            {"prepare.min_shards": 3},
            "'topx:prepare.min_shards' (3) differs from 'topx:fm.instance_count' (1)",
        ),
        (
            {"sagemaker_security.network_isolation": "yes"},
            "topx:sagemaker_security.network_isolation: expected true or false, got 'yes'",
        ),
        ({"sagemaker_security.isolation": True}, "topx:sagemaker_security: unknown key(s) ['isolation']"),
        ({"vpc.subnet_ids": ["subnet-0abc"]}, "topx:vpc: missing key(s) ['security_group_ids']"),
        (
            {"vpc": {"subnet_ids": [], "security_group_ids": ["sg-1"]}},
            "topx:vpc.subnet_ids: expected a list of 1 to 16 ids, got []",
        ),
        (
            {"vpc": {"subnet_ids": ["subnet-0abc"], "security_group_ids": ["sg-XYZ"]}},
            "topx:vpc.security_group_ids: ['sg-XYZ'] do not match",
        ),
        (
            {"vpc": {"subnet_ids": ["sg-0abc"], "security_group_ids": ["sg-0abc"]}},
            "topx:vpc.subnet_ids: ['sg-0abc'] do not match ^subnet-[0-9a-f]+$",
        ),
        (
            {"vpc": {"subnet_ids": ["subnet-1", "subnet-1"], "security_group_ids": ["sg-1"]}},
            "topx:vpc.subnet_ids: duplicate ids",
        ),
        (
            {"prepare.test_prefix": "runs/x/"},
            "topx:prepare.test_prefix: 'runs/x/' must not contain '*' nor lie under",
        ),
        (
            {"prepare.item_features": "runs/x/", "prepare.item_feature_columns": "genres:multi:pipe"},
            "topx:prepare.item_features: 'runs/x/' must not contain '*' nor lie under",
        ),
        (
            {"prepare.user_features": "input/users/", "prepare.user_feature_columns": "age:numeric"},
            "topx:prepare.user_features: 'input/users/' lies under an interaction prefix",
        ),
        (
            {"prepare.user_features": "metadata/users/"},
            "user_features and user_feature_columns go together",
        ),
    ],
)
def test_invalid_values_are_rejected_with_the_key(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(**overrides)
    assert message in str(info.value)


def test_sagemaker_security_defaults_isolate_without_vpc_and_shard_for_every_fm_instance() -> None:
    config = build()
    assert config.sagemaker_security.network_isolation is True and config.vpc is None
    assert config.steps.prepare.min_shards == 1
    config = build(**{"fm.instance_count": 3, "sagemaker_security.network_isolation": "false"})
    assert config.steps.prepare.min_shards == 3  # injected, like x
    assert config.sagemaker_security.network_isolation is False


def test_vpc_from_dotted_keys_on_the_null_default() -> None:
    config = build(
        **{"vpc.subnet_ids": '["subnet-0a1", "subnet-0b2"]', "vpc.security_group_ids": '["sg-0c3"]'}
    )
    assert config.vpc is not None
    assert config.vpc.subnet_ids == ("subnet-0a1", "subnet-0b2") and config.vpc.security_group_ids == (
        "sg-0c3",
    )
    assert build(vpc="null").vpc is None


def test_transform_sizing_values_reach_repackage() -> None:
    config = build()
    assert config.transform.max_concurrent_transforms == 4
    assert config.steps.repackage.max_payload_mb == config.transform.max_payload_mb == 6
    assert config.steps.repackage.response_budget_bytes == config.transform.response_budget_bytes == 5 * 2**20
    # a smaller budget is fine as long as one line at the k cap fits it
    config = build(**{"transform.response_budget_bytes": 30_000, "repackage.max_k": 800})
    assert config.steps.repackage.response_budget_bytes == 30_000


def test_publish_list_settings_and_filters_reach_repackage() -> None:
    config = build(
        **{
            "publish.read_extra": 5,
            "publish.related_x": 0,
            "publish.users_per_child": 40_000,
            "publish.filter_metadata_key": "catalog/items.tsv",
            "publish.filter_metadata_column": "category",
            "publish.filter_metadata_exclude": ["adult"],
        }
    )
    repackage, publish = config.steps.repackage, config.steps.publish
    assert (repackage.read_extra, repackage.related_x) == (publish.read_extra, publish.related_x) == (5, 0)
    assert repackage.filter_keys() == publish.filter_keys() == {"filter_metadata_key": "catalog/items.tsv"}
    assert repackage.users_per_child == publish.users_per_child == 40_000  # repackage writes the ranges
    assert repackage.filter_metadata_exclude == ("adult",)
    assert config.steps.for_step("repackage")["filter_metadata_exclude"] == ("adult",)


def test_missing_key_points_at_cdk_json() -> None:
    context = {k: v for k, v in DEFAULTS.items() if k != "topx:fm"}
    with pytest.raises(ConfigError, match=r"topx:fm: missing \(defaults live in cdk.json\)"):
        AppConfig.from_context(context)


def test_the_transform_instance_count_is_injected_into_repackage() -> None:
    from infra.step_configs import validate_step_configs

    sections = {name: {} for name in ("prepare", "repackage", "evaluate", "publish", "report")}
    common = {"x": 10, "index_metric": "INNER_PRODUCT", "fm_instance_count": 1, "max_payload_mb": 6}
    steps = validate_step_configs(
        sections, **common, response_budget_bytes=5_242_880, transform_instance_count=4
    )
    assert steps.repackage.transform_instance_count == 4
    with pytest.raises(
        Exception, match=r"topx:repackage.transform_instance_count.*topx:transform.instance_count"
    ):
        validate_step_configs(
            {**sections, "repackage": {"transform_instance_count": 2}},
            **common,
            response_budget_bytes=5_242_880,
            transform_instance_count=4,
        )


def test_a_named_recipe_sets_the_negatives_and_the_fm_epochs_and_rate() -> None:
    # decision 0017: the FM's hyperparameters are fixed at synth time, so the recipe is applied here
    economy = build(recipe="economy")
    assert economy.steps.prepare.recipe == "economy"
    assert (economy.steps.prepare.negative_draws, economy.steps.prepare.negative_ratio) == (1, 4)
    assert economy.fm.hyperparameters["epochs"] == "6" and economy.fm.hyperparameters["factors_lr"] == "0.002"
    assert economy.fm.hyperparameters["num_factors"] == "64"  # the rest as cdk.json has it
    assert economy.steps.for_step("prepare")["recipe"] == "economy"  # prepare's STEP_CONFIG
    # the recipe's own values given again are fine; cdk.json's custom default leaves everything as is
    same = build(recipe="economy", **{"fm.hyperparameters.epochs": "6", "prepare.negative_draws": 1})
    assert same.fm.hyperparameters == economy.fm.hyperparameters
    custom = build(**{"prepare.negative_draws": 2, "fm.hyperparameters.epochs": 11})
    assert (custom.steps.prepare.recipe, custom.steps.prepare.negative_draws) == ("custom", 2)
    assert custom.fm.hyperparameters["epochs"] == "11"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"recipe": "economy", "fm.hyperparameters.epochs": "7"},
            "'topx:fm.hyperparameters.epochs' (7) conflicts with 'topx:recipe' 'economy', "
            "which sets it to '6'",
        ),
        (
            {"recipe": "minimal", "prepare.negative_ratio": 2},
            "'topx:prepare.negative_ratio' (2) conflicts with 'topx:recipe' 'minimal', which sets it to 1",
        ),
        (
            {"recipe": "auto"},
            "topx:recipe: must be one of ['custom', 'quality', 'balanced', 'economy', 'minimal']",
        ),
        (
            {"recipe": "economy", "prepare.recipe": "quality"},
            "'topx:prepare.recipe' ('quality') differs from 'topx:recipe' ('economy')",
        ),
    ],
)
def test_recipe_conflicts_name_the_keys(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(**overrides)
    assert message in str(info.value)
