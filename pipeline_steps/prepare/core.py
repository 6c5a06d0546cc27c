"""Prepare step core: raw interaction files -> FM channels, id maps, seen/holdout, popularity, manifest.

Contract (docs/contracts.md): everything is written under `out_prefix` (`runs/<run_id>/prepared/`
in the bucket), `manifest.json` last. Re-running a completed run with the same input fingerprint
and config returns the existing manifest without writing; with a different input or config it
raises `PrepareConflictError` (a completed run's outputs are never overwritten). A run that has
no manifest is incomplete: its leftovers are deleted and everything is rewritten.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline_steps.common.events import PrepareResult
from pipeline_steps.common.layout import MANIFEST_NAME, PREPARED_FILES, TEST_CHANNEL, TRAIN_CHANNEL
from pipeline_steps.common.manifest import MANIFEST_VERSION, Manifest
from pipeline_steps.prepare import interactions as rows
from pipeline_steps.prepare import labels, outputs
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.ids import IdRegistry
from pipeline_steps.prepare.layout import PrepareInputError
from pipeline_steps.prepare.parse import FileParser, Interactions, ParseStats
from pipeline_steps.prepare.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)
SHARD_WORKERS = 4  # bounded: each in-flight shard holds its encoded bytes in memory

__all__ = ["PrepareConflictError", "PrepareInputError", "prepare", "step_output"]


class PrepareConflictError(RuntimeError):
    """The run already has a completed prepare from a different input or config."""


@dataclass
class _Parsed:
    inter: Interactions
    stats: ParseStats
    objects: list[dict]


def prepare(
    config: PrepareConfig,
    *,
    source: Storage,
    sink: Storage,
    run_id: str,
    out_prefix: str,
    test_source: Storage | None = None,
    bucket: str = "",
) -> dict:
    """Run the prepare step; returns the manifest (a dict, as written to `manifest.json`).

    The step, in order: list the inputs; reuse a completed run (or clear an incomplete one);
    parse; apply the rules (latest row per pair, minimum counts); split off the holdout; map ids
    to dense indices; label and sample negatives; write the channels and files; the manifest last.
    """
    clock = _Clock()
    if out_prefix and not out_prefix.endswith("/"):
        out_prefix += "/"
    test_source = test_source or source
    objects, test_objects = _list_inputs(config, source, test_source, sink, out_prefix)
    manifest_key = out_prefix + MANIFEST_NAME
    existing = sink.read_bytes(manifest_key)
    if existing is not None:
        return _reuse(json.loads(existing), config, source, objects, test_source, test_objects, run_id)
    stale = [o.key for o in sink.list(out_prefix)] if out_prefix else []
    if stale:
        log.info("deleting %d leftover object(s) of an incomplete prepare under %s", len(stale), out_prefix)
        sink.delete(stale)

    users, items = IdRegistry("user"), IdRegistry("item")
    train = _parse_all(config, source, objects, users, items, "train")
    test = _parse_all(config, test_source, test_objects, users, items, "test") if test_objects else None
    clock.lap("parse")
    log.info("parsed %d rows (%d valid)", train.stats.rows_read, train.stats.rows_valid)
    kept = _apply_rules(config, train, n_users=len(users), n_items=len(items))
    data = _densify(config, kept, test, users, items)
    clock.lap("rules")
    train_rows, test_rows, label_stats = _labelled(
        config, data.du, data.di, data.r, data.hdu, data.hdi, data.hr, data.n_users, data.n_items
    )
    clock.lap("labels")
    files = {name: out_prefix + leaf for name, leaf in PREPARED_FILES.items()}
    train_shards = _write_shards(
        sink,
        out_prefix + TRAIN_CHANNEL,
        train_rows,
        data.n_users,
        data.n_items,
        config.shard_rows,
        config.min_shards,
    )
    test_shards = _write_shards(
        sink, out_prefix + TEST_CHANNEL, test_rows, data.n_users, data.n_items, config.shard_rows
    )
    _write_files(sink, files, data)
    counts = {
        "rows_read": train.stats.rows_read,
        "rows_valid": train.stats.rows_valid,
        "bad_rows": train.stats.bad_rows,
        "duplicates": kept.duplicates,
        "filtered": kept.filtered,
        "train_rows": len(train_rows[0]),
        "test_rows": len(test_rows[0]),
        "holdout_pairs": len(data.hdu),
        "train_interactions": len(data.du),
    }
    report = {
        "run_id": run_id,
        "counts": counts,
        "bad_rows_by_reason": dict(sorted(train.stats.bad.items())),
        "examples": train.stats.examples,
        "files": train.stats.files,
        "split": config.effective_split,
        "test": ({"parse": _stats_dict(test.stats), **data.test_info} if test else data.test_info),
        "label_mode": config.label_mode,
        "label_stats": label_stats,
    }
    sink.write_bytes(files["report"], outputs.json_bytes(report))
    all_objects = train.objects + (test.objects if test else [])
    manifest = Manifest(
        version=MANIFEST_VERSION,
        run_id=run_id,
        bucket=bucket,
        n_users=data.n_users,
        n_items=data.n_items,
        feature_dim=data.n_users + data.n_items,
        label_mode=config.label_mode,
        label_stats=label_stats,
        counts=counts,
        train_shards=train_shards,
        test_shards=test_shards,
        files=files,
        input={"objects": all_objects, "sha256": _input_sha256(all_objects)},
        config=config.to_dict(),
    ).to_json()
    sink.write_bytes(manifest_key, outputs.json_bytes(manifest))  # last: its presence = completed
    clock.lap("write")
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
class _Kept:
    """Training interactions after the rules (registry indices), and what the rules removed."""

    u: np.ndarray
    i: np.ndarray
    r: np.ndarray
    ts: np.ndarray
    duplicates: int
    filtered: int


def _apply_rules(config: PrepareConfig, train: _Parsed, *, n_users: int, n_items: int) -> _Kept:
    """The latest row of each (user, item) pair wins; then the minimum-count filters until stable."""
    u, i, r, ts = train.inter.arrays()
    if config.label_mode in ("binary", "regression") and np.isnan(r).any():
        no_rating = [f["key"] for f in train.stats.files if f.get("columns", {}).get("rating") is None]
        raise PrepareInputError(
            f"label_mode {config.label_mode!r} needs a rating column; none found in {no_rating[:5]}"
        )
    n_valid = len(u)
    keep = rows.latest_per_pair(u, i, ts, n_items)
    u, i, r, ts = u[keep], i[keep], r[keep], ts[keep]
    keep_counts = rows.filter_min_counts(
        u, i, n_users, n_items, config.min_user_interactions, config.min_item_interactions
    )
    if len(keep_counts) == 0:
        raise PrepareInputError(
            f"no interactions left after the minimum-count filters (user >= {config.min_user_interactions}, "
            f"item >= {config.min_item_interactions})"
        )
    return _Kept(
        u=u[keep_counts],
        i=i[keep_counts],
        r=r[keep_counts],
        ts=ts[keep_counts],
        duplicates=n_valid - len(keep),
        filtered=len(u) - len(keep_counts),
    )


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

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _densify(
    config: PrepareConfig, kept: _Kept, test: _Parsed | None, users: IdRegistry, items: IdRegistry
) -> _Dense:
    """Split off the holdout, then map the ids that have training rows to dense indices.

    Held-out rows of users/items that only occur in the holdout cannot be scored by the model and
    are dropped (counted as `holdout_unscorable`).
    """
    u, i, r = kept.u, kept.i, kept.r
    test_info: dict = {}
    split = config.effective_split
    if split == "last_n":
        held = rows.last_n_split(u, kept.ts, len(users), config.holdout_n)
        hu, hi, hr = u[held], i[held], r[held]
        u, i, r = u[~held], i[~held], r[~held]
    elif split == "explicit":
        assert test is not None
        hu, hi, hr, test_info = _explicit_test(test, u, i, len(users), len(items))
        if config.label_mode in ("binary", "regression") and np.isnan(hr).any():
            raise PrepareInputError(
                f"label_mode {config.label_mode!r} needs a rating column in the test file(s)"
            )
    else:
        hu, hi, hr = (np.empty(0, dtype=np.int64),) * 2 + (np.empty(0),)
    lut_u, user_ids = rows.dense_map(u, users)
    lut_i, item_ids = rows.dense_map(i, items)
    hdu, hdi = lut_u[hu], lut_i[hi]
    scorable = (hdu >= 0) & (hdi >= 0)
    test_info["holdout_unscorable"] = int((~scorable).sum())
    return _Dense(
        du=lut_u[u],
        di=lut_i[i],
        r=r,
        hdu=hdu[scorable],
        hdi=hdi[scorable],
        hr=hr[scorable],
        user_ids=user_ids,
        item_ids=item_ids,
        test_info=test_info,
    )


def _write_files(sink: Storage, files: dict[str, str], data: _Dense) -> None:
    """Id maps, seen and holdout CSRs, popularity (docs/contracts.md)."""
    n_users, n_items = data.n_users, data.n_items
    sink.write_bytes(files["users"], outputs.ids_json_bytes(data.user_ids))
    sink.write_bytes(files["items"], outputs.ids_json_bytes(data.item_ids))
    seen_ptr, seen_idx = rows.csr_from_pairs(data.du, data.di, n_users, n_items)
    sink.write_bytes(files["seen"], _csr_npz(seen_ptr, seen_idx, n_users, n_items))
    holdout = rows.csr_from_pairs(data.hdu, data.hdi, n_users, n_items)
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


def _parse_all(config, storage, objects: list[ObjectInfo], users, items, channel: str) -> _Parsed:
    stats = ParseStats()
    inter = Interactions()
    parser = FileParser(config, users, items, stats)
    fingerprints = []
    for obj in objects:
        fp = parser.parse(storage, obj, inter)
        fingerprints.append({"key": obj.key, "size": obj.size, "etag_or_sha256": fp, "channel": channel})
    _check_quality(config, stats, channel)
    return _Parsed(inter, stats, fingerprints)


def _check_quality(config: PrepareConfig, stats: ParseStats, channel: str) -> None:
    examples = "; ".join(stats.examples[:10])
    by_reason = ", ".join(f"{k}: {v}" for k, v in sorted(stats.bad.items()))
    if stats.rows_valid == 0:
        keys = [f["key"] for f in stats.files]
        where = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise PrepareInputError(
            f"no valid rows in the {channel} input {where} ({stats.rows_read} row(s) read; "
            f"{by_reason or 'no data lines'})" + (f"; e.g. {examples}" if examples else "")
        )
    fraction = stats.bad_rows / max(stats.rows_read, 1)
    if fraction > config.max_bad_fraction:
        raise PrepareInputError(
            f"{stats.bad_rows} of {stats.rows_read} {channel} rows are bad ({fraction:.2%} > "
            f"max_bad_fraction {config.max_bad_fraction:.2%}): {by_reason}; e.g. {examples}"
        )


def _stats_dict(stats: ParseStats) -> dict:
    return {
        "rows_read": stats.rows_read,
        "rows_valid": stats.rows_valid,
        "bad_rows": stats.bad_rows,
        "bad_rows_by_reason": dict(sorted(stats.bad.items())),
        "examples": stats.examples,
        "files": stats.files,
    }


def _explicit_test(test: _Parsed, u, i, n_users: int, n_items: int):
    tu, ti, tr, tts = test.inter.arrays()
    keep = rows.latest_per_pair(tu, ti, tts, n_items)
    info = {"duplicates": len(tu) - len(keep)}
    tu, ti, tr = tu[keep], ti[keep], tr[keep]
    # A test pair also present in training can never be recommended (seen items are excluded).
    train_pairs = np.sort(u.astype(np.int64) * n_items + i)
    codes = tu.astype(np.int64) * n_items + ti
    pos = np.minimum(np.searchsorted(train_pairs, codes), len(train_pairs) - 1)
    overlap = train_pairs[pos] == codes
    info["in_train"] = int(overlap.sum())
    return tu[~overlap], ti[~overlap], tr[~overlap], info


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
        train_seen = rows.csr_from_pairs(du, di, n_users, n_items)
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
        # Test negatives avoid every observed pair (train and holdout); training negatives only
        # avoid training pairs, so the holdout does not leak into training.
        everything = rows.csr_from_pairs(
            np.concatenate([du, hdu]), np.concatenate([di, hdi]), n_users, n_items
        )
        rng = np.random.default_rng([seed, 2])
        nu, ni = labels.sample_negatives(
            hdu, config.negative_ratio, everything, n_items, config.negative_sampling, popularity, rng
        )
        test = (
            np.concatenate([hdu, nu.astype(np.int32)]),
            np.concatenate([hdi, ni.astype(np.int32)]),
            np.concatenate([np.ones(len(hdu), np.float32), np.zeros(len(nu), np.float32)]),
        )
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
        stats |= {"negative_ratio": config.negative_ratio, "negative_draws": config.negative_draws}
    return train, test, stats


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


def _write_shards(
    sink: Storage, prefix: str, data, n_users: int, n_items: int, shard_rows: int, min_shards: int = 1
) -> list[str]:
    """Encode and write shards on a few threads (numpy and S3 uploads release the GIL)."""
    bounds = shard_bounds(len(data[0]), shard_rows, min_shards)
    keys = [f"{prefix}part-{k:05d}.rec" for k in range(len(bounds))]

    def one(k: int) -> None:
        sl = slice(*bounds[k])
        sink.write_bytes(keys[k], outputs.fm_shard(data[0][sl], data[1][sl], data[2][sl], n_users, n_items))

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


def _reuse(manifest: dict, config, source, objects, test_source, test_objects, run_id: str) -> dict:
    listed = [(source, o, "train") for o in objects] + [(test_source, o, "test") for o in test_objects]
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
