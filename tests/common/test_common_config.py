"""One config path: cdk.json's step sections restate the dataclass defaults, and coercion is shared."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from pipeline_steps.common.config import config_from_dict, env_config
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.evaluate.config import EvaluateConfig
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.publish.config import PublishConfig
from pipeline_steps.repackage import sizing
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
