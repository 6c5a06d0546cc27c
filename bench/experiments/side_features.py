"""Warm P@10 on ML-100k ua with and without side features (docs/decisions/0018), same everything else.

Per variant: the prepare step's own output for ua.base (train) and ua.test (explicit test split)
with the demo's prepare defaults (implicit labels, PrepareConfig's negatives and seed), plus that
variant's metadata columns (the ML-100k loader's item-features.tsv / user-features.tsv); the local FM
(``pipeline_steps.local_algorithms.fm``) trained with the deployment's FM hyperparameters (cdk.json
``topx:fm.hyperparameters``, feature_dim from the manifest); the k-NN vectors built by repackage's
own code (``knn_vectors`` without features, ``side_vectors`` from the side matrices with them), and
every (user, item) scored exactly by their inner product (the FM score minus a per-user constant:
the ranking the k-NN index returns with faiss.Flat). The user's ua.base items are masked, the top 10
taken, and hits/10 against the user's ua.test items averaged over the users with held-out items.
P@10 is printed after each epoch; the deployment uses the last one.

Variants: ``none`` (one-hots only, today's rows), ``all`` (genres, year, age, gender, occupation),
and with ``--fields`` each field alone. Nothing is tuned per variant. The last stdout line is one
JSON object: every variant's P@10 by epoch, its rows x non-zeros and training seconds, and the
ratio of each variant's final P@10 to ``none``'s, measured in the same run.

    .venv/bin/python bench/experiments/side_features.py [--fields] [--history] [--only NAMES]
        [--split ua|time] [--set FM_HYPERPARAMETER=VALUE ...] [--prepare PREPARE_KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fm_defaults_grid import train_channel

from infra.context import from_cli
from pipeline_steps.common.manifest import Manifest
from pipeline_steps.datasets.movielens import CITATION, load
from pipeline_steps.formats.fm_model import FMModel
from pipeline_steps.local_algorithms import fm
from pipeline_steps.local_algorithms.hyperparameters import parse_fm
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import LocalStorage
from pipeline_steps.repackage.core import SideMatrix, knn_vectors, side_vectors

ROOT = Path(__file__).resolve().parents[2]
TOP_X = 10
SHARD_ROWS = 100_000
USER_FIELDS = {"age": "age:numeric:5", "gender": "gender:categorical", "occupation": "occupation:categorical"}
ITEM_FIELDS = {"genres": "genres:multi:space", "year": "year:numeric:5"}


def variants(each_field: bool, history: bool = False) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {
        "none": {},
        "all": {
            "user_feature_columns": ",".join(USER_FIELDS.values()),
            "item_feature_columns": ",".join(ITEM_FIELDS.values()),
        },
    }
    if each_field:
        out |= {name: {"user_feature_columns": spec} for name, spec in USER_FIELDS.items()}
        out |= {name: {"item_feature_columns": spec} for name, spec in ITEM_FIELDS.items()}
    if history:
        out["history"] = {"user_history": "true"}
        out["all+history"] = {**out["all"], "user_history": "true"}
    return out


def _csr(data: bytes, shape: tuple[int, int]) -> sp.csr_matrix:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return sp.csr_matrix((np.ones(len(z["indices"]), np.float32), z["indices"], z["indptr"]), shape=shape)


def precision_at_x(scores: np.ndarray, seen: sp.csr_matrix, holdout: sp.csr_matrix) -> float:
    scores = np.array(scores, dtype=np.float64)
    coo = seen.tocoo()
    scores[coo.row, coo.col] = -np.inf
    top = np.argpartition(-scores, TOP_X, axis=1)[:, :TOP_X]
    hits = np.asarray(holdout[np.arange(scores.shape[0])[:, None], top].sum(axis=1)).ravel()
    users = np.diff(holdout.indptr) > 0
    return float(hits[users].mean() / TOP_X)


def run_variant(
    name: str,
    columns: dict[str, str],
    src: Path,
    tmp: Path,
    hyper: dict[str, str],
    split: str = "ua",
    prepare_set: dict | None = None,
) -> dict:
    # "ua": ua.base -> ua.test; "time": u.data, each user's last 10 ratings by time held out
    # (prepare's last_n split), a second split to check a setting picked on ua.test
    if split == "ua":
        raw: dict = {"input_prefix": "ua.base", "test_prefix": "ua.test", **columns}
    else:
        raw = {"input_prefix": "u.data", "split": "last_n", "holdout_n": 10, **columns}
    # shards of 100,000 rows: the same rows in the same order, but prepare's encoder and the
    # reader hold one small shard at a time (the history rows are ~200 non-zeros wide)
    raw["shard_rows"] = SHARD_ROWS
    raw.update(prepare_set or {})
    if "user_feature_columns" in columns:
        raw["user_features"] = "user-features.tsv"
    if "item_feature_columns" in columns:
        raw["item_features"] = "item-features.tsv"
    sink = LocalStorage(tmp / name)
    manifest_doc = prepare(
        PrepareConfig.from_dict(raw), source=LocalStorage(src), sink=sink, run_id=name, out_prefix="prepared/"
    )
    manifest = Manifest.from_json(manifest_doc, key=f"{name}/manifest.json")
    n_users, n_items = manifest.n_users, manifest.n_items
    X, y = train_channel(sink, manifest.train_shards)
    seen = _csr(sink.read_bytes(manifest.file_key("seen")), (n_users, n_items))
    holdout = _csr(sink.read_bytes(manifest.file_key("holdout")), (n_users, n_items))
    sides = None
    if manifest.has_features:
        sides = [
            SideMatrix(
                sink.read_bytes(manifest.file_key(f)), name=f, n_rows=n, feature_dim=manifest.feature_dim
            )
            for f, n in (("user_side", n_users), ("item_side", n_items))
        ]
    config = parse_fm({**hyper, "feature_dim": str(manifest.feature_dim)})
    by_epoch: dict[str, float] = {}

    def on_params(epoch: int, params: fm.FMParams) -> None:
        model = FMModel(params.w0, params.w, params.V, manifest.feature_dim, {})
        items, _, users = (
            side_vectors(model, manifest, *sides) if sides is not None else knn_vectors(model, manifest)
        )
        scores = users.astype(np.float64) @ items.astype(np.float64).T
        by_epoch[str(epoch)] = round(precision_at_x(scores, seen, holdout), 4)
        print(f"  {name} epoch {epoch}: P@10 {by_epoch[str(epoch)]:.4f}", file=sys.stderr, flush=True)

    nnz_per_row, nnz, positives = round(X.nnz / max(X.shape[0], 1), 3), int(X.nnz), int((y == 1).sum())
    started = time.perf_counter()
    fm.train(X, y, config, on_params=on_params)
    seconds = time.perf_counter() - started
    shutil.rmtree(tmp / name, ignore_errors=True)
    return {
        "variant": name,
        "split": split,
        "hyperparameters": hyper,
        "prepare": prepare_set or {},
        "columns": columns,
        "feature_dim": manifest.feature_dim,
        "train_rows": int(X.shape[0]),
        "positive_rows": positives,
        "nnz_per_row": nnz_per_row,
        "nnz": nnz,
        "features": {k: v for k, v in manifest.features.items() if k != "fields"},
        "p_at_10": by_epoch,
        "final": by_epoch[str(config.epochs)],
        "train_seconds": round(seconds, 1),  # includes the per-epoch scoring
        # the process's peak resident memory so far (Linux: KiB), for sizing a run
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fields", action="store_true", help="also each field alone")
    ap.add_argument("--history", action="store_true", help="also the history field, alone and with all")
    ap.add_argument("--only", default="", help="comma-separated variant names to run (default: all)")
    ap.add_argument("--split", choices=("ua", "time"), default="ua")
    ap.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="override an FM hyperparameter"
    )
    ap.add_argument(
        "--prepare",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a topx:prepare key (VALUE read as JSON when it parses, e.g. negative_ratio=8)",
    )
    args = ap.parse_args()
    prepare_set = {k: from_cli(v) for k, v in (item.split("=", 1) for item in args.prepare)}
    hyper = json.loads((ROOT / "cdk.json").read_text())["context"]["topx:fm"]["hyperparameters"]
    hyper = {**hyper, **dict(item.split("=", 1) for item in args.set)}
    chosen = variants(args.fields, args.history)
    if args.only:
        chosen = {k: chosen[k] for k in args.only.split(",")}
    print(CITATION)
    ml = load()
    assert ml.item_features is not None and ml.user_features is not None
    tmp = Path(tempfile.mkdtemp(prefix="side-features-"))
    results = []
    try:
        src = tmp / "ml-100k"
        src.mkdir()
        for path in (ml.u_data, ml.ua_base, ml.ua_test, ml.item_features, ml.user_features):
            shutil.copy(path, src / path.name)
        for name, columns in chosen.items():
            res = run_variant(name, columns, src, tmp, hyper, args.split, prepare_set)
            results.append(res)
            curve = " ".join(f"{v:.3f}" for v in res["p_at_10"].values())
            print(
                f"{name:10s} dim {res['feature_dim']:5d}  {res['train_rows']:,d} rows x "
                f"{res['nnz_per_row']} nnz  P@10 by epoch {curve}  ({res['train_seconds']:.0f}s)",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = results[0]["final"]  # the first variant run (none unless --only says otherwise)
    print(
        json.dumps(
            {
                "dataset": "ml-100k ua.base -> ua.test"
                if args.split == "ua"
                else "ml-100k u.data, last 10 by time per user held out",
                "metric": "precision@10, ua.base items masked, mean over users with ua.test items",
                "hyperparameters": hyper,
                "prepare": prepare_set,
                "variants": results,
                "ratio_vs_first": {r["variant"]: round(r["final"] / base, 4) for r in results},
            }
        )
    )


if __name__ == "__main__":
    main()
