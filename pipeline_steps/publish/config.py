"""Publish step config (`STEP_CONFIG` of the publish Lambda)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_steps.common.config import between, one_of
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X


@dataclass(frozen=True, kw_only=True)
class PublishConfig:
    # recommendations stored per user (<= MAX_X: the DynamoDB item size, see common/limits.py)
    x: int = field(default=10, metadata=between(1, MAX_X))
    # the k-NN index_metric: decides the sort direction
    index_metric: str = field(default="INNER_PRODUCT", metadata=one_of(*INDEX_METRICS))
    ttl_days: float = 30.0  # run items expire this long after being written (> 1, > schedule interval!)
    writer_threads: int = field(default=4, metadata=between(1, 64))
    max_seconds: float = 600.0  # bound on the DynamoDB writes of one invocation (> 0)
    base_backoff_seconds: float = field(default=0.05, metadata=between(0.0))
    max_backoff_seconds: float = field(default=5.0, metadata=between(0.0))
    fallback_size: int = field(
        default=0, metadata=between(0, MAX_X)
    )  # items in the popularity fallback; 0 = x

    def validate(self, where: str) -> None:
        if self.ttl_days <= 1:
            raise ConfigError(f"{where}.ttl_days: must be > 1 day, got {self.ttl_days}")
        if not self.max_seconds > 0:
            raise ConfigError(f"{where}.max_seconds: must be > 0, got {self.max_seconds}")
