"""Typed configuration of the prepare step (built from the Lambda's `STEP_CONFIG` or the CLI)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline_steps.common.config import between, check_fields, config_from_dict, one_of
from pipeline_steps.common.errors import ConfigError

LABEL_MODES = ("binary", "regression", "implicit")
NEGATIVE_SAMPLING = ("uniform", "popularity")
SPLITS = ("explicit", "last_n", "none")
DELIMITERS = ("auto", ",", "\t", ";", "|", "::")
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ","}
ENGINES = ("lambda", "spark")
MAX_SPARK_INSTANCES = 20  # a bound on what one setting can spend; raise it knowingly
# Where the Spark processing job finds its inputs (ProcessingInput LocalPath, decision 0016): read by
# infra (the request) and spark_job.py (the job).
SPARK_INPUT_ROOT = "/opt/ml/processing/input"
SPARK_CODE_DIR, SPARK_PACKAGE_DIR = f"{SPARK_INPUT_ROOT}/code", f"{SPARK_INPUT_ROOT}/package"
SPARK_DATA_DIR, SPARK_TEST_DIR = f"{SPARK_INPUT_ROOT}/data", f"{SPARK_INPUT_ROOT}/test"
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")

ColumnSpec = str | int | None


@dataclass(frozen=True, kw_only=True)
class PrepareConfig:
    """Everything the prepare step can be told; defaults suit MovieLens-style files and the demo."""

    input_prefix: str = "input/"
    # Empty = no explicit test file. With a prefix, `split` defaults to "explicit".
    test_prefix: str = ""
    # Column by header name (str) or 0-based position (int); None = auto-detect;
    # "" for rating/timestamp = the file has no such column.
    user_col: ColumnSpec = None
    item_col: ColumnSpec = None
    rating_col: ColumnSpec = None
    timestamp_col: ColumnSpec = None
    delimiter: str = field(default="auto", metadata=one_of(*DELIMITERS))
    header: bool | None = None  # None = auto-detect per file
    quotechar: str = '"'  # "" = fields are never quoted (e.g. raw Amazon review TSVs)
    encoding: str = "utf-8"  # any ASCII-compatible codec; bytes are validated, not guessed
    rating_threshold: float = field(default=4.0, metadata=between())  # finite: NaN made every label 0
    label_mode: str = field(default="implicit", metadata=one_of(*LABEL_MODES))
    # sampled negatives per observed positive, per draw (decision 0004)
    negative_ratio: int = field(default=4, metadata=between(1))
    negative_sampling: str = field(default="uniform", metadata=one_of(*NEGATIVE_SAMPLING))
    # independent negative sets written into the one training file
    negative_draws: int = field(default=4, metadata=between(1))
    seed: int = 42
    min_user_interactions: int = field(default=1, metadata=between(0))
    min_item_interactions: int = field(default=1, metadata=between(0))
    # None = "explicit" if test_prefix else "last_n"
    split: str | None = field(default=None, metadata=one_of(*SPLITS))
    holdout_n: int = field(default=10, metadata=between(1))
    max_bad_fraction: float = field(default=0.01, metadata=between(0.0, 1.0))
    shard_rows: int = field(default=1_000_000, metadata=between(1))
    # Train shards are a multiple of this (>= 1 per FM instance: ShardedByS3Key hands each host its
    # share of the objects). Set by the deployment from topx:fm.instance_count.
    min_shards: int = field(default=1, metadata=between(1))
    shuffle: bool = True
    # Where the step runs: "lambda" (DuckDB in the prepare Lambda) or "spark" (the same SQL on Spark,
    # a SageMaker Processing job with AWS's Spark container; docs/decisions/0016-spark-prepare.md).
    engine: str = field(default="lambda", metadata=one_of(*ENGINES))
    spark_instance_type: str = "ml.m5.xlarge"
    spark_instance_count: int = field(default=1, metadata=between(1, MAX_SPARK_INSTANCES))

    @property
    def effective_split(self) -> str:
        if self.split is not None:
            return self.split
        return "explicit" if self.test_prefix else "last_n"

    def __post_init__(self) -> None:
        check_fields(self)  # the bounds and choices declared on the fields above
        if len(self.quotechar) > 1:
            raise ConfigError(f"quotechar: must be one character or empty, got {self.quotechar!r}")
        if self.effective_split == "explicit" and not self.test_prefix:
            raise ConfigError("split: 'explicit' needs test_prefix (the key prefix of the test file(s))")
        for name in ("user_col", "item_col", "rating_col", "timestamp_col"):
            value = getattr(self, name)
            if value == "" and name in ("user_col", "item_col"):
                raise ConfigError(f"{name}: cannot be empty (the user and item columns are required)")
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"{name}: a column position must be >= 0, got {value}")
        _check_encoding(self.encoding)
        if not _INSTANCE_TYPE.match(self.spark_instance_type):
            raise ConfigError(
                f"spark_instance_type: expected a SageMaker instance type like 'ml.m5.xlarge', "
                f"got {self.spark_instance_type!r}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, where: str = "prepare") -> PrepareConfig:
        """Build from a JSON-like dict (common.config: unknown keys and wrong types name the key).

        Text forms are accepted as on a command line ("7", "false"), plus `delimiter` names ("tab",
        "comma") and `header: "auto"` (= None).
        """
        data = dict(data or {})
        if isinstance(data.get("delimiter"), str):
            data["delimiter"] = DELIMITER_NAMES.get(data["delimiter"], data["delimiter"])
        if data.get("header") == "auto":
            data["header"] = None
        return config_from_dict(cls, data, where=where, strings=True)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_encoding(encoding: str) -> None:
    try:
        "x".encode(encoding)
    except LookupError as exc:
        raise ConfigError(f"encoding: unknown codec {encoding!r}") from exc
    # The parser splits raw bytes at b"\n" and the delimiter: the codec must keep ASCII as is.
    probe = 'user,item;\t|:"\r\n09AZaz '
    try:
        ascii_compatible = probe.encode("ascii").decode(encoding) == probe
    except UnicodeError:
        ascii_compatible = False
    if not ascii_compatible:
        raise ConfigError(
            f"encoding: {encoding!r} is not ASCII-compatible (e.g. UTF-16/UTF-32); convert the files to UTF-8"
        )
