"""Typed configuration of the prepare step (built from the Lambda's `STEP_CONFIG` or the CLI)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

LABEL_MODES = ("binary", "regression", "implicit")
NEGATIVE_SAMPLING = ("uniform", "popularity")
SPLITS = ("explicit", "last_n", "none")
DELIMITERS = ("auto", ",", "\t", ";", "|", "::")

ColumnSpec = str | int | None


class ConfigError(ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


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
    negative_ratio: int = 3  # sampled negatives per observed positive, per draw
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
    def from_dict(cls, data: dict[str, Any] | None) -> PrepareConfig:
        """Build from a JSON-like dict, rejecting unknown keys and wrong types with the key's name."""
        data = dict(data or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown prepare config key(s): {', '.join(unknown)}; known: {', '.join(fields)}"
            )
        kwargs = {name: _coerce(name, value) for name, value in data.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_INTS = {"negative_ratio", "negative_draws", "seed", "min_user_interactions", "min_item_interactions"}
_INTS |= {"holdout_n", "shard_rows", "min_shards"}
_FLOATS = {"rating_threshold", "max_bad_fraction"}
_STRS = {
    "input_prefix",
    "test_prefix",
    "delimiter",
    "quotechar",
    "encoding",
    "label_mode",
    "negative_sampling",
}
_COLUMNS = {"user_col", "item_col", "rating_col", "timestamp_col"}


def _coerce(name: str, value: Any) -> Any:
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if name in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if name in _STRS:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return {"tab": "\t", "\\t": "\t", "comma": ","}.get(value, value) if name == "delimiter" else value
    if name in _COLUMNS:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"{name}: a column position must be >= 0, got {value}")
            return value
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name}: expected a header name, a 0-based position or null, got {value!r}")
    if name == "split":
        if value is None or isinstance(value, str):
            return value
        raise ConfigError(f"split: expected one of {', '.join(SPLITS)}, got {value!r}")
    if name in ("header", "shuffle"):
        return _coerce_bool(name, value, allow_auto=name == "header")
    raise ConfigError(f"{name}: unsupported key")  # unreachable: keys are checked first


def _coerce_bool(name: str, value: Any, *, allow_auto: bool) -> bool | None:
    if isinstance(value, bool):
        return value
    if allow_auto and (value is None or value == "auto"):
        return None
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ConfigError(f"{name}: expected true/false{'/auto' if allow_auto else ''}, got {value!r}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")
