"""Repackage step config (`STEP_CONFIG` of the repackage Lambda)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline_steps.common import sizing
from pipeline_steps.common.batches import DEFAULT_USERS_PER_CHILD, MAX_USERS_PER_CHILD
from pipeline_steps.common.config import between
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.filters import FilterConfig
from pipeline_steps.common.limits import MAX_X


@dataclass(frozen=True, kw_only=True)
class RepackageConfig(FilterConfig):
    """The filter fields, `read_extra`, `related_x` and `users_per_child` are injected from `topx:publish`.

    (infra/step_configs.py): the k rule must count what publish stores and drops.
    """

    x: int = field(default=10, metadata=between(1, MAX_X))  # the top-x published (as publish/evaluate)
    read_extra: int = field(default=10, metadata=between(0, MAX_X))  # stored beyond x (read-time filters)
    related_x: int = field(default=10, metadata=between(0, MAX_X))  # related items per item; 0 = off
    # publish's Map children (injected from `topx:publish`): the ranges repackage writes for them
    users_per_child: int = field(default=DEFAULT_USERS_PER_CHILD, metadata=between(1, MAX_USERS_PER_CHILD))
    max_k: int = 1000  # cap on neighbours per query (transform output size grows with k); >= x
    # k covers this quantile of the users' need x + read_extra + dropped(u) (1.0 = the heaviest user);
    # users beyond it are topped up from the filtered popularity order by publish (decision 0015)
    k_quantile: float = field(default=0.99, metadata=between(0.5, 1.0))
    # A cold id (metadata only, decision 0018 "Cold ids") has an id column the FM never trained. With
    # this on, its query / vector is the FM's prediction with that id's factors and linear weight set
    # to the mean of the warm ids' (the population's prior: the "average user" plus the features),
    # instead of leaving the id out. Users on (cold users' P@10 1.033x most-popular's over five
    # ML-100k hold-outs, from 1.019x; decision 0018 "Cold users: the mean id"); items off (no gain).
    cold_users_mean_id: bool = True
    cold_items_mean_id: bool = False
    # upper cap on users per query part (= per transform request)
    users_per_shard: int = field(default=100_000, metadata=between(1))
    # Injected from `topx:transform` (infra/step_configs.py): the part size follows from them (sizing.py).
    max_payload_mb: int = field(default=6, metadata=between(1, sizing.MAX_PAYLOAD_MB))
    # `topx:transform.instance_count`: SageMaker maps whole S3 objects to transform instances, so
    # repackage cuts at least this many user parts (when there are as many users)
    transform_instance_count: int = field(default=1, metadata=between(1, 100))
    # at most the container's response limit
    response_budget_bytes: int = field(
        default=sizing.DEFAULT_RESPONSE_BUDGET, metadata=between(1, sizing.MAX_RESPONSE_BUDGET)
    )

    def validate(self, where: str) -> None:
        self.validate_filters(where)
        if self.max_k < self.x:
            raise ConfigError(f"{where}.max_k: must be >= x ({self.x}), got {self.max_k}")
