"""Evaluate step config (`STEP_CONFIG` of the evaluate Lambda): x, sort metric, gate floors, CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X
from pipeline_steps.evaluate.metrics import METRIC_NAMES


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    x: int = 10  # same x as publish: the list users actually get
    index_metric: str = "INNER_PRODUCT"
    # Absolute floors on the model's metrics (None = no check).
    min_precision: float | None = None
    min_recall: float | None = None
    min_ndcg: float | None = None
    min_map: float | None = None
    min_hit_rate: float | None = None
    min_coverage: float | None = None
    # Relative floors, on `gate_metric`: model >= ratio * baseline / * currently published run.
    gate_metric: str = "ndcg"
    min_lift_vs_baseline: float | None = None
    min_ratio_vs_published: float | None = None
    cloudwatch_namespace: str = ""  # non-empty = put the metrics to CloudWatch under this namespace
    cloudwatch_dimensions: dict[str, str] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if not 1 <= self.x <= MAX_X:
            raise ConfigError(f"{where}.x: must be in 1..{MAX_X}, got {self.x}")
        if self.index_metric not in INDEX_METRICS:
            raise ConfigError(
                f"{where}.index_metric: must be one of {INDEX_METRICS}, got {self.index_metric!r}"
            )
        if self.gate_metric not in METRIC_NAMES:
            raise ConfigError(f"{where}.gate_metric: must be one of {METRIC_NAMES}, got {self.gate_metric!r}")
        for name, value in self.floors().items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{where}.min_{name}: must be in [0, 1], got {value}")
        for name in ("min_lift_vs_baseline", "min_ratio_vs_published"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{where}.{name}: must be >= 0, got {value}")
        if len(self.cloudwatch_dimensions) > 29:  # CloudWatch allows 30, one is "Variant"
            raise ConfigError(f"{where}.cloudwatch_dimensions: at most 29 dimensions")

    def floors(self) -> dict[str, float]:
        return {name: value for name in METRIC_NAMES if (value := getattr(self, f"min_{name}")) is not None}
