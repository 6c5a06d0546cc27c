"""Publish step config (`STEP_CONFIG` of the publish Lambda)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_steps.common.batches import DEFAULT_USERS_PER_CHILD, MAX_USERS_PER_CHILD
from pipeline_steps.common.config import between, one_of
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.filters import FilterConfig
from pipeline_steps.common.limits import INDEX_METRICS, MAX_X


@dataclass(frozen=True, kw_only=True)
class PublishConfig(FilterConfig):
    """The filter fields (common/filters.py), `read_extra` and `related_x` are also repackage's."""

    # recommendations readers get per user (<= MAX_X: the DynamoDB item size, see common/limits.py)
    x: int = field(default=10, metadata=between(1, MAX_X))
    # stored beyond x, so a reader can drop items at read time and still return x
    read_extra: int = field(default=10, metadata=between(0, MAX_X))
    # related items stored per item (i#<item_id>); 0 = no related items
    related_x: int = field(default=10, metadata=between(0, MAX_X))
    # the k-NN index_metric: decides the sort direction
    index_metric: str = field(default="INNER_PRODUCT", metadata=one_of(*INDEX_METRICS))
    ttl_days: float = 30.0  # run items expire this long after being written (> 1, > schedule interval!)
    writer_threads: int = field(default=4, metadata=between(1, 64))
    max_seconds: float = 600.0  # bound on the DynamoDB writes of one invocation (> 0)
    base_backoff_seconds: float = field(default=0.05, metadata=between(0.0))
    max_backoff_seconds: float = field(default=5.0, metadata=between(0.0))
    # The state machine publishes with one Lambda up to this many users and with a Distributed Map
    # over the transform parts above it (infra/workflow.py, decision 0015); 0 = always fan out
    fan_out_above_users: int = field(default=200_000, metadata=between(0))
    # Each Map child publishes a contiguous range of parts holding at most this many lists (users,
    # then items' related lists); repackage writes the ranges (common/batches.py, decision 0015)
    users_per_child: int = field(default=DEFAULT_USERS_PER_CHILD, metadata=between(1, MAX_USERS_PER_CHILD))
    fallback_size: int = field(
        default=0, metadata=between(0, MAX_X)
    )  # items in the popularity fallback; 0 = x + read_extra

    @property
    def stored(self) -> int:
        """Items stored per user: x + read_extra."""
        return self.x + self.read_extra

    def validate(self, where: str) -> None:
        self.validate_filters(where)
        if self.stored > MAX_X:
            raise ConfigError(f"{where}.read_extra: x + read_extra must be <= {MAX_X}, got {self.stored}")
        if self.ttl_days <= 1:
            raise ConfigError(f"{where}.ttl_days: must be > 1 day, got {self.ttl_days}")
        if not self.max_seconds > 0:
            raise ConfigError(f"{where}.max_seconds: must be > 0, got {self.max_seconds}")
