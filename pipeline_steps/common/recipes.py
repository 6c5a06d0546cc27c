"""Named training recipes: the negative sampling (prepare) and the FM epochs and factor rate that go
with it (docs/decisions/0017).

A recipe owns four values that live in two steps: `topx:prepare.negative_draws` (D),
`topx:prepare.negative_ratio` (R), `topx:fm.hyperparameters.epochs` (E) and
`topx:fm.hyperparameters.factors_lr`. The FM job's hyperparameters are fixed when the template is
synthesized (only `feature_dim` comes from prepare at run time), so a recipe is chosen at deploy
time (`topx:recipe`), from the training positives one expects, with `suggest()`'s thresholds.

Cost: the training file holds D x (1 + R) rows per positive and SageMaker FM reads it once per
epoch, so its time is linear in rows x epochs = positives x D x (1 + R) x E.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    negative_draws: int
    negative_ratio: int
    epochs: int
    factors_lr: str  # a SageMaker hyperparameter string, as in cdk.json

    @property
    def rows_per_positive(self) -> int:
        """FM rows per training positive in one epoch: D draws x (the positive + R negatives)."""
        return self.negative_draws * (1 + self.negative_ratio)

    @property
    def rows_x_epochs_per_positive(self) -> int:
        return self.rows_per_positive * self.epochs

    def prepare_values(self) -> dict[str, int]:
        return {"negative_draws": self.negative_draws, "negative_ratio": self.negative_ratio}

    def fm_values(self) -> dict[str, str]:
        return {"epochs": str(self.epochs), "factors_lr": self.factors_lr}


# Measured on ML-100k ua (decision 0017, prepare seed 42): quality P@10 0.251 at 160 rows x epochs
# per positive, balanced 0.244 at 60 (2.7x cheaper), economy 0.228 at 30 (5.3x), minimal 0.195 at 6
# (27x); most-popular 0.1215.
RECIPES: dict[str, Recipe] = {
    "quality": Recipe(negative_draws=4, negative_ratio=4, epochs=8, factors_lr="0.001"),
    "balanced": Recipe(negative_draws=2, negative_ratio=4, epochs=6, factors_lr="0.002"),
    "economy": Recipe(negative_draws=1, negative_ratio=4, epochs=6, factors_lr="0.002"),
    "minimal": Recipe(negative_draws=1, negative_ratio=1, epochs=3, factors_lr="0.004"),
}
# "custom": the four values are taken from topx:prepare / topx:fm as given (cdk.json's are quality's).
CUSTOM = "custom"
RECIPE_NAMES = (CUSTOM, *RECIPES)

# suggest(): the largest recipe whose rows x epochs fit one FM instance's default wall
# (topx:fm.max_runtime_seconds 7200) at the SageMaker FM throughput reported for the AWS blog's
# setup (112,000 rows/s on ml.m5.large, reported in bench/fm_train.py, not measured here):
# 7200 s x 112,000 rows/s = 806.4M rows x epochs. Quality fits up to ~5.0M positives (x 160),
# balanced up to ~13.4M (x 60), economy up to ~26.9M (x 30); beyond that minimal (x 6, one
# instance up to ~134M positives; more with topx:fm.instance_count or max_runtime_seconds).
QUALITY_UP_TO_POSITIVES = 5_000_000
BALANCED_UP_TO_POSITIVES = 13_000_000
ECONOMY_UP_TO_POSITIVES = 25_000_000


def suggest(positives: int) -> str:
    """The recipe decision 0017 recommends for this many training positives (observed pairs)."""
    if positives < 0:
        raise ValueError(f"positives: must be >= 0, got {positives}")
    if positives <= QUALITY_UP_TO_POSITIVES:
        return "quality"
    if positives <= BALANCED_UP_TO_POSITIVES:
        return "balanced"
    if positives <= ECONOMY_UP_TO_POSITIVES:
        return "economy"
    return "minimal"
