"""Typed deployment config, built once in app.py from cdk.json context (and -c overrides).

Every key lives under the `topx:` prefix. Object-valued keys (`topx:fm`, `topx:prepare`, ...) can be
overridden whole (`-c 'topx:prepare={"label_mode": "binary"}'`) or one field at a time with a dotted
key (`-c topx:prepare.label_mode=binary`, `-c topx:fm.hyperparameters.epochs=30`). Values given on
the command line arrive as strings; they are read as JSON when they parse as JSON.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra import images
from infra.context import PREFIX, ConfigError, Context
from infra.step_configs import StepConfigs, validate_step_configs
from pipeline_steps.common import limits, sizing
from pipeline_steps.common.config import between, config_from_dict, one_of
from pipeline_steps.common.filters import check_filter_key
from pipeline_steps.common.layout import RUNS_PREFIX
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X
from pipeline_steps.common.recipes import CUSTOM, RECIPE_NAMES, RECIPES

FM_HYPERPARAMETERS = frozenset(
    {
        "num_factors",
        "predictor_type",
        "epochs",
        "clip_gradient",
        "eps",
        "rescale_grad",
        "bias_lr",
        "linear_lr",
        "factors_lr",
        "bias_wd",
        "linear_wd",
        "factors_wd",
        "bias_init_method",
        "bias_init_scale",
        "bias_init_sigma",
        "bias_init_value",
        "linear_init_method",
        "linear_init_scale",
        "linear_init_sigma",
        "linear_init_value",
        "factors_init_method",
        "factors_init_scale",
        "factors_init_sigma",
        "factors_init_value",
        "mini_batch_size",
    }
)
KNN_HYPERPARAMETERS = frozenset(
    {
        "predictor_type",
        "dimension_reduction_target",
        "dimension_reduction_type",
        "index_metric",
        "index_type",
        "faiss_index_ivf_nlists",
        "faiss_index_pq_m",
        "mini_batch_size",
    }
)
# Set by the state machine from the step outputs, never from config.
RUNTIME_HYPERPARAMETERS = {
    "fm": frozenset({"feature_dim"}),
    "knn": frozenset({"feature_dim", "k", "sample_size"}),
}

_SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$")
_RATE = re.compile(r"^rate\((\d+) (minute|hour|day)s?\)$")
_DAYS_PER_UNIT = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_INSTANCE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
_PROJECT = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
# VpcConfig (SageMaker API reference, API_VpcConfig): 1..16 subnets, 1..5 security groups.
_NAMESPACE = re.compile(r"^[A-Za-z0-9._/#:-]{1,255}$")  # CloudWatch: no leading "AWS/" either
MAX_RUNTIME_SECONDS = 28 * 86400  # SageMaker StoppingCondition.MaxRuntimeInSeconds upper bound
_VPC_IDS = {
    "subnet_ids": (re.compile(r"^subnet-[0-9a-f]+$"), 16),
    "security_group_ids": (re.compile(r"^sg-[0-9a-f]+$"), 5),
}


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """One SageMaker training job: instances, limits and the static hyperparameters (strings)."""

    instance_type: str
    instance_count: int = field(metadata=between(1, 100))
    volume_gb: int = field(metadata=between(1, 16384))
    max_runtime_seconds: int = field(metadata=between(60, MAX_RUNTIME_SECONDS))
    hyperparameters: dict[str, str]

    def validate(self, where: str) -> None:
        _instance(f"{where}.instance_type", self.instance_type)


@dataclass(frozen=True, kw_only=True)
class TransformConfig:
    instance_type: str
    instance_count: int = field(metadata=between(1, 100))
    max_payload_mb: int = field(metadata=between(1, sizing.MAX_PAYLOAD_MB))
    max_runtime_seconds: int = field(metadata=between(60, MAX_RUNTIME_SECONDS))
    # requests in flight per instance (MaxConcurrentTransforms)
    max_concurrent_transforms: int = field(metadata=between(1, 100))
    # largest verbose response one request may produce (decision 0008); the container's response
    # limit (sizing.CONTAINER_RESPONSE_LIMIT) is the hard maximum
    response_budget_bytes: int = field(metadata=between(1, sizing.MAX_RESPONSE_BUDGET))

    def validate(self, where: str) -> None:
        _instance(f"{where}.instance_type", self.instance_type)
        # CreateTransformJob: "the value of (MaxConcurrentTransforms * MaxPayloadInMB) also cannot
        # exceed 100 MB" (API reference, MaxPayloadInMB).
        product = self.max_concurrent_transforms * self.max_payload_mb
        if product > sizing.MAX_PAYLOAD_TIMES_CONCURRENCY_MB:
            raise ConfigError(
                f"'{where}.max_concurrent_transforms' ({self.max_concurrent_transforms}) x "
                f"'{where}.max_payload_mb' ({self.max_payload_mb}) = {product} MB exceeds SageMaker's "
                f"{sizing.MAX_PAYLOAD_TIMES_CONCURRENCY_MB} MB"
            )


@dataclass(frozen=True, kw_only=True)
class SpotConfig:
    enabled: bool
    # >= max_runtime_seconds of each job; SageMaker's MaxWaitTimeInSeconds
    max_wait_seconds: int = field(metadata=between(60, MAX_RUNTIME_SECONDS))


@dataclass(frozen=True, kw_only=True)
class SageMakerSecurityConfig:
    """Network settings of every training job and of the model (hence the transform)."""

    network_isolation: bool  # EnableNetworkIsolation on CreateTrainingJob and CreateModel


@dataclass(frozen=True, kw_only=True)
class VpcConfig:
    """SageMaker's VpcConfig for the training jobs and the model; None in AppConfig = no VPC."""

    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]

    def validate(self, where: str) -> None:
        for name, (pattern, most) in _VPC_IDS.items():
            key, value = f"{where}.{name}", getattr(self, name)
            if not 1 <= len(value) <= most:
                raise ConfigError(f"{key}: expected a list of 1 to {most} ids, got {list(value)!r}")
            bad = [v for v in value if not pattern.match(v)]
            if bad:
                raise ConfigError(f"{key}: {bad!r} do not match {pattern.pattern}")
            if len(set(value)) != len(value):
                raise ConfigError(f"{key}: duplicate ids in {list(value)!r}")


_JWT_ISSUER = re.compile(r"^https://[^\s/]+(/\S*)?$")


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """The optional read API (`topx:api`; null = none): API Gateway HTTP API -> the query Lambda.

    Throttling bounds: API Gateway's default account quota for HTTP APIs is 10,000 requests/s with a
    burst of 5,000 per Region (API Gateway developer guide, "Amazon API Gateway quotas"); a stage's
    route settings can only lower it.
    """

    auth: str = field(default="iam", metadata=one_of("iam", "jwt"))
    jwt_issuer: str = ""  # the OIDC/Cognito issuer URL (`iss`), with auth = jwt
    jwt_audience: tuple[str, ...] = ()  # accepted `aud` (or Cognito `client_id`) values, with auth = jwt
    throttle_rate: float = field(default=50.0, metadata=between(1, 10000))  # steady requests/s
    throttle_burst: int = field(default=100, metadata=between(1, 5000))
    # How long the handler keeps the current pointer (and the responses' max-age): the most a reader
    # lags behind a flip. 0 = read the pointer on every request (two GetItems per request).
    pointer_ttl_seconds: int = field(default=30, metadata=between(0, 300))
    memory_mb: int = field(default=512, metadata=between(128, 10240))
    # Item metadata in responses (decision 0013, pipeline_steps/query/metadata.py): an exact key in the
    # data bucket of a CSV/TSV with a header holding item_id, and the columns added to each item.
    item_metadata_key: str = ""
    item_fields: tuple[str, ...] = ()
    item_metadata_max_mb: int = field(default=limits.ITEM_METADATA_DEFAULT_MAX_MB, metadata=between(1, 1024))
    # How often a warm function re-checks the object (a conditional GET); 0 = on every request.
    item_metadata_check_seconds: int = field(default=300, metadata=between(0, 86400))

    def validate(self, where: str) -> None:
        self._validate_jwt(where)
        if self.item_metadata_key or self.item_fields:
            self._validate_item_metadata(where)

    def _validate_item_metadata(self, where: str) -> None:
        if not self.item_metadata_key:
            raise ConfigError(f"{where}.item_metadata_key: required with item_fields")
        if not self.item_fields:
            raise ConfigError(f"{where}.item_fields: name at least one column with item_metadata_key")
        check_filter_key(self.item_metadata_key, f"{where}.item_metadata_key")
        bad = [f for f in self.item_fields if not f or f in limits.ITEM_METADATA_RESERVED_FIELDS]
        if bad or len(set(self.item_fields)) != len(self.item_fields):
            raise ConfigError(
                f"{where}.item_fields: distinct non-empty column names other than "
                f"{sorted(limits.ITEM_METADATA_RESERVED_FIELDS)}, got {list(self.item_fields)}"
            )
        needed = (
            limits.ITEM_METADATA_RUNTIME_BASE_MB
            + limits.ITEM_METADATA_MEMORY_FACTOR * self.item_metadata_max_mb
        )
        if self.memory_mb < needed:
            raise ConfigError(
                f"{where}.memory_mb: {self.memory_mb} MB cannot parse an item metadata object of "
                f"item_metadata_max_mb = {self.item_metadata_max_mb} (needs {needed} MB: "
                f"{limits.ITEM_METADATA_RUNTIME_BASE_MB} + {limits.ITEM_METADATA_MEMORY_FACTOR} x the object)"
            )

    def _validate_jwt(self, where: str) -> None:
        if self.auth == "jwt":
            if not _JWT_ISSUER.match(self.jwt_issuer):
                raise ConfigError(
                    f"{where}.jwt_issuer: expected an https:// issuer URL, got {self.jwt_issuer!r}"
                )
            if not self.jwt_audience:
                raise ConfigError(f"{where}.jwt_audience: at least one audience is required with auth 'jwt'")
        elif self.jwt_issuer or self.jwt_audience:
            raise ConfigError(f"{where}: jwt_issuer/jwt_audience are only used with auth 'jwt'")


@dataclass(frozen=True, kw_only=True)
class LambdaConfig:
    memory_mb: int = field(metadata=between(128, 10240))
    timeout_seconds: int = field(metadata=between(1, 900))
    ephemeral_mb: int = field(metadata=between(512, 10240))


@dataclass(frozen=True, kw_only=True)
class AlarmsConfig:
    """Quality metrics in CloudWatch and the alarms on them (`topx:alarms`)."""

    enabled: bool  # put the quality metrics (evaluate, report) and alarm on them
    namespace: str  # CloudWatch namespace of the metrics; "" in cdk.json = "<project>/quality"
    # alarm when <report.ratio_metric> / previous run's falls below
    min_ratio_vs_previous: float = field(metadata=between(0.0, 1.0))
    # alarm when drift_at_x (1 - mean overlap@x with the previous run) exceeds
    max_drift: float = field(metadata=between(0.0, 1.0))

    def validate(self, where: str) -> None:
        # CloudWatch namespaces: 1-255 of [A-Za-z0-9._/#:-], not starting with "AWS/" (reserved).
        if self.namespace and (not _NAMESPACE.match(self.namespace) or self.namespace.startswith("AWS/")):
            raise ConfigError(f"{where}.namespace: not a CloudWatch namespace, got {self.namespace!r}")


@dataclass(frozen=True, kw_only=True)
class AppConfig:
    """Everything the stacks need, validated at synth time."""

    project: str
    region: str
    account: str | None
    schedule: str | None  # EventBridge expression; None = no schedule
    notification_email: str | None
    kms: bool
    run_expiry_days: int
    noncurrent_expiry_days: int
    log_retention_days: int
    state_machine_timeout_hours: int
    fm: JobConfig
    knn: JobConfig
    transform: TransformConfig
    spot: SpotConfig
    sagemaker_security: SageMakerSecurityConfig
    vpc: VpcConfig | None
    lambdas: LambdaConfig
    alarms: AlarmsConfig
    steps: StepConfigs
    api: ApiConfig | None = None  # the read API; None = not deployed

    @classmethod
    def from_context(cls, context: Mapping[str, Any], *, account: str | None = None) -> AppConfig:
        """Build from the app's whole context (cdk.json + `-c`); raises ConfigError naming the key."""
        ctx = Context(context)
        if "topx:distributed_map_publish" in context:
            raise ConfigError(
                "'topx:distributed_map_publish' was replaced by 'topx:publish.fan_out_above_users': the "
                "state machine chooses the Distributed Map at run time above that many users (0 = always)"
            )
        region = ctx.text("region")
        if region not in images.SUPPORTED_REGIONS:
            raise ConfigError(
                f"topx:region: {region!r} has no built-in algorithm image in infra/images.py; "
                f"supported: {', '.join(images.SUPPORTED_REGIONS)}"
            )
        project = ctx.text("project")
        if not _PROJECT.match(project):
            raise ConfigError(f"'topx:project' must be a letter then letters/digits/dashes, got {project!r}")
        schedule = ctx.text("schedule").strip()
        schedule_value = None if schedule.lower() in ("off", "none", "") else schedule
        if schedule_value is not None and not _SCHEDULE.match(schedule_value):
            raise ConfigError(
                f"topx:schedule: {schedule!r} is not an EventBridge expression "
                "('rate(7 days)', 'cron(0 3 ? * SUN *)') nor 'off'"
            )
        email = ctx.text("notification_email").strip()
        if email and not _EMAIL.match(email):
            raise ConfigError(f"topx:notification_email: {email!r} is not an e-mail address ('' = none)")
        recipe = _recipe(ctx)
        fm_data, prepare_data = ctx.obj("fm"), ctx.obj("prepare")
        _apply_recipe(recipe, fm_data, prepare_data)
        fm = _job(ctx, "fm", FM_HYPERPARAMETERS, fm_data)
        knn = _job(ctx, "knn", KNN_HYPERPARAMETERS)
        _check_fm(fm)
        metric = _check_knn(knn)
        spot = _spot(ctx, fm, knn)
        transform = _transform(ctx)
        alarms = _alarms(ctx, project)
        steps = validate_step_configs(
            {
                "prepare": prepare_data,
                **{name: ctx.obj(name) for name in ("repackage", "evaluate", "publish", "report")},
            },
            x=ctx.number("x", 1, MAX_X),
            index_metric=metric,
            fm_instance_count=fm.instance_count,
            max_payload_mb=transform.max_payload_mb,
            response_budget_bytes=transform.response_budget_bytes,
            cloudwatch_namespace=alarms.namespace if alarms.enabled else "",
            transform_instance_count=transform.instance_count,
            recipe=recipe,
        )
        _check_consistency(ctx, fm, steps)
        api = _api(ctx)
        _check_filter_keys(steps, api)
        _check_transform_sizing(fm, transform, steps)
        return cls(
            project=project,
            region=region,
            account=account,
            schedule=schedule_value,
            notification_email=email or None,
            kms=ctx.flag("kms"),
            run_expiry_days=ctx.number("run_expiry_days", 1, 3650),
            noncurrent_expiry_days=ctx.number("noncurrent_expiry_days", 1, 3650),
            log_retention_days=ctx.number("log_retention_days", 1, 3653),
            state_machine_timeout_hours=ctx.number("state_machine_timeout_hours", 1, 24 * 365),
            fm=fm,
            knn=knn,
            transform=transform,
            spot=spot,
            sagemaker_security=_sagemaker_security(ctx),
            vpc=_vpc(ctx),
            lambdas=_lambdas(ctx),
            alarms=alarms,
            steps=steps,
            api=api,
        )


def _instance(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _INSTANCE.match(value):
        raise ConfigError(f"{key}: expected a SageMaker instance type like 'ml.m5.xlarge', got {value!r}")
    return value


def _job(
    ctx: Context, section: str, allowed: frozenset[str], data: dict[str, Any] | None = None
) -> JobConfig:
    data = ctx.obj(section) if data is None else dict(data)
    key = f"{PREFIX}{section}"
    hyper = data.get("hyperparameters")
    if isinstance(hyper, dict):
        data["hyperparameters"] = _hyperparameters(f"{key}.hyperparameters", hyper, section, allowed)
    return config_from_dict(JobConfig, data, where=key)


def _hyperparameters(
    key: str, hyper: dict[str, Any], section: str, allowed: frozenset[str]
) -> dict[str, str]:
    """SageMaker takes hyperparameters as strings: numbers are written as their repr."""
    runtime = sorted(set(hyper) & RUNTIME_HYPERPARAMETERS[section])
    if runtime:
        raise ConfigError(f"{key}: {runtime} are set by the state machine from the data; remove them")
    unknown = sorted(set(hyper) - allowed)
    if unknown:
        raise ConfigError(f"{key}: unknown SageMaker hyperparameter(s) {unknown}")
    strings: dict[str, str] = {}
    for name, value in hyper.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{key}.{name}: expected a string or number, got {value!r}")
        strings[name] = value if isinstance(value, str) else repr(value)
    return strings


def _recipe(ctx: Context) -> str:
    name = ctx.text("recipe") or CUSTOM
    if name not in RECIPE_NAMES:
        raise ConfigError(f"topx:recipe: must be one of {list(RECIPE_NAMES)}, got {name!r}")
    return name


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _apply_recipe(name: str, fm: dict[str, Any], prepare: dict[str, Any]) -> None:
    """Write a named recipe's four values (pipeline_steps/common/recipes.py, decision 0017) into the
    `topx:fm` and `topx:prepare` sections, in place. A value already there must be cdk.json's
    default (= the quality recipe's) or the recipe's own: anything else is a hand-set value the
    recipe would silently replace, an error naming both keys."""
    if name == CUSTOM:
        return
    recipe, default = RECIPES[name], RECIPES["quality"]
    hyper = fm.get("hyperparameters")
    if not isinstance(hyper, dict):
        raise ConfigError(f"{PREFIX}fm.hyperparameters: expected an object, got {hyper!r}")
    fm["hyperparameters"] = hyper = dict(hyper)
    targets: list[tuple[dict[str, Any], str, Mapping[str, Any], Mapping[str, Any]]] = [
        (hyper, "fm.hyperparameters", recipe.fm_values(), default.fm_values()),
        (prepare, "prepare", recipe.prepare_values(), default.prepare_values()),
    ]
    for section, where, values, defaults in targets:
        for field_name, value in values.items():
            given = section.get(field_name)
            allowed = {_as_text(value), _as_text(defaults[field_name])}
            if given is not None and _as_text(given) not in allowed:
                raise ConfigError(
                    f"'{PREFIX}{where}.{field_name}' ({given!r}) conflicts with '{PREFIX}recipe' {name!r}, "
                    f"which sets it to {value!r}; remove it or set '{PREFIX}recipe' to {CUSTOM!r}"
                )
            section[field_name] = value


def _check_fm(fm: JobConfig) -> None:
    hyper = fm.hyperparameters
    for name in ("num_factors", "predictor_type"):
        if name not in hyper:
            raise ConfigError(f"'topx:fm.hyperparameters.{name}' is required by SageMaker FM")
    if hyper["predictor_type"] not in ("binary_classifier", "regressor"):
        raise ConfigError(
            "topx:fm.hyperparameters.predictor_type: must be 'binary_classifier' or 'regressor', "
            f"got {hyper['predictor_type']!r}"
        )
    if not hyper["num_factors"].isdigit() or int(hyper["num_factors"]) < 1:
        raise ConfigError(
            f"topx:fm.hyperparameters.num_factors: expected an integer >= 1, got {hyper['num_factors']!r}"
        )


def _check_knn(knn: JobConfig) -> str:
    if knn.instance_count > 1:
        # The k-NN train channel is one FullyReplicated object, and SageMaker's k-NN samples
        # sample_size points split across the hosts ("if sample_size is 100 and there are 2
        # instances, each worker samples 50 points", kNN_how-it-works): with more hosts the index
        # holds a random subset of the items (with duplicates) instead of every item.
        raise ConfigError(
            f"'topx:knn.instance_count' must be 1, got {knn.instance_count}: SageMaker k-NN "
            "splits sample_size across the instances, each sampling at random from the one replicated "
            "train object, so the index would miss items instead of holding every item once"
        )
    hyper = knn.hyperparameters
    if hyper.get("predictor_type") not in ("classifier", "regressor"):
        raise ConfigError("topx:knn.hyperparameters.predictor_type: must be 'classifier' or 'regressor'")
    metric = hyper.get("index_metric", "L2")  # SageMaker's default
    if metric not in INDEX_METRICS:
        raise ConfigError(
            f"topx:knn.hyperparameters.index_metric: must be one of {INDEX_METRICS}, got {metric!r}"
        )
    return metric


def _transform(ctx: Context) -> TransformConfig:
    return ctx.section("transform", TransformConfig)


def _check_transform_sizing(fm: JobConfig, transform: TransformConfig, steps: StepConfigs) -> None:
    """At the k cap and this feature_dim, at least one user must fit one transform request.

    Repackage sizes every query part (= one request) from the run's k (sizing.users_per_part); this
    is the same arithmetic at the largest k the config allows, so a deployed pipeline cannot hit
    a run where not even one query fits.
    """
    max_k = steps.repackage.max_k
    feature_dim = int(fm.hyperparameters["num_factors"]) + 1  # k-NN vectors are [V, w] / [V, 1]
    size = sizing.users_per_part(
        k=max_k,
        feature_dim=feature_dim,
        max_payload_mb=transform.max_payload_mb,
        response_budget_bytes=transform.response_budget_bytes,
        users_per_shard=steps.repackage.users_per_shard,
    )
    if size.by_response < 1:
        raise ConfigError(
            f"'topx:transform.response_budget_bytes' ({transform.response_budget_bytes}) is below "
            f"one verbose k-NN line at 'topx:repackage.max_k' = {max_k} ({size.response_bytes_per_query} "
            "bytes worst case): raise the budget or lower max_k"
        )
    if size.by_payload < 1:
        raise ConfigError(
            f"'topx:transform.max_payload_mb' ({transform.max_payload_mb}) cannot hold one query "
            f"of {size.request_bytes_per_query} bytes ('topx:fm.hyperparameters.num_factors' + 1 = "
            f"{feature_dim} float32 values)"
        )


def _spot(ctx: Context, fm: JobConfig, knn: JobConfig) -> SpotConfig:
    spot = ctx.section("spot", SpotConfig)
    longest = max(fm.max_runtime_seconds, knn.max_runtime_seconds)
    if spot.enabled and spot.max_wait_seconds < longest:
        raise ConfigError(
            f"'topx:spot.max_wait_seconds' ({spot.max_wait_seconds}) must be >= the longest "
            f"max_runtime_seconds of the training jobs ({longest}); SageMaker rejects it otherwise"
        )
    return spot


def _sagemaker_security(ctx: Context) -> SageMakerSecurityConfig:
    return ctx.section("sagemaker_security", SageMakerSecurityConfig)


def _vpc(ctx: Context) -> VpcConfig | None:
    data = ctx.optional_obj("vpc")
    return None if data is None else config_from_dict(VpcConfig, data, where=f"{PREFIX}vpc")


def _alarms(ctx: Context, project: str) -> AlarmsConfig:
    alarms = ctx.section("alarms", AlarmsConfig)
    if alarms.namespace:
        return alarms
    return dataclasses.replace(alarms, namespace=f"{project}/quality")


def _api(ctx: Context) -> ApiConfig | None:
    data = ctx.optional_obj("api")
    return None if data is None else config_from_dict(ApiConfig, data, where=f"{PREFIX}api")


def _lambdas(ctx: Context) -> LambdaConfig:
    return ctx.section("lambda", LambdaConfig)


def _check_filter_keys(steps: StepConfigs, api: ApiConfig | None) -> None:
    """Filter objects and the read API's item metadata are exact keys outside runs/ (common/filters.py
    checks that) and outside the prefixes prepare reads: prepare would parse them as interactions."""
    prefixes = [p for p in (steps.prepare.input_prefix, steps.prepare.test_prefix) if p]
    keys = {f"topx:publish.{name}": key for name, key in steps.publish.filter_keys().items()}
    if api is not None and api.item_metadata_key:
        keys["topx:api.item_metadata_key"] = api.item_metadata_key
    for name, key in keys.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                raise ConfigError(
                    f"{name}: {key!r} lies under the input prefix {prefix!r}: "
                    "prepare would read it as interactions"
                )


def _check_consistency(ctx: Context, fm: JobConfig, steps: StepConfigs) -> None:
    """Values that live in different sections but must agree."""
    label_mode = steps.prepare.label_mode
    wanted = "regressor" if label_mode == "regression" else "binary_classifier"
    predictor = fm.hyperparameters["predictor_type"]
    if predictor != wanted:
        raise ConfigError(
            f"'topx:fm.hyperparameters.predictor_type' is {predictor!r} but "
            f"'topx:prepare.label_mode' {label_mode!r} writes labels for {wanted!r}"
        )
    for name, prefix in (
        ("input_prefix", steps.prepare.input_prefix),
        ("test_prefix", steps.prepare.test_prefix),
        ("user_features", steps.prepare.user_features),
        ("item_features", steps.prepare.item_features),
    ):
        if name == "input_prefix" and not prefix:
            raise ConfigError(
                "'topx:prepare.input_prefix' must not be empty (it scopes prepare's read access)"
            )
        if prefix.startswith(RUNS_PREFIX) or "*" in prefix:
            raise ConfigError(
                f"topx:prepare.{name}: {prefix!r} must not contain '*' nor lie under runs/ "
                "(the pipeline's own outputs, which expire)"
            )
        interactions = [p for p in (steps.prepare.input_prefix, steps.prepare.test_prefix) if p]
        if name.endswith("_features") and prefix and any(prefix.startswith(p) for p in interactions):
            raise ConfigError(
                f"topx:prepare.{name}: {prefix!r} lies under an interaction prefix: prepare would read "
                "the metadata as interactions (docs/decisions/0018)"
            )
    run_days = ctx.number("run_expiry_days", 1, 3650)
    ttl_days = steps.publish.ttl_days
    if run_days <= ttl_days:
        raise ConfigError(
            f"'topx:run_expiry_days' ({run_days}) must exceed 'topx:publish.ttl_days' ({ttl_days}): "
            "a published run's files (metrics, id maps) must outlive its DynamoDB items"
        )
    # The current run's items expire ttl_days after publish; the next scheduled run must replace
    # them before that, or readers find nothing (docs/decisions/0005).
    schedule = ctx.text("schedule").strip()
    interval_days = _longest_interval_days(schedule)
    if interval_days is not None and ttl_days <= interval_days:
        raise ConfigError(
            f"'topx:publish.ttl_days' ({ttl_days}) must exceed the schedule interval "
            f"('topx:schedule' {schedule!r} = {interval_days:g} days): the current run's items "
            "would expire before the next run replaces them"
        )


def _longest_interval_days(schedule: str) -> float | None:
    """Longest gap between two runs of a rate() or a plain monthly cron(); None = not worked out."""
    rate = _RATE.match(schedule)
    if rate is not None:
        return int(rate.group(1)) * _DAYS_PER_UNIT[rate.group(2)]
    fields = schedule[len("cron(") : -1].split() if schedule.startswith("cron(") else []
    # cron(min hour day-of-month month day-of-week year): one day of every month -> up to 31 days apart.
    if len(fields) == 6 and re.fullmatch(r"\d{1,2}|L", fields[2]) and fields[3:] == ["*", "?", "*"]:
        return 31.0
    return None
