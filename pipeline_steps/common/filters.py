"""Business filters applied in the batch (docs/decisions/0012): items never recommended, per-user exclusions.

Three optional S3 objects, named in the publish config (`topx:publish.filter_*`; infra injects the
same values into repackage, whose k rule must account for them):

- `filter_exclude_items_key`: UTF-8 text, one item id per line (unavailable, out of stock). Blank
  lines are skipped; every other line is an id exactly as written (no trimming).
- `filter_metadata_key` + `filter_metadata_column` + `filter_metadata_include` / `_exclude`: a CSV
  (or TSV: a tab in the header line) with a header holding `item_id` and the column. With
  `include`, only items whose value is listed stay (items the file does not list have no value and
  go); with `exclude`, items whose value is listed go. Rows of items the run does not know are
  ignored: a catalog lists more items than were interacted with.
- `filter_user_exclusions_key`: a CSV (or TSV) of `user_id,item_id` rows (an optional header row
  `user_id,item_id`): that user never gets that item (bought elsewhere).

An id in the exclusion list or the user exclusions that the run does not know is an error naming
the file, line and field, as is malformed UTF-8 or a row of the wrong width: a filter file that
names unknown things is most likely the wrong file. Steps load the filters before writing
anything, so a bad file fails the run and never changes what is published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline_steps.common.csvtext import ITEM_ID_COLUMN, check_width, decode, header, rows
from pipeline_steps.common.errors import ConfigError, InputError
from pipeline_steps.common.layout import RUNS_PREFIX
from pipeline_steps.common.runio import Csr, get_bytes

USER_EXCLUSIONS_HEADER = ("user_id", "item_id")
FORBIDDEN_KEY_CHARS = ("*", "?")


@dataclass(frozen=True, kw_only=True)
class FilterConfig:
    """The filter fields of the publish and repackage configs (empty = filter off)."""

    filter_exclude_items_key: str = ""  # S3 key: one item id per line, never recommended
    filter_metadata_key: str = ""  # S3 key: CSV/TSV item metadata with a header (item_id, ...)
    filter_metadata_column: str = ""  # the metadata column the include/exclude values refer to
    filter_metadata_include: tuple[str, ...] = ()  # keep only items with one of these values
    filter_metadata_exclude: tuple[str, ...] = ()  # drop items with one of these values
    filter_user_exclusions_key: str = ""  # S3 key: user_id,item_id rows (that user never gets it)

    def filter_keys(self) -> dict[str, str]:
        """Config field -> S3 key of every configured filter object."""
        names = ("filter_exclude_items_key", "filter_metadata_key", "filter_user_exclusions_key")
        return {name: getattr(self, name) for name in names if getattr(self, name)}

    @property
    def has_filters(self) -> bool:
        return bool(self.filter_keys())

    def validate_filters(self, where: str) -> None:
        for name, key in self.filter_keys().items():
            check_filter_key(key, f"{where}.{name}")
        metadata_rules = self.filter_metadata_include or self.filter_metadata_exclude
        if metadata_rules and not (self.filter_metadata_key and self.filter_metadata_column):
            raise ConfigError(
                f"{where}.filter_metadata_include/exclude: need filter_metadata_key and "
                "filter_metadata_column"
            )
        if self.filter_metadata_key and not self.filter_metadata_column:
            raise ConfigError(f"{where}.filter_metadata_column: required with filter_metadata_key")
        if self.filter_metadata_column and not metadata_rules:
            raise ConfigError(
                f"{where}.filter_metadata_column: set filter_metadata_include or filter_metadata_exclude"
            )


def check_filter_key(key: str, where: str) -> None:
    """One exact object key: no wildcard (IAM grants exactly it), not a run's own files."""
    if any(c in key for c in FORBIDDEN_KEY_CHARS):
        raise ConfigError(f"{where}: an exact S3 key without '*' or '?', got {key!r}")
    if key.startswith("/") or key.endswith("/"):
        raise ConfigError(f"{where}: an object key (no leading or trailing '/'), got {key!r}")
    if key.startswith(RUNS_PREFIX):
        raise ConfigError(f"{where}: must not be under {RUNS_PREFIX} (the runs' own files), got {key!r}")


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The loaded filters of one run, as item/user indices."""

    excluded: np.ndarray  # bool (n_items,): never recommended (exclusion list, metadata rules)
    user_excluded: Csr  # user index -> item indices that user never gets
    counts: dict[str, int] = field(default_factory=dict)

    def user_drop(self, u: int, seen_row: np.ndarray) -> np.ndarray:
        """Item indices user u must not get besides the global mask: seen + own exclusions."""
        own = self.user_excluded.row(u)
        return np.concatenate([seen_row, own]) if own.size else seen_row

    def dropped_counts(self, seen: Csr) -> np.ndarray:
        """|seen(u) ∪ excluded(u) ∪ globally excluded| per user: what the k rule must over-fetch."""
        n_users, n_items = seen.indptr.size - 1, self.excluded.size
        codes = np.concatenate([_codes(seen, n_items), _codes(self.user_excluded, n_items)])
        codes = np.unique(codes)
        codes = codes[~self.excluded[codes % n_items]]
        per_user = np.bincount(codes // n_items, minlength=n_users)
        return per_user + int(self.excluded.sum())


def _codes(m: Csr, n_items: int) -> np.ndarray:
    users = np.repeat(np.arange(m.indptr.size - 1, dtype=np.int64), np.diff(m.indptr))
    return users * n_items + m.indices.astype(np.int64)


def no_filters(n_users: int, n_items: int) -> Filters:
    empty = Csr(indptr=np.zeros(n_users + 1, dtype=np.int64), indices=np.zeros(0, dtype=np.int32))
    return Filters(excluded=np.zeros(n_items, dtype=bool), user_excluded=empty)


def load_filters(
    s3: Any,
    bucket: str,
    config: FilterConfig,
    *,
    users: Sequence[str],
    items: list[str],
    user_excluded: Csr | None = None,
) -> Filters:
    """Read and check every configured filter object (InputError naming file, line and field).

    `user_excluded`: the per-user exclusions already read (a publish child's rows, common/slices.py,
    which repackage read from the same object); the object is then not read and `users` not used.
    """
    filters = no_filters(0 if user_excluded is not None else len(users), len(items))
    if user_excluded is not None:
        filters = dataclasses.replace(filters, user_excluded=user_excluded)
    if not config.has_filters:
        return filters
    item_index = {item: i for i, item in enumerate(items)}
    excluded = filters.excluded.copy()
    counts: dict[str, int] = {}
    if config.filter_exclude_items_key:
        where = f"filter_exclude_items_key s3://{bucket}/{config.filter_exclude_items_key}"
        listed = read_exclude_items(
            _object(s3, bucket, config.filter_exclude_items_key, where), where, item_index
        )
        counts["excluded_by_list"] = int(listed.sum())
        excluded |= listed
    if config.filter_metadata_key:
        where = f"filter_metadata_key s3://{bucket}/{config.filter_metadata_key}"
        by_metadata = read_metadata(
            _object(s3, bucket, config.filter_metadata_key, where), where, item_index, config=config
        )
        counts["excluded_by_metadata"] = int(by_metadata.sum())
        excluded |= by_metadata
    own = filters.user_excluded
    if config.filter_user_exclusions_key:
        if user_excluded is None:
            where = f"filter_user_exclusions_key s3://{bucket}/{config.filter_user_exclusions_key}"
            data = _object(s3, bucket, config.filter_user_exclusions_key, where)
            own = read_user_exclusions(data, where, {u: i for i, u in enumerate(users)}, item_index)
        counts["user_exclusions"] = int(own.indices.size)
    counts["excluded_items"] = int(excluded.sum())
    return Filters(excluded=excluded, user_excluded=own, counts=counts)


def _object(s3: Any, bucket: str, key: str, where: str) -> bytes:
    try:
        return get_bytes(s3, bucket, key)
    except InputError:
        raise InputError(f"{where}: object does not exist") from None


def read_exclude_items(data: bytes, where: str, item_index: dict[str, int]) -> np.ndarray:
    """Bool mask (n_items,) of the listed items; an unknown id is an error naming its line."""
    mask = np.zeros(len(item_index), dtype=bool)
    for lineno, line in enumerate(decode(data, where).splitlines(), 1):
        if not line.strip():
            continue
        index = item_index.get(line)
        if index is None:
            raise InputError(f"{where} line {lineno}: item id {line[:80]!r} is not in this run's items")
        mask[index] = True
    return mask


def read_metadata(data: bytes, where: str, item_index: dict[str, int], *, config: FilterConfig) -> np.ndarray:
    """Bool mask of the items the include/exclude rules on `filter_metadata_column` remove."""
    lines = rows(decode(data, where), where)
    column = config.filter_metadata_column
    _, names = header(lines, where, (ITEM_ID_COLUMN, column))
    id_at, value_at = names.index(ITEM_ID_COLUMN), names.index(column)
    values: dict[int, str] = {}
    for lineno, row in lines:
        check_width(row, names, where, lineno)
        index = item_index.get(row[id_at])
        if index is None:
            continue  # the catalog lists items this run has no interactions with
        if index in values:
            raise InputError(f"{where} line {lineno}: item id {row[id_at][:80]!r} listed twice")
        values[index] = row[value_at]
    include, exclude = set(config.filter_metadata_include), set(config.filter_metadata_exclude)
    removed = np.zeros(len(item_index), dtype=bool)
    for index in range(len(item_index)):
        value = values.get(index)
        removed[index] = (bool(include) and value not in include) or (value is not None and value in exclude)
    return removed


def read_user_exclusions(
    data: bytes, where: str, user_index: dict[str, int], item_index: dict[str, int]
) -> Csr:
    """user_id,item_id rows -> CSR (user index -> sorted item indices); unknown ids name their line."""
    pairs: list[tuple[int, int]] = []
    for lineno, row in rows(decode(data, where), where):
        if len(row) != 2:
            raise InputError(f"{where} line {lineno}: expected 2 fields user_id,item_id, got {len(row)}")
        if lineno == 1 and tuple(v.strip().lower() for v in row) == USER_EXCLUSIONS_HEADER:
            continue
        pairs.append(
            (
                _known(user_index, row[0], where, lineno, "user"),
                _known(item_index, row[1], where, lineno, "item"),
            )
        )
    n_users, n_items = len(user_index), len(item_index)
    codes = np.unique(np.array([u * n_items + i for u, i in pairs], dtype=np.int64))
    users = codes // n_items
    indptr = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))]).astype(np.int64)
    return Csr(indptr=indptr, indices=(codes % n_items).astype(np.int32))


def _known(index: dict[str, int], value: str, where: str, lineno: int, what: str) -> int:
    found = index.get(value)
    if found is None:
        raise InputError(f"{where} line {lineno}: {what} id {value[:80]!r} is not in this run's {what}s")
    return found


def popularity_order(popularity: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """Item indices most popular first (ties by index), globally excluded items left out."""
    order = np.lexsort((np.arange(popularity.size), -popularity))
    return order[~excluded[order]]


def fill(chosen: np.ndarray, length: int, order: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """Up to `length - len(chosen)` items of `order` that are neither chosen nor in `drop`."""
    missing = length - chosen.size
    if missing <= 0:
        return np.zeros(0, dtype=np.int64)
    taken = np.concatenate([chosen, drop]) if drop.size else chosen
    candidates = order[: missing + taken.size]  # enough: at most taken.size of them are skipped
    candidates = candidates[~np.isin(candidates, taken)]
    return candidates[:missing].astype(np.int64)
