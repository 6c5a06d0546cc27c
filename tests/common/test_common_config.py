"""One config path: cdk.json's step sections restate the dataclass defaults, and coercion is shared."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline_steps.common import sizing
from pipeline_steps.common.config import between, config_from_dict, env_config, one_of
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.repackage.config import RepackageConfig
from pipeline_steps.report.config import ReportConfig

CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
STEP_CLASSES = {
    "prepare": PrepareConfig,
    "repackage": RepackageConfig,
    "evaluate": EvaluateConfig,
    "publish": PublishConfig,
    "report": ReportConfig,
}


def defaults(cls: type) -> dict:
    return {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("step", sorted(STEP_CLASSES))
def test_cdk_json_step_sections_equal_the_dataclass_defaults(step: str) -> None:
    # cdk.json shows an operator the values that matter; the dataclass is where they are defined.
    section, default = CONTEXT[f"topx:{step}"], defaults(STEP_CLASSES[step])
    # a JSON list is the context's form of a tuple field
    section = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    assert {k: v for k, v in section.items() if v != default[k]} == {}, (
        f"topx:{step} in cdk.json differs from {STEP_CLASSES[step].__name__}'s defaults"
    )


def test_shared_context_values_equal_the_dataclass_defaults() -> None:
    # infra/step_configs.py injects these into the steps; their defaults must say the same.
    x = CONTEXT["topx:x"]
    assert RepackageConfig().x == EvaluateConfig().x == PublishConfig().x == x
    metric = CONTEXT["topx:knn"]["hyperparameters"]["index_metric"]
    assert EvaluateConfig().index_metric == PublishConfig().index_metric == metric
    transform = CONTEXT["topx:transform"]
    assert RepackageConfig().max_payload_mb == transform["max_payload_mb"]
    assert RepackageConfig().response_budget_bytes == transform["response_budget_bytes"]
    assert RepackageConfig().transform_instance_count == transform["instance_count"]
    assert transform["response_budget_bytes"] == sizing.DEFAULT_RESPONSE_BUDGET
    assert PrepareConfig().min_shards == CONTEXT["topx:fm"]["instance_count"]


def test_every_step_config_is_built_by_the_one_path() -> None:
    with pytest.raises(ConfigError, match=r"STEP_CONFIG: unknown key\(s\) \['nope'\]"):
        env_config(PublishConfig, {"STEP_CONFIG": '{"nope": 1}'})
    with pytest.raises(ConfigError, match="prepare: unknown key"):
        PrepareConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError, match=r"w\.x: expected an integer, got '7'"):
        config_from_dict(RepackageConfig, {"x": "7"}, where="w")
    assert config_from_dict(RepackageConfig, {"x": "7"}, where="w", strings=True).x == 7
    assert PrepareConfig.from_dict({"seed": "7", "shuffle": "no"}) == PrepareConfig(seed=7, shuffle=False)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Declared:
    size: int = dataclasses.field(metadata=between(1, 10))
    share: float = dataclasses.field(default=0.5, metadata=between(0.0, 1.0))
    mode: str = dataclasses.field(default="a", metadata=one_of("a", "b"))
    floor: float | None = dataclasses.field(default=None, metadata=between(0.0))
    ids: tuple[str, ...] = ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, r"w: missing key\(s\) \['size'\]"),
        ({"size": 11}, r"w\.size: must be in 1\.\.10, got 11"),
        ({"size": 1, "share": 1.5}, r"w\.share: must be in \[0\.0, 1\.0\], got 1\.5"),
        ({"size": 1, "share": float("nan")}, r"w\.share: must be a finite number, got nan"),
        ({"size": 1, "mode": "c"}, r"w\.mode: 'c' is not one of 'a', 'b'"),
        ({"size": 1, "floor": -1}, r"w\.floor: must be >= 0\.0, got -1\.0"),
        ({"size": 1, "ids": ["x", 2]}, r"w\.ids: expected a list of strings, got \['x', 2\]"),
    ],
)
def test_declared_bounds_choices_and_required_keys_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(_Declared, data, where="w")


def test_declared_fields_build_when_valid() -> None:
    built = config_from_dict(_Declared, {"size": 10, "floor": None, "ids": ["a", "b"]}, where="w")
    assert built == _Declared(size=10, ids=("a", "b"))


def test_post_init_errors_are_prefixed_with_where_the_config_came_from() -> None:
    with pytest.raises(ConfigError, match=r"^STEP_CONFIG\.quotechar: must be one character"):
        PrepareConfig.from_dict({"quotechar": "ab"}, where="STEP_CONFIG")
    with pytest.raises(ConfigError, match=r"^negative_ratio: must be >= 1, got 0"):
        PrepareConfig(negative_ratio=0)  # direct construction checks the declared bounds too
