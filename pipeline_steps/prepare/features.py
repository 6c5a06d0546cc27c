"""Side features (docs/decisions/0018): user/item metadata files -> feature columns and side matrices.

Columns keep the one-hot prefix: [0, n_users) user one-hots, [n_users, n_users + n_items) item
one-hots, then the user fields' columns, then the item fields' columns (each field in spec order,
its values in sorted order). A side matrix (users x feature_dim, items x feature_dim; float32) holds
each id's active columns and values, its one-hot included; an FM row for (u, i) is
user_side[u] + item_side[i] (disjoint columns).

Encodings: categorical = one-hot of the value; multi = one column per distinct value, each weighted
1/n so the field sums to 1; numeric = one-hot of its quantile bin (edges from the metadata's values).
An empty value gives the field no column for that id; an id without a metadata row gets only its
one-hot. Vocabularies and bin edges come from every metadata row, also those of ids without
interactions (metadata-only). With the config's cold_users / cold_items, the metadata-only ids
that have a feature value join the id maps after the warm ids ("cold": rows of features only).

Metadata files are read whole (one row per id: users or items, not interactions), with the stdlib
csv reader so every bad row has its exact file:line.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline_steps.prepare.config import FeatureField, PrepareConfig
from pipeline_steps.prepare.layout import ALIASES, PrepareInputError, normalise
from pipeline_steps.prepare.storage import ObjectInfo, Storage

SIDES = ("user", "item")
KIND_NAMES = {"categorical": "categorical", "multi": "multi", "numeric": "numeric-bins"}
MAX_EXAMPLES_PER_REASON = 5


@dataclass
class Metadata:
    """The parsed metadata of one side: valid rows only, one per id (the first; repeats are bad rows)."""

    side: str
    fields: tuple[FeatureField, ...]
    ids: list[str] = field(default_factory=list)
    values: dict[str, list[str]] = field(default_factory=dict)  # field name -> value per row
    rows_read: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    cold: bool = False  # metadata-only ids join the maps (the config's cold_users / cold_items)

    def bad_row(self, key: str, line: int, reason: str) -> None:
        self.bad[reason] += 1
        if self.bad[reason] <= MAX_EXAMPLES_PER_REASON:
            self.examples.append(f"{key}:{line}: {reason}")

    def report(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_valid": len(self.ids),
            "bad_rows": sum(self.bad.values()),
            "bad_rows_by_reason": dict(sorted(self.bad.items())),
            "examples": self.examples,
            "files": self.files,
        }


def _text(data: bytes, key: str, encoding: str) -> str:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise PrepareInputError(f"{key}: corrupt gzip data ({exc})") from None
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PrepareInputError(f"{key}:{line}: not valid {encoding} ({exc.reason})") from None


def _header(names: list[str], meta: Metadata, key: str, line: int) -> tuple[int, list[int]]:
    """(id column, the spec fields' columns) from the header; errors name the file, line and column."""
    norm = [normalise(n) for n in names]
    id_col = next((norm.index(a) for a in ALIASES[meta.side] if a in norm), None)
    if id_col is None:
        raise PrepareInputError(
            f"{key}:{line}: no {meta.side} id column in header {names} (expected one of "
            f"{', '.join(ALIASES[meta.side][:4])}, ...)"
        )
    cols = []
    for f in meta.fields:
        exact = [i for i, n in enumerate(names) if n.strip() == f.name]
        loose = [i for i, n in enumerate(norm) if n == normalise(f.name)]
        if not exact and not loose:
            raise PrepareInputError(
                f"{key}:{line}: {meta.side}_feature_columns field {f.name!r} is not in header {names}"
            )
        cols.append((exact or loose)[0])
    return id_col, cols


def _check_value(f: FeatureField, value: str) -> str | None:
    """The bad-row reason of one value, or None."""
    if f.kind != "numeric" or not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return f"not a number in {f.name}"
    return None if np.isfinite(number) else f"not a finite number in {f.name}"


def _read_file(meta: Metadata, key: str, text: str, seen: set[str]) -> None:
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=False)
    header: list[str] | None = None
    id_col, cols = 0, list[int]()
    rows = valid = 0
    prev = 0
    for row in reader:
        line, prev = prev + 1, reader.line_num
        if not row or not any(v.strip() for v in row):
            continue
        if header is None:
            header = row
            id_col, cols = _header(row, meta, key, line)
            continue
        rows += 1
        reason = None
        if len(row) != len(header):
            reason = "missing field" if len(row) < len(header) else "extra field"
        else:
            ident = row[id_col].strip()
            values = [row[c].strip() for c in cols]
            if not ident:
                reason = f"empty {meta.side} id"
            elif ident in seen:
                reason = f"repeated {meta.side} id"
            else:
                reason = next(
                    (r for f, v in zip(meta.fields, values, strict=True) if (r := _check_value(f, v))), None
                )
        if reason is not None:
            meta.bad_row(key, line, reason)
            continue
        seen.add(ident)
        meta.ids.append(ident)
        for f, v in zip(meta.fields, values, strict=True):
            meta.values[f.name].append(v)
        valid += 1
    if header is None:
        raise PrepareInputError(f"{key}: empty {meta.side} metadata file (a header line is required)")
    meta.rows_read += rows
    meta.files.append(
        {"key": key, "rows_read": rows, "rows_valid": valid, "delimiter": delimiter, "header": header}
    )


def read_metadata(config: PrepareConfig, side: str, storage: Storage, objects: list[ObjectInfo]) -> Metadata:
    """Every metadata file of one side (already listed); bad rows reported like the interactions'."""
    meta = Metadata(side, config.feature_fields(side), cold=config.cold(side))
    meta.values = {f.name: [] for f in meta.fields}
    seen: set[str] = set()
    for obj in objects:
        with storage.open(obj.key) as f:
            data = f.read()
        _read_file(meta, obj.key, _text(data, obj.key, config.encoding), seen)
    bad = sum(meta.bad.values())
    by_reason = ", ".join(f"{k}: {v}" for k, v in sorted(meta.bad.items()))
    examples = "; ".join(meta.examples[:10])
    if not meta.ids:
        raise PrepareInputError(
            f"no valid rows in the {side} metadata ({meta.rows_read} row(s) read; "
            f"{by_reason or 'no data lines'})" + (f"; e.g. {examples}" if examples else "")
        )
    fraction = bad / max(meta.rows_read, 1)
    if fraction > config.max_bad_fraction:
        raise PrepareInputError(
            f"{bad} of {meta.rows_read} {side} metadata rows are bad ({fraction:.2%} > max_bad_fraction "
            f"{config.max_bad_fraction:.2%}): {by_reason}; e.g. {examples}"
        )
    return meta


@dataclass
class _Entries:
    """(row, column, value) triples of one side matrix, collected field by field."""

    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    vals: list[np.ndarray] = field(default_factory=list)

    def add(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        self.rows.append(rows.astype(np.int64))
        self.cols.append(cols.astype(np.int64))
        self.vals.append(vals.astype(np.float32))

    def csr(self, n_rows: int, n_cols: int) -> Csr:
        rows, cols = np.concatenate(self.rows), np.concatenate(self.cols)
        vals = np.concatenate(self.vals)
        order = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=n_rows)
        indptr = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return Csr(indptr, cols[order].astype(np.int32), vals[order], (n_rows, n_cols))


@dataclass(frozen=True)
class Csr:
    indptr: np.ndarray  # (n_rows + 1,) int64
    indices: np.ndarray  # int32 columns, sorted within a row
    data: np.ndarray  # float32
    shape: tuple[int, int]

    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)


def _field_columns(f: FeatureField, raw: list[str]) -> tuple[list[list[str]], list[str], list[float]]:
    """(tokens per metadata row, the field's column labels (values or bin names), bin edges)."""
    if f.kind == "categorical":
        tokens = [[v] if v else [] for v in raw]
        return tokens, sorted({v for v in raw if v}), []
    if f.kind == "multi":
        tokens = [list(dict.fromkeys(t.strip() for t in v.split(f.separator) if t.strip())) for v in raw]
        return tokens, sorted({t for ts in tokens for t in ts}), []
    numbers = np.array([float(v) for v in raw if v], dtype=np.float64)
    edges: list[float] = []
    if numbers.size:
        qs = np.quantile(numbers, np.arange(1, f.bins) / f.bins) if f.bins > 1 else np.empty(0)
        edges = sorted({float(q) for q in qs})
    labels = [f"bin{k}" for k in range(len(edges) + 1)]
    tokens = [[labels[int(np.searchsorted(edges, float(v), side="right"))]] if v else [] for v in raw]
    return tokens, labels, edges


def _side_matrix(
    meta: Metadata | None,
    side: str,
    ids: list[str],
    one_hot_start: int,
    start: int,
    feature_dim: int,
    n_cold: int,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    weight: float = 1.0,
) -> tuple[Csr, list[dict], dict, dict]:
    """(side matrix, field descriptions, counts, vocabularies) of one side; `start`: its first column;
    `weight`: what each field's values of an id sum to (the config's feature_weight).

    The last `n_cold` ids are cold (metadata only): their rows hold their feature columns only, no
    one-hot (a cold id's one-hot column is in no training row, so its weights are never trained).
    """
    n = len(ids)
    n_warm = n - n_cold
    entries = _Entries()
    entries.add(np.arange(n_warm), one_hot_start + np.arange(n_warm), np.ones(n_warm))
    if extra is not None:
        entries.add(*extra)
    if meta is None:
        return entries.csr(n, feature_dim), [], {}, {}
    position = {ident: k for k, ident in enumerate(meta.ids)}
    meta_row = np.array([position.get(ident, -1) for ident in ids], dtype=np.int64)
    known = meta_row >= 0
    warm_known = int(known[:n_warm].sum())
    counts = {
        "with_metadata": warm_known,
        "without_metadata": n_warm - warm_known,
        "metadata_only": len(meta.ids) - warm_known,
    }
    if meta.cold or n_cold:
        counts["cold"] = n_cold
    fields, vocab = [], {}
    for f in meta.fields:
        tokens, labels, edges = _field_columns(f, meta.values[f.name])
        column = {label: start + k for k, label in enumerate(labels)}
        rows, cols, vals, missing = [], [], [], 0
        for dense in np.flatnonzero(known):
            mine = tokens[meta_row[dense]]
            missing += not mine
            for t in mine:
                rows.append(dense)
                cols.append(column[t])
                vals.append(weight / len(mine))
        entries.add(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(vals))
        desc = {
            "name": f.name,
            "side": side,
            "kind": KIND_NAMES[f.kind],
            "start": start,
            "stop": start + len(labels),
        }
        if f.kind == "numeric":
            desc["edges"] = edges
        if weight != 1.0:
            desc["weight"] = weight
        desc["missing"] = missing
        fields.append(desc)
        vocab[f.name] = labels
        start += len(labels)
    return entries.csr(n, feature_dim), fields, counts, vocab


def _with_columns(meta: Metadata) -> set[str]:
    """The metadata ids with at least one feature column (an id whose every field is empty has none)."""
    has_column = np.zeros(len(meta.ids), dtype=bool)
    for f in meta.fields:
        tokens = _field_columns(f, meta.values[f.name])[0]
        has_column |= np.fromiter((bool(t) for t in tokens), dtype=bool, count=len(tokens))
    return {ident for k, ident in enumerate(meta.ids) if has_column[k]}


def cold_ids(meta: Metadata, known: list[str]) -> list[str]:
    """The metadata ids not in `known` that have at least one feature column, in metadata order.

    An id whose every field is empty would get an empty side row (no one-hot, no feature): nothing to
    compute a vector from; it stays out of the maps (counted in `metadata_only`).
    """
    usable, seen = _with_columns(meta), set(known)
    return [ident for ident in meta.ids if ident in usable and ident not in seen]


@dataclass(frozen=True)
class ProtocolSplit:
    """The cold protocols' hold-out (decision 0018): per side the kept ids (warm, in their order) and
    the held-out ids (cold), the pairs left for training / the warm holdout, and the protocol pairs,
    all in the new dense indices (kept ids first, then held-out ids)."""

    kept: dict[str, list[str]]
    held: dict[str, list[str]]
    train: tuple[np.ndarray, np.ndarray, np.ndarray]  # (users, items, ratings)
    holdout: tuple[np.ndarray, np.ndarray, np.ndarray]
    cold_users: tuple[np.ndarray, np.ndarray]  # held-out users x kept items
    cold_items: tuple[np.ndarray, np.ndarray]  # kept users x held-out items
    dropped: int  # pairs of a held-out user and a held-out item (in neither protocol)


def protocol_split(
    share: float,
    seed: int,
    metadata: dict[str, Metadata],
    ids: dict[str, list[str]],
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    holdout: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> ProtocolSplit:
    """Hold out `share` of each side's ids (of all its ids, drawn among those with a feature column;
    fixed seed) with every interaction they have, training and holdout alike.

    Cold users: the held-out users' pairs with kept items. Cold items: the held-out items' pairs with
    kept users. A pair of a held-out user and a held-out item is in neither (counted).
    """
    order: dict[str, np.ndarray] = {}
    held_mask: dict[str, np.ndarray] = {}
    kept: dict[str, list[str]] = {}
    held: dict[str, list[str]] = {}
    for n_side, side in enumerate(SIDES):
        side_ids = ids[side]
        mask = np.zeros(len(side_ids), dtype=bool)
        meta = metadata.get(side)
        if meta is not None:
            usable = _with_columns(meta)
            eligible = np.array([k for k, ident in enumerate(side_ids) if ident in usable], dtype=np.int64)
            n = min(eligible.size, max(1, round(share * len(side_ids))))
            if n:
                mask[np.random.default_rng([seed, 7, n_side]).choice(eligible, size=n, replace=False)] = True
        # new dense index: the kept ids in their order, then the held-out ids in theirs
        perm = np.concatenate([np.flatnonzero(~mask), np.flatnonzero(mask)])
        lut = np.empty(len(side_ids), dtype=np.int32)
        lut[perm] = np.arange(len(side_ids), dtype=np.int32)
        order[side], held_mask[side] = lut, mask
        kept[side] = [side_ids[k] for k in np.flatnonzero(~mask)]
        held[side] = [side_ids[k] for k in np.flatnonzero(mask)]

    out_train: list[np.ndarray] = []
    out_hold: list[np.ndarray] = []
    cu: list[tuple[np.ndarray, np.ndarray]] = []
    ci: list[tuple[np.ndarray, np.ndarray]] = []
    dropped = 0
    for rows, out in ((train, out_train), (holdout, out_hold)):
        hu, hi = held_mask["user"][rows[0]], held_mask["item"][rows[1]]
        u, i = order["user"][rows[0]], order["item"][rows[1]]
        keep = ~hu & ~hi
        out.extend([u[keep], i[keep], rows[2][keep]])
        cu.append((u[hu & ~hi], i[hu & ~hi]))
        ci.append((u[~hu & hi], i[~hu & hi]))
        dropped += int((hu & hi).sum())
    return ProtocolSplit(
        kept=kept,
        held=held,
        train=(out_train[0], out_train[1], out_train[2]),
        holdout=(out_hold[0], out_hold[1], out_hold[2]),
        cold_users=(np.concatenate([a for a, _ in cu]), np.concatenate([b for _, b in cu])),
        cold_items=(np.concatenate([a for a, _ in ci]), np.concatenate([b for _, b in ci])),
        dropped=dropped,
    )


@dataclass(frozen=True)
class Features:
    """The manifest's `features` object, the side matrices and the vocabularies (for the report)."""

    manifest: dict
    user_side: Csr
    item_side: Csr
    report: dict

    @property
    def feature_dim(self) -> int:
        return self.user_side.shape[1]

    @property
    def history_start(self) -> int | None:
        """The history field's first column, or None without the field."""
        starts = [f["start"] for f in self.manifest["fields"] if f["kind"] == "history"]
        return starts[0] if starts else None


def history_entries(
    users: np.ndarray, items: np.ndarray, n_users: int, start: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) of the history field: user u's distinct training items i at column
    start + i, each weighted 1/sqrt(n_u) (n_u: u's distinct items), so the field's squared norm is 1."""
    pairs = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)]), axis=1)
    n_u = np.bincount(pairs[0], minlength=n_users)
    return pairs[0], start + pairs[1], (1.0 / np.sqrt(n_u[pairs[0]])).astype(np.float32)


def encode(
    metadata: dict[str, Metadata],
    user_ids: list[str],
    item_ids: list[str],
    cold: dict[str, int] | None = None,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    weight: float = 1.0,
) -> Features:
    """Columns, side matrices and the manifest description from the parsed metadata of each side.

    `cold`: per side, how many of the ids at the end of the list are cold (metadata only).
    `history`: the training interactions (dense users, dense items) for the history field (the
    config's `user_history`): n_items columns after the item fields' columns, on the user side.
    `weight`: what each metadata field's values of an id sum to (the config's `feature_weight`).
    """
    cold = cold or {}
    n_users, n_items = len(user_ids), len(item_ids)
    base = n_users + n_items
    width = {}
    for side in SIDES:
        meta = metadata.get(side)
        width[side] = 0
        if meta is not None:
            width[side] = sum(len(_field_columns(f, meta.values[f.name])[1]) for f in meta.fields)
    history_start = base + width["user"] + width["item"]
    extra = None
    history_fields: list[dict] = []
    if history is not None:
        extra = history_entries(history[0], history[1], n_users, history_start)
        with_history = int(np.unique(extra[0]).size)
        history_fields = [
            {
                "name": "history",
                "side": "user",
                "kind": "history",
                "start": history_start,
                "stop": history_start + n_items,
                "missing": n_users - with_history,
            }
        ]
    feature_dim = history_start + (n_items if history is not None else 0)
    user_side, user_fields, user_counts, user_vocab = _side_matrix(
        metadata.get("user"), "user", user_ids, 0, base, feature_dim, cold.get("user", 0), extra, weight
    )
    item_side, item_fields, item_counts, item_vocab = _side_matrix(
        metadata.get("item"),
        "item",
        item_ids,
        n_users,
        base + width["user"],
        feature_dim,
        cold.get("item", 0),
        weight=weight,
    )
    manifest: dict = {
        "columns": feature_dim - base,
        "fields": user_fields + item_fields + history_fields,
    }
    report: dict = {}
    for side, counts, vocab in (("user", user_counts, user_vocab), ("item", item_counts, item_vocab)):
        if side in metadata:
            manifest[side] = counts
            report[side] = {"parse": metadata[side].report(), "values": vocab, **counts}
    if extra is not None:
        report["history"] = {
            "columns": n_items,
            "entries": len(extra[0]),
            "users_with_history": n_users - history_fields[0]["missing"],
            "weight": "1/sqrt(n_u)",
        }
    return Features(manifest, user_side, item_side, report)


def _tail_counts(side: Csr, threshold: int) -> np.ndarray:
    """Per side row, how many of its columns are >= threshold (a suffix: columns sorted per row)."""
    row_of = np.repeat(np.arange(side.shape[0]), side.lengths())
    return np.bincount(row_of[side.indices >= threshold], minlength=side.shape[0]).astype(np.int64)


def _copy_segments(
    out: tuple[np.ndarray, np.ndarray], side: Csr, src: np.ndarray, dest: np.ndarray, counts: np.ndarray
) -> None:
    """Copy `counts[r]` entries of `side` from `src[r]` to `dest[r]` in (indices, data), per row r."""
    total = int(counts.sum())
    if not total:
        return
    within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    s = np.repeat(src, counts) + within
    d = np.repeat(dest, counts) + within
    out[0][d] = side.indices[s]
    out[1][d] = side.data[s]


def fm_rows(
    users: np.ndarray,
    items: np.ndarray,
    user_side: Csr,
    item_side: Csr,
    *,
    history_start: int | None = None,
    drop_user: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, indices, indptr) of the FM rows user_side[u] + item_side[i], columns sorted per row.

    `drop_user` (training rows with ID dropout, one bool per row): a row marked True leaves out its
    user one-hot, its first entry (`user_id_dropout_rows`).

    `history_start` (training rows with the history field): a row whose item is in its user's
    history leaves that item out of the field, the user's other n_u - 1 items weighted
    1/sqrt(n_u - 1) (FISM's rule, decision 0018), so a positive row does not hold its own item
    twice. Rows of other items keep the whole field as in user_side.

    A side row starts with its one-hot, the lowest column of that side; user feature columns all
    precede item feature columns, and the history field (a user-side field) follows them:
    [u one-hot, i one-hot, u features, i features, u history] is sorted. The user columns above
    every item column (the history, or the user features when the items have none) form the
    suffix of the user row and go last.
    """
    tail = _tail_counts(user_side, int(item_side.indices.max()) + 1 if item_side.indices.size else 0)
    lu, li, hu = user_side.lengths()[users], item_side.lengths()[items], tail[users]
    n = len(users)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lu + li, out=indptr[1:])
    total = int(indptr[-1])
    out = (np.empty(total, dtype=np.int64), np.empty(total, dtype=np.float32))
    starts = indptr[:-1]
    ones = np.ones(n, dtype=np.int64)
    u0, i0 = user_side.indptr[users], item_side.indptr[items]
    _copy_segments(out, user_side, u0, starts, ones)  # the user one-hot
    _copy_segments(out, item_side, i0, starts + 1, ones)  # the item one-hot
    _copy_segments(out, user_side, u0 + 1, starts + 2, lu - 1 - hu)  # user features
    _copy_segments(out, item_side, i0 + 1, starts + 1 + lu - hu, li - 1)  # item features
    _copy_segments(out, user_side, u0 + lu - hu, starts + lu - hu + li, hu)  # the user suffix
    if history_start is None:
        rows = out[1], out[0], indptr
    else:
        rows = _without_own_item(out, indptr, users, items, user_side, history_start, li)
    return rows if drop_user is None else _without_user_one_hot(*rows, drop_user)


def user_id_dropout_rows(users: np.ndarray, user_side: Csr, share: float, seed: int) -> np.ndarray | None:
    """Which training rows leave out their user one-hot (ID dropout, DropoutNet; decision 0018), or
    None with share 0 (no draw: the rows are as without the option).

    Each row is drawn with probability `share` from the seeded RNG; only rows whose user has at
    least one feature column (a side row longer than its one-hot: a metadata or history column)
    can be drawn, so no row is left with the item's columns alone.
    """
    if not share > 0:
        return None
    drawn = np.random.default_rng([seed, 4]).random(len(users)) < share
    return drawn & (user_side.lengths()[users] > 1)


def _without_user_one_hot(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, drop: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows with the first entry (the user one-hot) of each row marked in `drop` taken out."""
    rows = np.flatnonzero(drop)
    if not len(rows):
        return data, indices, indptr
    keep = np.ones(len(data), dtype=bool)
    keep[indptr[rows]] = False
    dropped = np.zeros(len(drop) + 1, dtype=np.int64)
    dropped[rows + 1] = 1
    return data[keep], indices[keep], indptr - np.cumsum(dropped)


def _without_own_item(
    out: tuple[np.ndarray, np.ndarray],
    indptr: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    user_side: Csr,
    history_start: int,
    li: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fm_rows' rows with each row's own item taken out of its history field, the rest reweighted."""
    dim = user_side.shape[1]
    side_row = np.repeat(np.arange(user_side.shape[0], dtype=np.int64), user_side.lengths())
    keys = side_row * dim + user_side.indices  # ascending: rows in order, columns sorted per row
    query = users.astype(np.int64) * dim + history_start + items.astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    own = np.flatnonzero(keys[pos] == query) if len(keys) else np.zeros(0, np.int64)
    if not len(own):
        return out[1], out[0], indptr
    nh = _tail_counts(user_side, history_start)[users[own]]  # the history is each row's suffix
    rest = nh - 1
    weights = (1.0 / np.sqrt(np.maximum(rest, 1))).astype(np.float32)
    first = indptr[own + 1] - nh
    within = np.arange(int(nh.sum())) - np.repeat(np.cumsum(nh) - nh, nh)
    out[1][np.repeat(first, nh) + within] = np.repeat(weights, nh)
    # the user row's entry at pos lands after the item's li entries: see the suffix copy above
    keep = np.ones(len(out[0]), dtype=bool)
    keep[indptr[own] + li[own] + pos[own] - user_side.indptr[users[own]]] = False
    dropped = np.zeros(len(users) + 1, dtype=np.int64)
    dropped[own + 1] = 1
    return out[1][keep], out[0][keep], indptr - np.cumsum(dropped)
