"""Publish step config (`STEP_CONFIG` of the publish Lambda)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X


@dataclass(frozen=True, kw_only=True)
class PublishConfig:
    x: int = 10  # recommendations stored per user (<= MAX_X, see common/limits.py)
    index_metric: str = "INNER_PRODUCT"  # the k-NN index_metric: decides the sort direction
    ttl_days: float = 30.0  # run items expire this long after being written (> schedule interval!)
    writer_threads: int = 4
    max_seconds: float = 600.0  # bound on the DynamoDB writes of one invocation
    base_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 5.0
    fallback_size: int = 0  # items in the popularity fallback; 0 = x

    def validate(self, where: str) -> None:
        if not 1 <= self.x <= MAX_X:
            raise ConfigError(f"{where}.x: must be in 1..{MAX_X} (DynamoDB item size), got {self.x}")
        if self.index_metric not in INDEX_METRICS:
            raise ConfigError(
                f"{where}.index_metric: must be one of {INDEX_METRICS}, got {self.index_metric!r}"
            )
        if self.ttl_days <= 1:
            raise ConfigError(f"{where}.ttl_days: must be > 1 day, got {self.ttl_days}")
        if not 1 <= self.writer_threads <= 64:
            raise ConfigError(f"{where}.writer_threads: must be in 1..64, got {self.writer_threads}")
        if self.max_seconds <= 0 or self.base_backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ConfigError(f"{where}: max_seconds must be > 0 and backoff delays >= 0")
        if not 0 <= self.fallback_size <= MAX_X:
            raise ConfigError(f"{where}.fallback_size: must be in 0..{MAX_X}, got {self.fallback_size}")
