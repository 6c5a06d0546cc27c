"""Training recipes (decision 0017): arithmetic, the size thresholds, and cdk.json's defaults = quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline_steps.common import recipes
from pipeline_steps.common.recipes import RECIPES, Recipe, suggest
from pipeline_steps.prepare.config import PrepareConfig

CONTEXT = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]


def test_rows_per_positive_is_draws_times_positive_plus_negatives() -> None:
    r = Recipe(negative_draws=4, negative_ratio=4, epochs=8, factors_lr="0.001")
    assert r.rows_per_positive == 20 and r.rows_x_epochs_per_positive == 160
    costs = {name: r.rows_x_epochs_per_positive for name, r in RECIPES.items()}
    assert costs == {"quality": 160, "balanced": 60, "economy": 30, "minimal": 6}


@pytest.mark.parametrize(
    ("positives", "name"),
    [
        (0, "quality"),
        (90_570, "quality"),  # ML-100k ua.base
        (recipes.QUALITY_UP_TO_POSITIVES, "quality"),
        (recipes.QUALITY_UP_TO_POSITIVES + 1, "balanced"),
        (recipes.BALANCED_UP_TO_POSITIVES, "balanced"),
        (recipes.BALANCED_UP_TO_POSITIVES + 1, "economy"),
        (recipes.ECONOMY_UP_TO_POSITIVES, "economy"),
        (recipes.ECONOMY_UP_TO_POSITIVES + 1, "minimal"),
        (1_000_000_000, "minimal"),
    ],
)
def test_suggest_by_training_positives(positives: int, name: str) -> None:
    assert suggest(positives) == name


def test_suggest_rejects_a_negative_count() -> None:
    with pytest.raises(ValueError, match="positives: must be >= 0"):
        suggest(-1)


def test_each_threshold_keeps_its_recipe_within_one_default_fm_wall() -> None:
    # 7200 s (topx:fm.max_runtime_seconds) x 112,000 rows/s (reported SageMaker FM throughput)
    budget = CONTEXT["topx:fm"]["max_runtime_seconds"] * 112_000
    assert recipes.QUALITY_UP_TO_POSITIVES * RECIPES["quality"].rows_x_epochs_per_positive <= budget
    assert recipes.BALANCED_UP_TO_POSITIVES * RECIPES["balanced"].rows_x_epochs_per_positive <= budget
    assert recipes.ECONOMY_UP_TO_POSITIVES * RECIPES["economy"].rows_x_epochs_per_positive <= budget


def test_cdk_json_defaults_are_the_quality_recipe_under_the_custom_name() -> None:
    quality = RECIPES["quality"]
    assert {k: CONTEXT["topx:prepare"][k] for k in quality.prepare_values()} == quality.prepare_values()
    hyper = CONTEXT["topx:fm"]["hyperparameters"]
    assert {k: hyper[k] for k in quality.fm_values()} == quality.fm_values()
    assert CONTEXT["topx:recipe"] == PrepareConfig().recipe == recipes.CUSTOM
