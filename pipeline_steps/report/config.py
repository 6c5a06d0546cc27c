"""Report step config (`STEP_CONFIG` of the report Lambda; `topx:report` in cdk.json)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X

RATIO_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    x: int = 10  # same x as publish: the lists users get
    index_metric: str = "INNER_PRODUCT"
    history_runs: int = 20  # runs shown in the quality history (latest last)
    activity_bins: int = 10  # user-activity groups (deciles)
    ratio_metric: str = "ndcg"  # put to CloudWatch as <ratio_metric>_ratio_vs_previous
    cloudwatch_namespace: str = ""  # set by infra from topx:alarms ("" = no metrics)

    def validate(self, where: str) -> None:
        if not 1 <= self.x <= MAX_X:
            raise ConfigError(f"{where}.x: must be in 1..{MAX_X}, got {self.x}")
        if self.index_metric not in INDEX_METRICS:
            raise ConfigError(
                f"{where}.index_metric: must be one of {INDEX_METRICS}, got {self.index_metric!r}"
            )
        if not 1 <= self.history_runs <= 500:
            raise ConfigError(f"{where}.history_runs: must be in 1..500, got {self.history_runs}")
        if not 1 <= self.activity_bins <= 100:
            raise ConfigError(f"{where}.activity_bins: must be in 1..100, got {self.activity_bins}")
        if self.ratio_metric not in RATIO_METRICS:
            raise ConfigError(
                f"{where}.ratio_metric: must be one of {RATIO_METRICS}, got {self.ratio_metric!r}"
            )
