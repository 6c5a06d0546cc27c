"""Repackage step config (`STEP_CONFIG` of the repackage Lambda)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline_steps.common import sizing
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.limits import MAX_X


@dataclass(frozen=True, kw_only=True)
class RepackageConfig:
    x: int = 10  # the top-x published per user (same value as publish/evaluate)
    max_k: int = 1000  # cap on neighbours per query (transform output size grows with k)
    users_per_shard: int = 100_000  # upper cap on users per query part (= per transform request)
    # Injected from `topx:transform` (infra/step_configs.py): the part size follows from them (sizing.py).
    max_payload_mb: int = 6
    response_budget_bytes: int = sizing.DEFAULT_RESPONSE_BUDGET

    def validate(self, where: str) -> None:
        if not 1 <= self.x <= MAX_X:
            raise ConfigError(f"{where}.x: must be in 1..{MAX_X}, got {self.x}")
        if self.max_k < self.x:
            raise ConfigError(f"{where}.max_k: must be >= x ({self.x}), got {self.max_k}")
        if self.users_per_shard < 1:
            raise ConfigError(f"{where}.users_per_shard: must be >= 1, got {self.users_per_shard}")
        if not 1 <= self.max_payload_mb <= sizing.MAX_PAYLOAD_MB:
            raise ConfigError(
                f"{where}.max_payload_mb: must be in 1..{sizing.MAX_PAYLOAD_MB}, got {self.max_payload_mb}"
            )
        if not 1 <= self.response_budget_bytes <= sizing.MAX_RESPONSE_BUDGET:
            raise ConfigError(
                f"{where}.response_budget_bytes: must be in 1..{sizing.MAX_RESPONSE_BUDGET} (the "
                f"container's response limit), got {self.response_budget_bytes}"
            )
