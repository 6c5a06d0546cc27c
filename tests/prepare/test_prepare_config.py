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


# The keys a run's manifest recorded before side features, the Spark engine and the recipes
# (PrepareConfig at 485129b): a retry of such a run compares its recorded config with to_dict().
RECORDED_BEFORE_0016 = [
    "input_prefix",
    "test_prefix",
    "user_col",
    "item_col",
    "rating_col",
    "timestamp_col",
    "delimiter",
    "header",
    "quotechar",
    "encoding",
    "rating_threshold",
    "label_mode",
    "negative_ratio",
    "negative_sampling",
    "negative_draws",
    "seed",
    "min_user_interactions",
    "min_item_interactions",
    "split",
    "holdout_n",
    "max_bad_fraction",
    "shard_rows",
    "min_shards",
    "shuffle",
]


def test_a_config_without_the_newer_options_records_the_document_of_before():
    assert sorted(PrepareConfig().to_dict()) == sorted(RECORDED_BEFORE_0016)
    spark = PrepareConfig.from_dict({"engine": "spark", "spark_instance_count": 2})
    assert {k: spark.to_dict()[k] for k in ("engine", "spark_instance_type", "spark_instance_count")} == {
        "engine": "spark",
        "spark_instance_type": "ml.m5.xlarge",
        "spark_instance_count": 2,
    }
    assert PrepareConfig.from_dict(spark.to_dict()) == spark


def test_a_run_recorded_before_the_newer_options_is_reused_on_retry(tmp_path):
    import json

    from pipeline_steps.prepare.core import prepare
    from pipeline_steps.prepare.storage import LocalStorage

    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.csv").write_text("user,item\n" + "".join(f"u{k % 9},i{k % 13}\n" for k in range(200)))
    config = PrepareConfig.from_dict({"input_prefix": "", "holdout_n": 2})
    kwargs = {"source": LocalStorage(tmp_path / "in"), "sink": LocalStorage(tmp_path / "out")}
    first = prepare(config, run_id="r", out_prefix="runs/r/prepared/", **kwargs)
    key = tmp_path / "out/runs/r/prepared/manifest.json"
    recorded = json.loads(key.read_text())
    assert sorted(recorded["config"]) == sorted(RECORDED_BEFORE_0016)
    again = prepare(config, run_id="r", out_prefix="runs/r/prepared/", **kwargs)
    assert again == first
