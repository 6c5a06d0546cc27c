"""S3 layout of one run (docs/contracts.md): every key and prefix under `runs/<run_id>/`.

`RunLayout(run_id)` gives the keys the steps read and write; `RunLayout.wildcard()` gives the same
names with `*` for the run id: the key patterns of the IAM statements (infra/steps.py,
infra/sagemaker_role.py), so a policy and the code that writes the key cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNS_PREFIX = "runs/"
WILDCARD = "*"
# Prepare's outputs beside the channels, by manifest `files` name.
PREPARED_FILES = {
    "users": "users.json",
    "items": "items.json",
    "seen": "seen.npz",
    "holdout": "holdout.npz",
    "popularity": "popularity.npy",
    "report": "report.json",
}
# With side features (decision 0018) prepare also writes these (manifest `files` names).
FEATURE_FILES = {"user_side": "user_side.npz", "item_side": "item_side.npz"}
# With the cold protocols (decision 0018) prepare also writes their held-out interactions (CSR of
# user -> item indices, like holdout.npz).
PROTOCOL_FILES = {
    "cold_users_holdout": "cold_users_holdout.npz",
    "cold_items_holdout": "cold_items_holdout.npz",
}
QUERY_PART_PREFIX = "users-"
# Item queries (related items) share the transform's input prefix `users-`, so the one transform job
# reads them; "r" sorts after every digit, so S3 lists them after all user parts (decision 0012).
RELATED_PART_PREFIX = QUERY_PART_PREFIX + "related-"
# Names inside `prepared/` (prepare also writes them under a free prefix: its CLI, its tests).
MANIFEST_NAME = "manifest.json"
TRAIN_CHANNEL = "train/"
TEST_CHANNEL = "test/"
REPORT_NAME = "index.html"  # the run report (pipeline_steps/report), a self-contained HTML page


@dataclass(frozen=True)
class RunLayout:
    """Keys of one run; `root` is a key prefix in front of `runs/` (the prepare CLI's --out)."""

    run_id: str
    root: str = ""

    @classmethod
    def wildcard(cls) -> RunLayout:
        """The layout of any run: each property is then an IAM key pattern (`runs/*/prepared/`)."""
        return cls(WILDCARD)

    @property
    def run(self) -> str:
        return f"{self.root}{RUNS_PREFIX}{self.run_id}/"

    # prepare
    @property
    def prepared(self) -> str:
        return self.run + "prepared/"

    @property
    def manifest(self) -> str:
        return self.prepared + MANIFEST_NAME

    @property
    def train(self) -> str:
        return self.prepared + TRAIN_CHANNEL

    @property
    def test(self) -> str:
        return self.prepared + TEST_CHANNEL

    def prepared_file(self, name: str) -> str:
        return self.prepared + PREPARED_FILES[name]

    def prepared_files(self) -> dict[str, str]:
        return {name: self.prepared_file(name) for name in PREPARED_FILES}

    # FM training job output (SageMaker adds <TrainingJobName>/output/model.tar.gz)
    @property
    def fm(self) -> str:
        return self.run + "fm/"

    # repackage
    @property
    def knn(self) -> str:
        return self.run + "knn/"

    @property
    def knn_train(self) -> str:
        return self.knn + "train/"

    @property
    def knn_train_items(self) -> str:
        return self.knn_train + "items.rec"

    @property
    def queries(self) -> str:
        return self.knn + "queries/"

    @property
    def queries_input(self) -> str:
        """The transform's input prefix: the parts only, not the queries manifest beside them."""
        return self.queries + QUERY_PART_PREFIX

    @property
    def queries_manifest(self) -> str:
        return self.queries + "manifest.json"

    @property
    def publish_batches(self) -> str:
        """Publish's fan-out ranges (common/batches.py): the Distributed Map's ItemReader object. Beside
        the queries manifest, not under the transform's `users-` input prefix."""
        return self.queries + "publish-batches.json"

    def publish_slice(self, first_part: int) -> str:
        """The users (ids, `seen` rows, exclusions) of the publish batch starting at `first_part`
        (common/slices.py); beside `publish_batches`, not under the transform's input prefix."""
        return f"{self.queries}publish-slice-{first_part:05d}.npz"

    def query_part(self, index: int, width: int) -> str:
        return f"{self.queries_input}{index:0{width}d}.rec"

    def related_part(self, index: int, width: int) -> str:
        """An item-query part (related items): every item's vector against the same index."""
        return f"{self.queries}{RELATED_PART_PREFIX}{index:0{width}d}.rec"

    # k-NN training job output
    @property
    def knn_model(self) -> str:
        return self.knn + "model/"

    # batch transform output
    @property
    def transform(self) -> str:
        return self.run + "transform/"

    # evaluate
    @property
    def evaluation(self) -> str:
        return self.run + "evaluation/"

    @property
    def metrics(self) -> str:
        return self.evaluation + "metrics.json"

    # report (after publish): the HTML page and the figures' data behind it
    @property
    def report(self) -> str:
        return self.run + "report/"

    @property
    def report_html(self) -> str:
        return self.report + REPORT_NAME

    @property
    def report_data(self) -> str:
        return self.report + "report.json"
