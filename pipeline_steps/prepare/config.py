"""Typed configuration of the prepare step (built from the Lambda's `STEP_CONFIG` or the CLI)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.errors import ConfigError

LABEL_MODES = ("binary", "regression", "implicit")
NEGATIVE_SAMPLING = ("uniform", "popularity")
SPLITS = ("explicit", "last_n", "none")
DELIMITERS = ("auto", ",", "\t", ";", "|", "::")
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ","}

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
    delimiter: str = "auto"
    header: bool | None = None  # None = auto-detect per file
    quotechar: str = '"'  # "" = fields are never quoted (e.g. raw Amazon review TSVs)
    encoding: str = "utf-8"  # any ASCII-compatible codec; bytes are validated, not guessed
    rating_threshold: float = 4.0
    label_mode: str = "implicit"
    negative_ratio: int = 4  # sampled negatives per observed positive, per draw (decision 0004)
    negative_sampling: str = "uniform"
    negative_draws: int = 4  # independent negative sets written into the one training file
    seed: int = 42
    min_user_interactions: int = 1
    min_item_interactions: int = 1
    split: str | None = None  # None = "explicit" if test_prefix else "last_n"
    holdout_n: int = 10
    max_bad_fraction: float = 0.01
    shard_rows: int = 1_000_000
    # Train shards are a multiple of this (>= 1 per FM instance: ShardedByS3Key hands each host its
    # share of the objects). Set by the deployment from topx:fm.instance_count.
    min_shards: int = 1
    shuffle: bool = True

    @property
    def effective_split(self) -> str:
        if self.split is not None:
            return self.split
        return "explicit" if self.test_prefix else "last_n"

    def __post_init__(self) -> None:
        _check_choice("label_mode", self.label_mode, LABEL_MODES)
        _check_choice("negative_sampling", self.negative_sampling, NEGATIVE_SAMPLING)
        if self.split is not None:
            _check_choice("split", self.split, SPLITS)
        if self.delimiter not in DELIMITERS:
            raise ConfigError(
                f"delimiter: {self.delimiter!r} is not one of {', '.join(map(repr, DELIMITERS))}"
            )
        if len(self.quotechar) > 1:
            raise ConfigError(f"quotechar: must be one character or empty, got {self.quotechar!r}")
        for name in ("negative_ratio", "negative_draws", "holdout_n", "shard_rows", "min_shards"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not math.isfinite(self.rating_threshold):  # NaN made every binary label 0, silently
            raise ConfigError(f"rating_threshold: must be a finite number, got {self.rating_threshold}")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            raise ConfigError(f"max_bad_fraction: must be in [0, 1], got {self.max_bad_fraction}")
        if self.effective_split == "explicit" and not self.test_prefix:
            raise ConfigError("split: 'explicit' needs test_prefix (the key prefix of the test file(s))")
        for name in ("user_col", "item_col"):
            if getattr(self, name) == "":
                raise ConfigError(f"{name}: cannot be empty (the user and item columns are required)")
        for name in ("user_col", "item_col", "rating_col", "timestamp_col"):
            value = getattr(self, name)
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"{name}: a column position must be >= 0, got {value}")
        try:
            "x".encode(self.encoding)
        except LookupError as exc:
            raise ConfigError(f"encoding: unknown codec {self.encoding!r}") from exc
        # The parser splits raw bytes at b"\n" and the delimiter: the codec must keep ASCII as is.
        probe = 'user,item;\t|:"\r\n09AZaz '
        try:
            ascii_compatible = probe.encode("ascii").decode(self.encoding) == probe
        except UnicodeError:
            ascii_compatible = False
        if not ascii_compatible:
            raise ConfigError(
                f"encoding: {self.encoding!r} is not ASCII-compatible (e.g. UTF-16/UTF-32); "
                "convert the files to UTF-8"
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


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
