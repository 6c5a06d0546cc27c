"""Validate each step's `STEP_CONFIG` with the step's own config dataclass (one source of truth).

The shared values (`topx:x`, the k-NN `index_metric`, the FM instance count as prepare's
`min_shards`, the transform's `max_payload_mb`, `response_budget_bytes` and `instance_count`, the
quality metrics' CloudWatch namespace from `topx:alarms`, the training recipe `topx:recipe` for
prepare; publish's `read_extra`, `related_x`, `users_per_child` and filters for repackage) are
injected into the steps that use them, so they cannot disagree; a step section that sets one of them
to another value is an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from infra.context import ConfigError
from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.filters import FilterConfig
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.report.config import ReportConfig


@dataclass(frozen=True, kw_only=True)
class StepConfigs:
    """The validated config of every step, as the step's own dataclass (defaults filled in)."""

    prepare: PrepareConfig
    repackage: RepackageConfig
    evaluate: EvaluateConfig
    publish: PublishConfig
    report: ReportConfig

    def for_step(self, step: str) -> dict[str, Any]:
        """The fully explicit `STEP_CONFIG` JSON object of one step (every field, by name)."""
        return dataclasses.asdict(getattr(self, step))


def _strict(cls: type) -> Callable[[dict[str, Any], str], Any]:
    return lambda data, where: config_from_dict(cls, data, where=where)


# publish is built before repackage: repackage's k rule takes these of publish's values.
_BUILDERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "prepare": lambda data, where: PrepareConfig.from_dict(data, where=where),
    "publish": _strict(PublishConfig),
    "repackage": _strict(RepackageConfig),
    "evaluate": _strict(EvaluateConfig),
    "report": _strict(ReportConfig),
}
# Set in `topx:publish`, injected into repackage: k must count the stored extra, the related lists'
# need and what the filters drop (repackage/core.py "k rule").
FROM_PUBLISH = (
    "read_extra",
    "related_x",
    "users_per_child",
    *(f.name for f in dataclasses.fields(FilterConfig)),
)
_SHARED = {
    "x": ("repackage", "evaluate", "publish", "report"),
    "index_metric": ("evaluate", "publish", "report"),
    "cloudwatch_namespace": ("evaluate", "report"),
    # ShardedByS3Key gives each FM host its share of the train objects: at least one each.
    "min_shards": ("prepare",),
    "max_payload_mb": ("repackage",),
    "response_budget_bytes": ("repackage",),
    "transform_instance_count": ("repackage",),
    # the named training recipe (decision 0017), recorded in prepare's manifest
    "recipe": ("prepare",),
}
_SOURCES = {
    "x": "topx:x",
    "index_metric": "topx:knn.hyperparameters.index_metric",
    "min_shards": "topx:fm.instance_count",
    "max_payload_mb": "topx:transform.max_payload_mb",
    "response_budget_bytes": "topx:transform.response_budget_bytes",
    "transform_instance_count": "topx:transform.instance_count",
    "cloudwatch_namespace": "topx:alarms.namespace",
    "recipe": "topx:recipe",
}


def validate_step_configs(
    sections: Mapping[str, dict[str, Any]],
    *,
    x: int,
    index_metric: str,
    fm_instance_count: int,
    max_payload_mb: int,
    response_budget_bytes: int,
    cloudwatch_namespace: str = "",
    transform_instance_count: int = 1,
    recipe: str = "custom",
) -> StepConfigs:
    """Return the explicit config of every step; raise ConfigError naming the context key."""
    shared = {
        "x": x,
        "index_metric": index_metric,
        "min_shards": fm_instance_count,
        "max_payload_mb": max_payload_mb,
        "response_budget_bytes": response_budget_bytes,
        "cloudwatch_namespace": cloudwatch_namespace,
        "transform_instance_count": transform_instance_count,
        "recipe": recipe,
    }
    built: dict[str, Any] = {}
    for step, builder in _BUILDERS.items():
        data = dict(sections[step])
        for name, steps in _SHARED.items():
            if step not in steps:
                continue
            if name in data and data[name] != shared[name]:
                source = _SOURCES[name]
                raise ConfigError(
                    f"'topx:{step}.{name}' ({data[name]!r}) differs from '{source}' "
                    f"({shared[name]!r}); set it once in '{source}'"
                )
            data[name] = shared[name]
        if step == "repackage":
            _inject_from_publish(data, built["publish"])
        built[step] = builder(data, f"topx:{step}")  # ConfigError names topx:<step>.<field>
    return StepConfigs(**built)


def _inject_from_publish(data: dict[str, Any], publish: PublishConfig) -> None:
    for name in FROM_PUBLISH:
        value = getattr(publish, name)
        given = data.get(name, value)
        if (tuple(given) if isinstance(given, list) else given) != value:
            raise ConfigError(
                f"'topx:repackage.{name}' ({given!r}) differs from 'topx:publish.{name}' "
                f"({value!r}); set it once in 'topx:publish'"
            )
        data[name] = value
