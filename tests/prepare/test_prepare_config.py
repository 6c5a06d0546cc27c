"""PrepareConfig.from_dict: defaults, coercion, and clear messages for bad values."""

from __future__ import annotations

import pytest

from pipeline_steps.prepare.config import ConfigError, PrepareConfig


def test_defaults_and_effective_split():
    c = PrepareConfig.from_dict({})
    assert (c.label_mode, c.negative_ratio, c.negative_draws, c.effective_split) == (
        "implicit",
        4,
        4,
        "last_n",
    )
    assert PrepareConfig.from_dict({"test_prefix": "input-test/"}).effective_split == "explicit"
    assert PrepareConfig.from_dict(None) == c
    assert PrepareConfig.from_dict(c.to_dict()) == c


def test_coercion_of_env_style_strings():
    c = PrepareConfig.from_dict(
        {"delimiter": "tab", "header": "auto", "shuffle": "false", "seed": "7", "rating_threshold": "3.5"}
    )
    assert (c.delimiter, c.header, c.shuffle, c.seed, c.rating_threshold) == ("\t", None, False, 7, 3.5)
    c = PrepareConfig.from_dict({"user_col": 2, "item_col": "asin", "rating_col": "", "header": True})
    assert (c.user_col, c.item_col, c.rating_col, c.header) == (2, "asin", "", True)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"labelmode": "binary"}, "prepare: unknown key(s) ['labelmode']"),
        (
            {"label_mode": "stars"},
            "prepare.label_mode: 'stars' is not one of 'binary', 'regression', 'implicit'",
        ),
        (
            {"negative_sampling": "zipf"},
            "prepare.negative_sampling: 'zipf' is not one of 'uniform', 'popularity'",
        ),
        ({"split": "random"}, "prepare.split: 'random' is not one of 'explicit', 'last_n', 'none'"),
        ({"split": "explicit"}, "split: 'explicit' needs test_prefix"),
        ({"negative_ratio": 0}, "negative_ratio: must be >= 1, got 0"),
        ({"negative_draws": "many"}, "negative_draws: expected an integer, got 'many'"),
        ({"seed": True}, "seed: expected an integer, got True"),
        ({"max_bad_fraction": 2}, "prepare.max_bad_fraction: must be in [0.0, 1.0], got 2.0"),
        ({"delimiter": "#"}, "delimiter: '#' is not one of"),
        ({"user_col": -1}, "user_col: a column position must be >= 0, got -1"),
        ({"item_col": ""}, "item_col: cannot be empty"),
        ({"item_col": 1.5}, "prepare.item_col: expected a string or an integer or null, got 1.5"),
        ({"header": "maybe"}, "prepare.header: expected true or false or null, got 'maybe'"),
        ({"encoding": "klingon"}, "encoding: unknown codec 'klingon'"),
        ({"quotechar": "''"}, "quotechar: must be one character or empty"),
        ({"shard_rows": 0}, "shard_rows: must be >= 1, got 0"),
        ({"min_shards": 0}, "min_shards: must be >= 1, got 0"),
    ],
)
def test_bad_values_name_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        PrepareConfig.from_dict(raw)
    assert message in str(err.value)


def test_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        PrepareConfig("input/")  # type: ignore[misc]
    c = PrepareConfig()
    with pytest.raises(AttributeError):
        c.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-Infinity", float("nan")])
def test_a_non_finite_rating_threshold_is_refused(value):
    with pytest.raises(ConfigError, match="rating_threshold: must be a finite number"):
        PrepareConfig.from_dict({"rating_threshold": value})


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32", "cp500"])
def test_an_encoding_that_is_not_ascii_compatible_is_refused(codec):
    # The byte-level parser would report a valid UTF-16 file as "not valid utf-16" at line 2.
    with pytest.raises(ConfigError, match="is not ASCII-compatible"):
        PrepareConfig.from_dict({"encoding": codec})
    for ok in ("latin-1", "utf-8-sig", "cp1252"):
        assert PrepareConfig.from_dict({"encoding": ok}).encoding == ok


def test_a_named_recipe_must_match_the_negative_sampling():
    # decision 0017: the recipe is recorded in the manifest, so it must describe the file written
    economy = PrepareConfig.from_dict({"recipe": "economy", "negative_draws": 1, "negative_ratio": 4})
    assert economy.to_dict()["recipe"] == "economy"
    with pytest.raises(ConfigError, match=r"recipe: 'economy' sets .* negative_draws 4 \(recipe: 1\)"):
        PrepareConfig.from_dict({"recipe": "economy"})  # D=4 is the quality default
    with pytest.raises(ConfigError, match=r"recipe: 'auto' is not one of 'custom', 'quality', 'balanced'"):
        PrepareConfig.from_dict({"recipe": "auto"})
    # custom takes any values
    assert PrepareConfig.from_dict({"negative_draws": 2, "negative_ratio": 7}).recipe == "custom"


def test_engine_and_spark_cluster_settings_are_checked():
    config = PrepareConfig.from_dict({"engine": "spark", "spark_instance_count": "3"})
    assert (config.engine, config.spark_instance_count, config.spark_instance_type) == (
        "spark",
        3,
        "ml.m5.xlarge",
    )
    assert PrepareConfig().engine == "lambda"
    for bad, field in (
        ({"engine": "emr"}, "engine"),
        ({"spark_instance_count": 0}, "spark_instance_count"),
        ({"spark_instance_count": 21}, "spark_instance_count"),
        ({"spark_instance_type": "m5.xlarge"}, "spark_instance_type"),
    ):
        with pytest.raises(ConfigError, match=field):
            PrepareConfig.from_dict(bad)
