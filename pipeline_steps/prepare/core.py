"""Prepare step core: raw interaction files -> FM channels, id maps, seen/holdout, popularity, manifest.

Contract (docs/contracts.md): everything is written under `out_prefix` (`runs/<run_id>/prepared/`
in the bucket), `manifest.json` last. Re-running a completed run with the same input fingerprint
and config returns the existing manifest without writing; with a different input or config it
raises `PrepareConflictError` (a completed run's outputs are never overwritten). A run that has
no manifest is incomplete: its leftovers are deleted and everything is rewritten.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline_steps.common.events import PrepareResult
from pipeline_steps.common.layout import (
    FEATURE_FILES,
    MANIFEST_NAME,
    PREPARED_FILES,
    PROTOCOL_FILES,
    TEST_CHANNEL,
    TRAIN_CHANNEL,
)
from pipeline_steps.common.manifest import MANIFEST_VERSION, Manifest
from pipeline_steps.common.recipes import RECIPES, suggest
from pipeline_steps.prepare import features, labels, outputs, query
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.engine import Engine, Stats, local_files
from pipeline_steps.prepare.labels import csr_from_pairs
from pipeline_steps.prepare.layout import PrepareInputError
from pipeline_steps.prepare.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)
SHARD_WORKERS = 4  # bounded: each in-flight shard holds its encoded bytes in memory
# With side features a row holds more than two non-zeros (the history field: ~200 on ML-100k), and a
# shard's encoding holds several arrays per non-zero: a shard also holds at most this many non-zeros
# (~130 MB of indices and values), so SHARD_WORKERS shards in flight stay within the prepare
# Lambda. One-hot rows (2 non-zeros) and the metadata fields alone (~8) keep `shard_rows` rows.
SHARD_NONZEROS = 16_000_000

__all__ = ["PrepareConflictError", "PrepareInputError", "prepare", "step_output"]


class PrepareConflictError(RuntimeError):
    """The run already has a completed prepare from a different input or config."""


def prepare(
    config: PrepareConfig,
    *,
    source: Storage,
    sink: Storage,
    run_id: str,
    out_prefix: str,
    test_source: Storage | None = None,
    bucket: str = "",
    feature_sources: dict[str, Storage] | None = None,
    engine: Callable[[PrepareConfig, str], Engine] = Engine,
    timings: dict[str, float] | None = None,
) -> dict:
    """Run the prepare step; returns the manifest (a dict, as written to `manifest.json`).

    `engine` runs query.py (DuckDB here; `spark_engine.SparkEngine` the same statements on Spark);
    `timings`, if given, receives the seconds of each phase.

    The step, in order: list the inputs; reuse a completed run (or clear an incomplete one);
    parse; apply the rules (latest row per pair, minimum counts); split off the holdout; map ids
    to dense indices; label and sample negatives; write the channels and files; the manifest last.
    `feature_sources`: the store of each side's metadata (`user`, `item`; default `source`).
    """
    clock = _Clock()
    if out_prefix and not out_prefix.endswith("/"):
        out_prefix += "/"
    test_source = test_source or source
    objects, test_objects = _list_inputs(config, source, test_source, sink, out_prefix)
    meta_sources = {side: (feature_sources or {}).get(side, source) for side in features.SIDES}
    meta_objects = _list_metadata(config, meta_sources, source, test_source, sink, out_prefix)
    listed = _every_input(source, objects, test_source, test_objects, meta_sources, meta_objects)
    manifest_key = out_prefix + MANIFEST_NAME
    existing = sink.read_bytes(manifest_key)
    if existing is not None:
        return _reuse(json.loads(existing), config, listed, run_id)
    stale = [o.key for o in sink.list(out_prefix)] if out_prefix else []
    if stale:
        log.info("deleting %d leftover object(s) of an incomplete prepare under %s", len(stale), out_prefix)
        sink.delete(stale)

    # The metadata first: a bad file fails the run before the interactions are parsed.
    metadata = {
        side: features.read_metadata(config, side, meta_sources[side], objs)
        for side, objs in meta_objects.items()
    }
    with tempfile.TemporaryDirectory(prefix="prepare-") as work:
        sql = engine(config, work)
        with ThreadPoolExecutor(max_workers=2) as pool:  # hashing local files overlaps the reads
            fps = pool.map(lambda so: fingerprint(*so[:2]), listed)
            train = sql.load(local_files(source, [o.key for o in objects], work), "parsed_train", "train")
            test = None
            if test_objects:
                keys = [o.key for o in test_objects]
                test = sql.load(local_files(test_source, keys, work), "parsed_test", "test")
            all_objects = _described(listed, fps)
        clock.lap("parse")
        log.info("parsed %d rows (%d valid)", train.rows_read, train.rows_valid)
        data, duplicates, filtered = _relational(config, sql, train, test)
        # The Spark engine samples and encodes the implicit training channel in its partitions.
        pairs = _training_pairs(config, sql, metadata, data)
        sql.close()
    clock.lap("rules")
    protocol = _protocol_split(config, metadata, data) if config.cold_protocols else None
    data = _kept(data, protocol)
    train_rows, test_rows, label_stats, written = _labels(config, pairs, data, sink, out_prefix)
    clock.lap("labels")
    n_warm = {"user": data.n_users, "item": data.n_items}
    data, cold = _with_cold(metadata, protocol, data)
    side = None
    if metadata or config.user_history:
        # the history field: the training interactions only (data.du/di; never the holdout)
        history = (data.du, data.di) if config.user_history else None
        side = features.encode(
            metadata,
            data.user_ids,
            data.item_ids,
            {k: len(v) for k, v in cold.items()},
            history,
            config.feature_weight,
        )
        clock.lap("features")
        if protocol is not None:
            side.manifest["protocols"] = _protocol_files(sink, out_prefix, config, protocol, n_warm, data)
    files = _file_keys(out_prefix, features=side is not None, protocols=protocol is not None)
    train_shards, n_train, drop_user = written or _train_shards(
        config, sink, out_prefix, train_rows, data, side
    )
    test_shards = _write_shards(
        sink, out_prefix + TEST_CHANNEL, test_rows, data.n_users, data.n_items, config.shard_rows, 1, side
    )
    _write_files(sink, files, data)
    if side is not None:
        for name, matrix in (("user_side", side.user_side), ("item_side", side.item_side)):
            sink.write_bytes(files[name], _side_npz(matrix))
    counts = {
        "rows_read": train.rows_read,
        "rows_valid": train.rows_valid,
        "bad_rows": train.bad_rows,
        "duplicates": duplicates,
        "filtered": filtered,
        "train_rows": n_train,
        "test_rows": len(test_rows[0]),
        "holdout_pairs": len(data.hdu),
        "train_interactions": len(data.du),
    }
    if drop_user is not None:
        counts["train_rows_without_user_id"] = int(drop_user.sum())
    report = {
        "run_id": run_id,
        "counts": counts,
        "bad_rows_by_reason": dict(sorted(train.bad.items())),
        "examples": train.examples,
        "files": train.files,
        "split": config.effective_split,
        "test": ({"parse": test.as_dict(), **data.test_info} if test else data.test_info),
        "label_mode": config.label_mode,
        "label_stats": label_stats,
    }
    if side is not None:
        report["features"] = side.report
    sink.write_bytes(files["report"], outputs.json_bytes(report))
    manifest = Manifest(
        version=MANIFEST_VERSION,
        run_id=run_id,
        bucket=bucket,
        n_users=data.n_users,
        n_items=data.n_items,
        feature_dim=side.feature_dim if side is not None else data.n_users + data.n_items,
        label_mode=config.label_mode,
        label_stats=label_stats,
        counts=counts,
        train_shards=train_shards,
        test_shards=test_shards,
        files=files,
        input={"objects": all_objects, "sha256": _input_sha256(all_objects)},
        config=config.to_dict(),
        features=side.manifest if side is not None else {},
    ).to_json()
    sink.write_bytes(manifest_key, outputs.json_bytes(manifest))  # last: its presence = completed
    clock.lap("write")
    if timings is not None:
        timings.update((f"{name}_s", round(seconds, 3)) for name, seconds in clock.laps)
    log.info(
        "prepare %s: %s; %d users, %d items, %d train rows",
        run_id,
        clock.summary(),
        data.n_users,
        data.n_items,
        counts["train_rows"],
    )
    return manifest


class _Clock:
    """Seconds per phase, for the log line."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds:.2f}s" for name, seconds in self.laps)


def _list_inputs(
    config: PrepareConfig, source: Storage, test_source: Storage, sink: Storage, out_prefix: str
) -> tuple[list[ObjectInfo], list[ObjectInfo]]:
    """The training and test objects; errors for a prefix covering the outputs or no files."""
    split = config.effective_split
    for name, prefix, store in (
        ("input_prefix", config.input_prefix, source),
        ("test_prefix", config.test_prefix, test_source),
    ):
        if name == "test_prefix" and split != "explicit":
            continue
        # An input prefix that covers the output prefix in the same store would read this run's
        # (and other runs') outputs as interaction data, and a retry would no longer match.
        if out_prefix.startswith(prefix) and store.uri(out_prefix) == sink.uri(out_prefix):
            raise PrepareInputError(
                f"{name} {prefix!r} includes the output prefix {sink.uri(out_prefix)!r}; "
                "put the interaction files under their own prefix (e.g. 'input/')"
            )
    test_objects = test_source.list(config.test_prefix) if split == "explicit" else []
    # Test files under the input prefix are not training data, also when the test store is another
    # object for the same bucket/directory (the CLI builds one per path).
    same_store = test_source is source or test_source.uri("") == source.uri("")
    test_keys = {o.key for o in test_objects} if same_store else set()
    objects = [o for o in source.list(config.input_prefix) if o.key not in test_keys]
    if not objects:
        raise PrepareInputError(f"no input files under {source.uri(config.input_prefix)!r}")
    if split == "explicit" and not test_objects:
        raise PrepareInputError(
            f"split 'explicit' but no test files under {test_source.uri(config.test_prefix)!r}"
        )
    return objects, test_objects


@dataclass(frozen=True)
class _Dense:
    """Training pairs and holdout pairs in dense indices (0..n_users-1, 0..n_items-1)."""

    du: np.ndarray
    di: np.ndarray
    r: np.ndarray
    hdu: np.ndarray
    hdi: np.ndarray
    hr: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    test_info: dict
    # The training pairs as codes (the query) and code -> dense index (for the Spark partitions)
    train_query: str = ""
    lut_u: np.ndarray | None = None
    lut_i: np.ndarray | None = None

    def ids(self, side: str) -> list[str]:
        return self.user_ids if side == "user" else self.item_ids

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _relational(
    config: PrepareConfig, engine: Engine, train: Stats, test: Stats | None
) -> tuple[_Dense, int, int]:
    """The SQL rules (query.py) on the parsed rows: (dense data, duplicates, filtered)."""
    sql, count = engine.sql, engine.count
    _need_ratings(config, train, "")
    for name, col in (("user_ids", "u"), ("item_ids", "i")):
        sql(f"CREATE TABLE {name} AS {query.ID_ORDER.format(col=col, source='parsed_train')}")
    coded = query.CODED.format(source=query.with_seq("parsed_train"))
    sql(f"CREATE TABLE coded AS {coded}; DROP TABLE parsed_train")
    sql(f"CREATE TABLE latest AS {query.LATEST.format(source='coded')}; DROP TABLE coded")
    deduped = count("latest")
    kept = engine.min_counts("latest", config.min_user_interactions, config.min_item_interactions)
    n_kept = count(kept)
    if n_kept == 0:
        raise PrepareInputError(
            f"no interactions left after the minimum-count filters (user >= {config.min_user_interactions}, "
            f"item >= {config.min_item_interactions})"
        )
    test_info: dict = {}
    split = config.effective_split
    columns = "u, i, coalesce(rating, CAST('nan' AS FLOAT)) AS r, seq"
    held: dict[str, np.ndarray] = {
        "u": np.empty(0, np.int32),
        "i": np.empty(0, np.int32),
        "r": np.empty(0, np.float32),
        "seq": np.empty(0, np.int64),
    }
    if split == "last_n":
        # One scan of the split, divided here (two filtered fetches scan it twice).
        last_n = query.LAST_N.format(source=kept, n=config.holdout_n)
        both = engine.numpy(f"SELECT {columns}, held FROM ({last_n})")
        mask = both.pop("held").astype(bool)
        tr, held = {k: v[~mask] for k, v in both.items()}, {k: v[mask] for k, v in both.items()}
        del both
        train_query = f"SELECT u, i FROM ({last_n}) WHERE NOT held"
    else:
        tr = engine.numpy(f"SELECT {columns} FROM {kept}")
        train_query = f"SELECT u, i FROM {kept}"
    if split == "explicit":
        assert test is not None
        _need_ratings(config, test, " in the test file(s)")
        valid = query.with_seq("parsed_test", "reason IS NULL")
        sql(f"CREATE TABLE test_latest AS {query.LATEST.format(source=valid)}")
        test_info["duplicates"] = test.rows_valid - count("test_latest")
        coded = query.TEST_CODED.format(source="test_latest", kept=kept)
        held = engine.numpy(f"SELECT {columns}, in_train FROM ({coded})")
        # A test pair also present in training can never be recommended (seen items are excluded).
        in_train = held.pop("in_train").astype(bool)
        test_info["in_train"] = int(in_train.sum())
        held = {k: v[~in_train] for k, v in held.items()}
    # Dense index = rank of the code among the codes with training rows (-1: none, held out only).
    lut_u, user_ids = _ranks(tr["u"], engine.numpy("SELECT id FROM user_ids ORDER BY ix")["id"])
    lut_i, item_ids = _ranks(tr["i"], engine.numpy("SELECT id FROM item_ids ORDER BY ix")["id"])
    order = _input_order(tr["seq"])  # training rows in input order
    hu, hi = lut_u[held["u"]], lut_i[held["i"]]
    scorable = (hu >= 0) & (hi >= 0)
    # Held-out rows of users/items without training rows cannot be scored: dropped and counted.
    test_info["holdout_unscorable"] = int((~scorable).sum())
    hold_order = _input_order(held["seq"][scorable])
    dense = _Dense(
        du=lut_u[tr["u"]][order],
        di=lut_i[tr["i"]][order],
        r=tr["r"][order],
        hdu=hu[scorable][hold_order],
        hdi=hi[scorable][hold_order],
        hr=held["r"][scorable][hold_order],
        user_ids=user_ids,
        item_ids=item_ids,
        test_info=test_info,
        train_query=train_query,
        lut_u=lut_u,
        lut_i=lut_i,
    )
    return dense, train.rows_valid - deduped, deduped - n_kept


def _input_order(seq: np.ndarray) -> np.ndarray:
    """The indices that sort `seq` (unique row ids of the parsed table: 0 .. rows parsed - 1).

    Each row is placed at its row id, in linear time: the same permutation as `np.argsort(seq)`,
    without a sort of millions of keys.
    """
    dtype = np.int32 if len(seq) < 2**31 else np.int64
    slots: np.ndarray = np.full(int(seq.max()) + 1 if len(seq) else 0, -1, dtype=dtype)
    slots[seq] = np.arange(len(seq), dtype=dtype)
    return slots[slots >= 0]


def _ranks(codes: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(lookup code -> dense index, -1 at the end for unknown codes; the ids in dense order)."""
    used = np.zeros(len(ids) + 1, dtype=bool)
    used[codes] = True
    used[-1] = False
    lut = (np.cumsum(used, dtype=np.int64) - 1).astype(np.int32)
    lut[~used] = -1
    return lut, ids[used[:-1]].tolist()


def _need_ratings(config: PrepareConfig, stats: Stats, where: str) -> None:
    if config.label_mode not in ("binary", "regression"):
        return
    missing = [f["key"] for f in stats.files if f["rows_valid"] and f["columns"]["rating"] is None]
    if missing:
        raise PrepareInputError(
            f"label_mode {config.label_mode!r} needs a rating column{where}; none found in {missing[:5]}"
        )


def _file_keys(out_prefix: str, *, features: bool, protocols: bool) -> dict[str, str]:
    """The `files` map of the manifest: the prepared files, plus the side-feature and protocol ones."""
    leaves = PREPARED_FILES | (FEATURE_FILES if features else {}) | (PROTOCOL_FILES if protocols else {})
    return {name: out_prefix + leaf for name, leaf in leaves.items()}


def _every_input(
    source: Storage,
    objects: list[ObjectInfo],
    test_source: Storage,
    test_objects: list[ObjectInfo],
    meta_sources: dict[str, Storage],
    meta_objects: dict[str, list[ObjectInfo]],
) -> list[tuple[Storage, ObjectInfo, str]]:
    """(store, object, channel) of every input object: the fingerprint's and the manifest's order."""
    listed = [(source, o, "train") for o in objects] + [(test_source, o, "test") for o in test_objects]
    return listed + [
        (meta_sources[side], o, f"{side}_features") for side, objs in meta_objects.items() for o in objs
    ]


def _described(listed: list[tuple[Storage, ObjectInfo, str]], fingerprints) -> list[dict]:
    return [
        {"key": o.key, "size": o.size, "etag_or_sha256": fp, "channel": channel}
        for (_, o, channel), fp in zip(listed, fingerprints, strict=True)
    ]


def _list_metadata(
    config: PrepareConfig,
    stores: dict[str, Storage],
    source: Storage,
    test_source: Storage,
    sink: Storage,
    out_prefix: str,
) -> dict[str, list[ObjectInfo]]:
    """Each configured side's metadata objects; errors for a prefix overlapping the others or none."""
    out: dict[str, list[ObjectInfo]] = {}
    for side in features.SIDES:
        prefix = getattr(config, f"{side}_features")
        if not prefix:
            continue
        store = stores[side]
        name = f"{side}_features"
        if out_prefix.startswith(prefix) and store.uri(out_prefix) == sink.uri(out_prefix):
            raise PrepareInputError(f"{name} {prefix!r} includes the output prefix {sink.uri(out_prefix)!r}")
        for other, other_prefix, other_store in (
            ("input_prefix", config.input_prefix, source),
            ("test_prefix", config.test_prefix, test_source),
        ):
            if (
                other_prefix
                and prefix.startswith(other_prefix)
                and store.uri(prefix) == other_store.uri(prefix)
            ):
                raise PrepareInputError(
                    f"{name} {store.uri(prefix)!r} lies under {other} {other_prefix!r}: the metadata would "
                    "be read as interactions; put it under its own prefix"
                )
        objects = store.list(prefix)
        if not objects:
            raise PrepareInputError(f"no {side} metadata files under {store.uri(prefix)!r}")
        out[side] = objects
    return out


def _kept(data: _Dense, protocol: features.ProtocolSplit | None) -> _Dense:
    """The data without the protocols' held-out ids and their pairs (unchanged without protocols)."""
    if protocol is None:
        return data
    (du, di, r), (hdu, hdi, hr) = protocol.train, protocol.holdout
    ids = protocol.kept
    return dataclasses.replace(
        data, du=du, di=di, r=r, hdu=hdu, hdi=hdi, hr=hr, user_ids=ids["user"], item_ids=ids["item"]
    )


def _with_cold(
    metadata: dict, protocol: features.ProtocolSplit | None, data: _Dense
) -> tuple[_Dense, dict[str, list[str]]]:
    """The id maps with their cold tails: the protocols' held-out ids, then the metadata-only ids."""
    cold = {side: protocol.held[side] if protocol else [] for side in features.SIDES}
    for side, meta in metadata.items():
        if meta.cold:
            cold[side] = cold[side] + features.cold_ids(meta, data.ids(side) + cold[side])
    extended = dataclasses.replace(
        data, user_ids=data.user_ids + cold["user"], item_ids=data.item_ids + cold["item"]
    )
    return extended, cold


def _protocol_split(config: PrepareConfig, metadata: dict, data: _Dense) -> features.ProtocolSplit:
    return features.protocol_split(
        config.cold_share,
        config.seed,
        metadata,
        {"user": data.user_ids, "item": data.item_ids},
        (data.du, data.di, data.r),
        (data.hdu, data.hdi, data.hr),
    )


def _protocol_files(
    sink: Storage,
    out_prefix: str,
    config: PrepareConfig,
    protocol: features.ProtocolSplit,
    n_warm: dict[str, int],
    data: _Dense,
) -> dict:
    """Write the protocol holdouts; -> the manifest's `features.protocols` (held-out ranges, pairs)."""
    for name, (u, i) in (
        ("cold_users_holdout", protocol.cold_users),
        ("cold_items_holdout", protocol.cold_items),
    ):
        ptr, idx = csr_from_pairs(u, i, data.n_users, data.n_items)
        sink.write_bytes(out_prefix + PROTOCOL_FILES[name], _csr_npz(ptr, idx, data.n_users, data.n_items))
    doc: dict = {"share": config.cold_share, "seed": config.seed, "dropped_pairs": protocol.dropped}
    # Kept ids all of whose training rows went with the held-out ids: warm, but their one-hot is in
    # no training row (its factors stay as initialised); counted, not moved.
    du, di = protocol.train[0], protocol.train[1]
    doc["kept_without_training"] = {
        "user": int(n_warm["user"] - np.unique(du).size),
        "item": int(n_warm["item"] - np.unique(di).size),
    }
    for side, pairs in (("user", protocol.cold_users), ("item", protocol.cold_items)):
        start = n_warm[side]
        doc[side] = {"start": start, "stop": start + len(protocol.held[side]), "pairs": len(pairs[0])}
    return doc


def _side_npz(matrix: features.Csr) -> bytes:
    return outputs.npz_bytes(
        indptr=matrix.indptr,
        indices=matrix.indices,
        data=matrix.data,
        shape=np.array(matrix.shape, dtype=np.int64),
    )


def _write_files(sink: Storage, files: dict[str, str], data: _Dense) -> None:
    """Id maps, seen and holdout CSRs, popularity (docs/contracts.md)."""
    n_users, n_items = data.n_users, data.n_items
    sink.write_bytes(files["users"], outputs.ids_json_bytes(data.user_ids))
    sink.write_bytes(files["items"], outputs.ids_json_bytes(data.item_ids))
    seen_ptr, seen_idx = csr_from_pairs(data.du, data.di, n_users, n_items)
    sink.write_bytes(files["seen"], _csr_npz(seen_ptr, seen_idx, n_users, n_items))
    holdout = csr_from_pairs(data.hdu, data.hdi, n_users, n_items)
    sink.write_bytes(files["holdout"], _csr_npz(*holdout, n_users, n_items))
    popularity = np.bincount(data.di, minlength=n_items).astype(np.int64)
    sink.write_bytes(files["popularity"], outputs.npy_bytes(popularity))


def step_output(manifest: dict, sink: Storage, manifest_key: str) -> dict:
    """The Lambda/Step Functions return payload (docs/contracts.md)."""
    prefix = manifest_key.rsplit("/", 1)[0] + "/"
    return PrepareResult(
        run_id=manifest["run_id"],
        manifest_key=manifest_key,
        train_s3_uri=sink.uri(prefix + TRAIN_CHANNEL),
        # No test rows (split "none") -> "" so the workflow can leave out the FM test channel.
        test_s3_uri=sink.uri(prefix + TEST_CHANNEL) if manifest["test_shards"] else "",
        feature_dim=str(manifest["feature_dim"]),  # straight into the FM hyperparameters
        n_users=manifest["n_users"],
        n_items=manifest["n_items"],
        train_rows=manifest["counts"]["train_rows"],
        test_rows=manifest["counts"]["test_rows"],
    ).to_json()


def _labelled(config: PrepareConfig, du, di, r, hdu, hdi, hr, n_users: int, n_items: int):
    """((users, items, labels) train, (users, items, labels) test, label_stats)."""
    seed = config.seed
    if config.label_mode == "binary":
        y, hy = (r >= config.rating_threshold), (hr >= config.rating_threshold)
        train = (du, di, y.astype(np.float32))
        test = (hdu, hdi, hy.astype(np.float32))
    elif config.label_mode == "regression":
        train = (du, di, r.astype(np.float32))
        test = (hdu, hdi, hr.astype(np.float32))
    else:
        popularity = np.bincount(di, minlength=n_items)
        train_seen = csr_from_pairs(du, di, n_users, n_items)
        parts_u, parts_i, parts_y = [], [], []
        for draw in range(config.negative_draws):
            rng = np.random.default_rng([seed, 1, draw])
            nu, ni = labels.sample_negatives(
                du, config.negative_ratio, train_seen, n_items, config.negative_sampling, popularity, rng
            )
            parts_u += [du, nu.astype(np.int32)]
            parts_i += [di, ni.astype(np.int32)]
            parts_y += [np.ones(len(du), np.float32), np.zeros(len(nu), np.float32)]
        train = (np.concatenate(parts_u), np.concatenate(parts_i), np.concatenate(parts_y))
        test = _implicit_test(config, du, di, hdu, hdi, n_users, n_items, popularity)
    if config.shuffle and len(train[0]):
        # SGD reads the file in order: rows grouped by user would train badly.
        perm = np.random.default_rng([seed, 3]).permutation(len(train[0]))
        train = tuple(a[perm] for a in train)
    y = train[2]
    # Positives: label 1 (binary, implicit) or rating >= threshold (regression).
    threshold = config.rating_threshold if config.label_mode == "regression" else 1.0
    positives = int((y >= threshold).sum())
    stats = {
        "positives": positives,
        "negatives": len(y) - positives,
        "mean": round(float(y.mean()), 6) if len(y) else 0.0,
    }
    if config.label_mode == "implicit":
        stats |= _negative_stats(config, len(du))
    return train, test, stats


def _training_pairs(config: PrepareConfig, engine: Engine, metadata: dict, data: _Dense):
    """The engine's handle on the training pairs when it writes the training channel (None: the
    driver writes it)."""
    return engine.training_pairs(data.train_query) if _in_partitions(config, metadata) else None


def _labels(config: PrepareConfig, pairs, data: _Dense, sink: Storage, out_prefix: str):
    """(train rows or None, test rows, label_stats, (train shard keys, train rows, None) when the
    engine's partitions wrote the training channel, else None)."""
    if pairs is not None:
        keys, n_train, test_rows, stats = _partitioned(config, pairs, data, sink, out_prefix)
        return None, test_rows, stats, (keys, n_train, None)
    # Labels on the warm ids only: a cold id is never drawn as a negative (it has no training rows).
    train_rows, test_rows, stats = _labelled(
        config, data.du, data.di, data.r, data.hdu, data.hdi, data.hr, data.n_users, data.n_items
    )
    return train_rows, test_rows, stats, None


def _train_shards(config: PrepareConfig, sink: Storage, out_prefix: str, train_rows, data: _Dense, side):
    """The driver path's training channel: (shard keys, rows, ID dropout rows or None)."""
    drop_user = _user_id_dropout(config, train_rows[0], side)
    keys = _write_shards(
        sink,
        out_prefix + TRAIN_CHANNEL,
        train_rows,
        data.n_users,
        data.n_items,
        config.shard_rows,
        config.min_shards,
        side,
        own_item_out=True,
        drop_user=drop_user,
    )
    return keys, len(train_rows[0]), drop_user


def _implicit_test(config: PrepareConfig, du, di, hdu, hdi, n_users: int, n_items: int, popularity):
    """The implicit test channel: the holdout pairs and `negative_ratio` negatives each."""
    # Test negatives avoid every observed pair (train and holdout); training negatives only avoid
    # training pairs, so the holdout does not leak into training.
    everything = csr_from_pairs(np.concatenate([du, hdu]), np.concatenate([di, hdi]), n_users, n_items)
    rng = np.random.default_rng([config.seed, 2])
    nu, ni = labels.sample_negatives(
        hdu, config.negative_ratio, everything, n_items, config.negative_sampling, popularity, rng
    )
    return (
        np.concatenate([hdu, nu.astype(np.int32)]),
        np.concatenate([hdi, ni.astype(np.int32)]),
        np.concatenate([np.ones(len(hdu), np.float32), np.zeros(len(nu), np.float32)]),
    )


def _in_partitions(config: PrepareConfig, metadata: dict) -> bool:
    """Whether an engine that can (Spark) writes the training channel in its partitions: implicit
    labels with one-hot rows (no side features, history or ID dropout, no cold protocols)."""
    return config.label_mode == "implicit" and not metadata and not config.user_history


def _partitioned(config: PrepareConfig, pairs, data: _Dense, sink: Storage, out_prefix: str):
    """The implicit training channel written by the engine's partitions (spark_shards.py), the test
    channel here: (train shard keys, train rows, test rows, label_stats), as the driver path."""
    from pipeline_steps.prepare import spark_shards

    assert data.lut_u is not None and data.lut_i is not None
    n_users, n_items = data.n_users, data.n_items
    popularity = np.bincount(data.di, minlength=n_items)
    degree = np.bincount(data.du, minlength=n_users)
    rows = spark_shards.train_rows_per_user(degree, n_items, config.negative_ratio, config.negative_draws)
    parts = len(shard_bounds(int(rows.sum()), config.shard_rows, config.min_shards))
    sampling = spark_shards.Sampling(
        n_users=n_users,
        n_items=n_items,
        ratio=config.negative_ratio,
        draws=config.negative_draws,
        mode=config.negative_sampling,
        seed=config.seed,
        shuffle=config.shuffle,
    )
    keys, n_train, negatives = pairs.write(
        sink,
        out_prefix + TRAIN_CHANNEL,
        lut_u=data.lut_u,
        lut_i=data.lut_i,
        starts=spark_shards.user_starts(rows, parts),
        sampling=sampling,
        popularity=popularity,
    )
    test = _implicit_test(config, data.du, data.di, data.hdu, data.hdi, n_users, n_items, popularity)
    positives = n_train - negatives
    stats = {
        "positives": positives,
        "negatives": negatives,
        "mean": _label_mean(positives, n_train),
    } | _negative_stats(config, len(data.du))
    return keys, n_train, test, stats


def _label_mean(positives: int, rows: int) -> float:
    """The mean label as the driver path's `float32 y.mean()` gives it (exact while the float32 sum
    of the ones is, below 2^24 positives; above, that sum rounds and this is the exact mean)."""
    return round(float(np.float32(positives / rows)), 6) if rows else 0.0


def _negative_stats(config: PrepareConfig, n_positives: int) -> dict:
    """The implicit file's sampling and, from decision 0017, the recipe advised for its size.

    `n_positives`: training positives (observed pairs, before the draws repeat them). Prepare cannot
    change the FM's epochs (fixed at deploy time), so it reports and logs the advice, nothing more.
    """
    suggested = suggest(n_positives)
    advised = RECIPES[suggested].prepare_values()
    if advised != {name: getattr(config, name) for name in advised}:
        log.warning(
            "%d training positives x %d FM rows each: decision 0017 suggests topx:recipe %r "
            "(this run: recipe %r, negative_draws %d, negative_ratio %d)",
            n_positives,
            config.negative_draws * (1 + config.negative_ratio),
            suggested,
            config.recipe,
            config.negative_draws,
            config.negative_ratio,
        )
    return {
        "negative_ratio": config.negative_ratio,
        "negative_draws": config.negative_draws,
        "recipe": config.recipe,
        "suggested_recipe": suggested,
    }


def shard_bounds(n: int, shard_rows: int, min_shards: int = 1) -> list[tuple[int, int]]:
    """Row ranges of the shards: at most `shard_rows` rows each, a multiple of `min_shards` shards,
    sizes differing by at most one row.

    With `ShardedByS3Key` each of the n training hosts gets about 1/n of the objects (SageMaker API
    reference, S3DataSource.S3DataDistributionType), so an equal number of equal shards per host
    gives every host the same amount of data, and none is left without any.
    """
    if min_shards > 1 and n < min_shards:
        raise PrepareInputError(
            f"{n} training row(s) cannot fill {min_shards} shards (min_shards = topx:fm.instance_count, "
            "one shard per FM instance at least): lower the instance count or add data"
        )
    if n == 0:
        return []
    count = -(-n // shard_rows)
    count = -(-count // min_shards) * min_shards
    edges = [n * k // count for k in range(count + 1)]
    return list(itertools.pairwise(edges))


def rows_per_shard(data, shard_rows: int, side: features.Features | None) -> int:
    """`shard_rows`, or fewer so that a shard of rows of the mean width holds at most
    SHARD_NONZEROS non-zeros (rows are user_side[u] + item_side[i])."""
    if side is None or len(data[0]) == 0:
        return shard_rows
    width = side.user_side.lengths()[data[0]].mean() + side.item_side.lengths()[data[1]].mean()
    return max(1, min(shard_rows, int(SHARD_NONZEROS // max(width, 1.0))))


def _user_id_dropout(config: PrepareConfig, users: np.ndarray, side: features.Features | None):
    """The training rows without their user one-hot (ID dropout, decision 0018), or None."""
    if side is None:
        return None
    return features.user_id_dropout_rows(users, side.user_side, config.user_id_dropout, config.seed)


def _write_shards(
    sink: Storage,
    prefix: str,
    data,
    n_users: int,
    n_items: int,
    shard_rows: int,
    min_shards: int = 1,
    side: features.Features | None = None,
    *,
    own_item_out: bool = False,
    drop_user: np.ndarray | None = None,
) -> list[str]:
    """Encode and write shards on a few threads (numpy and S3 uploads release the GIL).

    `own_item_out` (the training channel): with the history field, a row's own item is left out of
    its history (decision 0018); the test channel keeps the serving form, the whole history.
    `drop_user` (the training channel, ID dropout): one bool per row, True = no user one-hot.
    """
    bounds = shard_bounds(len(data[0]), rows_per_shard(data, shard_rows, side), min_shards)
    keys = [f"{prefix}part-{k:05d}.rec" for k in range(len(bounds))]

    def one(k: int) -> None:
        sl = slice(*bounds[k])
        if side is None:
            body = outputs.fm_shard(data[0][sl], data[1][sl], data[2][sl], n_users, n_items)
        else:
            body = outputs.fm_shard_features(
                data[0][sl],
                data[1][sl],
                data[2][sl],
                side.user_side,
                side.item_side,
                history_start=side.history_start if own_item_out else None,
                drop_user=None if drop_user is None else drop_user[sl],
            )
        sink.write_bytes(keys[k], body)

    workers = max(1, min(SHARD_WORKERS, len(bounds), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(len(bounds))))  # re-raises the first failure
    return keys


def _csr_npz(indptr: np.ndarray, indices: np.ndarray, n_users: int, n_items: int) -> bytes:
    return outputs.npz_bytes(
        indptr=indptr, indices=indices, shape=np.array([n_users, n_items], dtype=np.int64)
    )


def _input_sha256(objects: list[dict]) -> str:
    text = json.dumps([[o["key"], o["size"], o["etag_or_sha256"]] for o in objects], separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(storage: Storage, obj: ObjectInfo) -> str:
    """ETag if the store has one, else sha256 of the bytes (what `FileParser.parse` returns)."""
    if obj.etag is not None:
        return obj.etag
    digest = hashlib.sha256()
    with storage.open(obj.key) as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _reuse(manifest: dict, config, listed: list[tuple[Storage, ObjectInfo, str]], run_id: str) -> dict:
    current = [
        {"key": o.key, "size": o.size, "etag_or_sha256": fingerprint(s, o), "channel": ch}
        for s, o, ch in listed
    ]
    if (
        manifest.get("input", {}).get("sha256") == _input_sha256(current)
        and manifest.get("config") == config.to_dict()
    ):
        log.info("prepare %s already completed with the same input and config: reusing its manifest", run_id)
        return manifest
    raise PrepareConflictError(
        f"run {run_id!r} was already prepared from a different input or config; its outputs are kept. "
        "Start a new run (new run_id) to prepare the new data."
    )
