"""The report step's config: defaults, and every check names its key."""

from __future__ import annotations

import pytest

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.report.config import ReportConfig


def test_defaults_and_values_from_step_config() -> None:
    config = config_from_dict(ReportConfig, {"history_runs": "5"}, where="STEP_CONFIG", strings=True)
    assert config == ReportConfig(history_runs=5)
    assert (ReportConfig().history_runs, ReportConfig().activity_bins, ReportConfig().ratio_metric) == (
        20,
        10,
        "ndcg",
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"x": 0}, "STEP_CONFIG.x: must be in 1.."),
        ({"index_metric": "DOT"}, "STEP_CONFIG.index_metric: must be one of"),
        ({"history_runs": 501}, "STEP_CONFIG.history_runs: must be in 1..500"),
        ({"activity_bins": 0}, "STEP_CONFIG.activity_bins: must be in 1..100"),
        ({"ratio_metric": "auc"}, "STEP_CONFIG.ratio_metric: must be one of"),
        ({"history": 3}, "unknown key(s) ['history']"),
    ],
)
def test_invalid_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(ReportConfig, data, where="STEP_CONFIG")
    assert message in str(info.value)
