"""Evaluate step config (`STEP_CONFIG` of the evaluate Lambda): x, sort metric, gate floors, CloudWatch."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_steps.common.config import between, one_of
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X
from pipeline_steps.evaluate.metrics import METRIC_NAMES


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    x: int = field(default=10, metadata=between(1, MAX_X))  # same x as publish: the list users get
    index_metric: str = field(default="INNER_PRODUCT", metadata=one_of(*INDEX_METRICS))
    # Absolute floors on the model's metrics (None = no check).
    min_precision: float | None = field(default=None, metadata=between(0.0, 1.0))
    min_recall: float | None = field(default=None, metadata=between(0.0, 1.0))
    min_ndcg: float | None = field(default=None, metadata=between(0.0, 1.0))
    min_map: float | None = field(default=None, metadata=between(0.0, 1.0))
    min_hit_rate: float | None = field(default=None, metadata=between(0.0, 1.0))
    min_coverage: float | None = field(default=None, metadata=between(0.0, 1.0))
    # Relative floors, on `gate_metric`: model >= ratio * baseline / * currently published run.
    gate_metric: str = field(default="ndcg", metadata=one_of(*METRIC_NAMES))
    min_lift_vs_baseline: float | None = field(default=None, metadata=between(0.0))
    min_ratio_vs_published: float | None = field(default=None, metadata=between(0.0))
    # The cold protocols (decision 0018; run when prepare's cold_protocols is on): `gate_metric` of
    # the held-out users >= ratio * most-popular's, of the held-out items >= ratio * category
    # popularity's. Skipped (passed) when the run has no such protocol.
    min_cold_users_lift: float | None = field(default=None, metadata=between(0.0))
    min_cold_items_lift: float | None = field(default=None, metadata=between(0.0))
    # Users scored: a fixed-seed uniform sample of the users with held-out items (0 = all of them);
    # metrics.json gives each metric's 95% interval, the gate compares the point estimates.
    max_users: int = field(default=100_000, metadata=between(0))
    sample_seed: int = field(default=0, metadata=between(0))
    cloudwatch_namespace: str = ""  # non-empty = put the metrics to CloudWatch under this namespace
    cloudwatch_dimensions: dict[str, str] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        if len(self.cloudwatch_dimensions) > 29:  # CloudWatch allows 30, one is "Variant"
            raise ConfigError(f"{where}.cloudwatch_dimensions: at most 29 dimensions")

    def floors(self) -> dict[str, float]:
        return {name: value for name in METRIC_NAMES if (value := getattr(self, f"min_{name}")) is not None}
