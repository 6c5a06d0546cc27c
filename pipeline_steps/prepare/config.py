"""Typed configuration of the prepare step (built from the Lambda's `STEP_CONFIG` or the CLI)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline_steps.common.config import between, check_fields, config_from_dict, one_of
from pipeline_steps.common.errors import ConfigError
from pipeline_steps.common.recipes import CUSTOM, RECIPE_NAMES, RECIPES

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
    # The named training recipe (common/recipes.py, decision 0017) these negatives belong to; set by
    # the deployment from topx:recipe. A named one must match negative_ratio/negative_draws;
    # "custom" = they are set by hand. Recorded in the manifest's config.
    recipe: str = field(default=CUSTOM, metadata=one_of(*RECIPE_NAMES))
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
    # Side features (docs/decisions/0018): metadata file prefixes (CSV/TSV with a header holding the
    # id column) and the column specs, e.g. "genres:multi:pipe,year:numeric:5,occupation:categorical".
    # Empty = no features: the channels, the files and the manifest are as without this option.
    user_features: str = ""
    item_features: str = ""
    user_feature_columns: str = ""
    item_feature_columns: str = ""
    # Where the step runs: "lambda" (DuckDB in the prepare Lambda) or "spark" (the same SQL on Spark,
    # a SageMaker Processing job with AWS's Spark container; docs/decisions/0016-spark-prepare.md).
    engine: str = field(default="lambda", metadata=one_of(*ENGINES))
    spark_instance_type: str = "ml.m5.xlarge"
    spark_instance_count: int = field(default=1, metadata=between(1, MAX_SPARK_INSTANCES))
    # Cold start (decision 0018): metadata ids without interactions join the id maps after the warm
    # ids (dense indices n_warm.., the warm numbering unchanged) with side rows of their feature
    # columns only, so repackage gives them a vector/query from their features. Users: on (a user
    # with metadata gets a personalised list instead of the popularity fallback; nothing else
    # changes). Items: off (a new item then competes in every user's list: a catalogue decision).
    # No effect on a side without metadata.
    cold_users: bool = True
    cold_items: bool = False
    # The cold protocols (decision 0018): hold out `cold_share` of the users (with user metadata)
    # and of the items (with item metadata) entirely, fixed seed; they join the maps as cold ids and
    # their interactions go to the protocol files evaluate scores. Off in production (those users and
    # items lose their training rows), on in the demo.
    cold_protocols: bool = False
    cold_share: float = field(default=0.1, metadata=between(0.0, 0.5))
    # The history field (decision 0018, SVD++/FISM form): each user's training items as a user-side
    # field, n_items columns after the item fields' columns, each weighted 1/sqrt(n_u) (the field's
    # squared norm is 1). Training interactions only (never the holdout); cold users have none.
    # Off = the channels, the files and the manifest are as without this option.
    user_history: bool = False
    # ID dropout (decision 0018, DropoutNet / Volkovs et al. 2017): this share of the training rows,
    # drawn with the seeded RNG, leaves out its user one-hot column (only rows whose user has at
    # least one feature column), so the user features learn to stand alone, as a cold user's query
    # does. The test channel and serving are unchanged. 0 = the outputs are as without this option.
    user_id_dropout: float = 0.0
    # The weight of each metadata field (decision 0018, "Field weight"): a field's values sum to this
    # instead of 1 (a categorical or bin column holds it, a multi-valued field's n columns weight/n),
    # against 1 for the id one-hots. Smaller weights keep the fields from crowding out the one-hots
    # early in training (LightFM's `normalize` makes a row's weights sum to 1 for the same reason).
    # The history field keeps its own 1/sqrt(n_u). 1 = the outputs are as without this option.
    feature_weight: float = 1.0

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
        self._check_recipe()
        self._check_features()

    def _check_features(self) -> None:
        for side in ("user", "item"):
            prefix, spec = getattr(self, f"{side}_features"), getattr(self, f"{side}_feature_columns")
            fields = parse_feature_columns(spec, f"{side}_feature_columns")
            if bool(prefix) != bool(fields):
                raise ConfigError(
                    f"{side}_features and {side}_feature_columns go together: set both (the metadata "
                    "prefix and the columns to use) or neither"
                )

        if self.cold_protocols and not (self.user_features or self.item_features):
            raise ConfigError(
                "cold_protocols: needs user_features or item_features (a held-out id is ranked from its "
                "features)"
            )
        if self.cold_protocols and self.cold_share <= 0:
            raise ConfigError("cold_share: must be > 0 with cold_protocols")
        if not 0.0 <= self.user_id_dropout < 1.0:  # NaN fails too
            raise ConfigError(
                f"user_id_dropout: must be in [0, 1) (the share of training rows without their user "
                f"one-hot), got {self.user_id_dropout!r}"
            )
        if not 0.0 < self.feature_weight <= MAX_FEATURE_WEIGHT:  # NaN and inf fail too
            raise ConfigError(
                f"feature_weight: must be in (0, {MAX_FEATURE_WEIGHT:g}] (what each metadata field's "
                f"values sum to; the one-hots have 1), got {self.feature_weight!r}"
            )

    def _check_recipe(self) -> None:
        if self.recipe == CUSTOM:
            return
        wanted = RECIPES[self.recipe].prepare_values()
        got = {name: getattr(self, name) for name in wanted}
        if got != wanted:
            diff = ", ".join(f"{k} {got[k]} (recipe: {v})" for k, v in wanted.items() if got[k] != v)
            raise ConfigError(
                f"recipe: {self.recipe!r} sets {wanted} but the config has {diff}; "
                f"use recipe {CUSTOM!r} for other values"
            )

    def feature_fields(self, side: str) -> tuple[FeatureField, ...]:
        return parse_feature_columns(getattr(self, f"{side}_feature_columns"), f"{side}_feature_columns")

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
        """The config as the manifest records it; the side-feature, engine and recipe keys only when
        set, so a run without them records (and compares on a retry) the same document as before."""
        out = dataclasses.asdict(self)
        for name in FEATURE_KEYS:
            if not out[name]:
                del out[name]
        for side in ("user", "item"):
            if not out.get(f"{side}_features"):
                del out[f"cold_{side}s"]
        if not self.cold_protocols:
            del out["cold_protocols"], out["cold_share"]
        if not self.user_history:
            del out["user_history"]
        if not self.user_id_dropout > 0:
            del out["user_id_dropout"]
        if self.feature_weight == 1.0:
            del out["feature_weight"]
        # Keys added with the Spark engine and the recipes (decisions 0016, 0017), recorded only
        # when they differ from what every run did before them, so a retry of a run prepared before
        # those keys existed still matches its manifest (the conflict rule compares this document).
        if self.engine == "lambda":
            del out["engine"], out["spark_instance_type"], out["spark_instance_count"]
        if self.recipe == CUSTOM:
            del out["recipe"]
        return out

    def cold(self, side: str) -> bool:
        """Whether metadata-only ids of `side` join the id maps (cold ids)."""
        return bool(getattr(self, f"cold_{side}s")) and bool(getattr(self, f"{side}_features"))


MAX_FEATURE_WEIGHT = 100.0
FEATURE_KEYS = ("user_features", "item_features", "user_feature_columns", "item_feature_columns")
FEATURE_KINDS = ("categorical", "multi", "numeric")
# Separators of a multi-valued field by name (a comma separates the fields of the spec itself).
SEPARATORS = {"space": " ", "comma": ",", "pipe": "|", "semicolon": ";", "tab": "\t", "slash": "/"}
DEFAULT_BINS = 5
MAX_BINS = 1000


@dataclass(frozen=True)
class FeatureField:
    """One metadata column used as a feature: `name:categorical`, `name:multi:SEP`, `name:numeric[:BINS]`."""

    name: str
    kind: str
    separator: str = ""  # multi: splits the values
    bins: int = 0  # numeric: quantile bins (one-hot of the bin)


def parse_feature_columns(text: str, where: str) -> tuple[FeatureField, ...]:
    """Parse a column spec: comma-separated `NAME:KIND[:ARG]`; errors name the field.

    KIND `categorical` (one-hot of the value), `multi:SEP` (values split at SEP, each weighted 1/n so
    the field sums to 1; SEP one character or a name: space, comma, pipe, semicolon, tab, slash),
    `numeric[:BINS]` (quantile bins, default 5).
    """
    fields: list[FeatureField] = []
    for part in (p.strip() for p in text.split(",")) if text.strip() else ():
        name, _, rest = part.partition(":")
        kind, _, arg = rest.partition(":")
        name, kind = name.strip(), kind.strip()
        label = f"{where}: field {name or part!r}"
        if not name:
            raise ConfigError(f"{where}: {part!r} has no column name (expected NAME:KIND[:ARG])")
        if kind not in FEATURE_KINDS:
            raise ConfigError(f"{label}: kind must be one of {', '.join(FEATURE_KINDS)}, got {kind!r}")
        if any(f.name == name for f in fields):
            raise ConfigError(f"{label}: named twice")
        if kind == "categorical":
            if arg:
                raise ConfigError(f"{label}: categorical takes no argument, got {arg!r}")
            fields.append(FeatureField(name, kind))
        elif kind == "multi":
            sep = SEPARATORS.get(arg.strip().lower(), arg)
            if len(sep) != 1:
                names = ", ".join(SEPARATORS)
                raise ConfigError(
                    f"{label}: multi needs a one-character separator or one of {names}, got {arg!r}"
                )
            fields.append(FeatureField(name, kind, separator=sep))
        else:
            bins = arg.strip() or str(DEFAULT_BINS)
            if not bins.isdigit() or not 1 <= int(bins) <= MAX_BINS:
                raise ConfigError(f"{label}: numeric bins must be an integer in [1, {MAX_BINS}], got {arg!r}")
            fields.append(FeatureField(name, kind, bins=int(bins)))
    return tuple(fields)


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
