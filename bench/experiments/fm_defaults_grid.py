"""Grid behind the default FM hyperparameters (docs/decisions/0004): P@10 on ML-100k by epoch.

For each grid row: the prepare step's own output for ua.base (train) and ua.test (explicit test
split), label mode implicit with R = ``negative_ratio`` uniform negatives per positive in each of
D = ``negative_draws`` draws, seed = prepare's ``seed`` (default 42, PrepareConfig's); the train
shards are read back with ``recordio.read_sparse`` and the local FM
(``pipeline_steps.local_algorithms.fm``) is trained with the hyperparameters given as SageMaker
strings (``parse_fm``; unlisted ones at SageMaker's defaults). After each listed epoch every
(user, item) pair is scored by w_i + <V_u, V_i> (the FM score minus per-user constants), the
user's ua.base items are masked (prepare's seen.npz), the top 10 are taken and hits/10 against the
user's ua.test items (prepare's holdout.npz) is averaged over the users with held-out items.
Most-popular (prepare's popularity.npy, the evaluate step's baseline) is printed for reference.

A row is ``R,D,factors_lr,linear_lr`` plus optional ``key=value`` items: any FM hyperparameter
(SageMaker name, e.g. ``factors_wd=0.0001``, ``num_factors=32``, ``mini_batch_size=5000``),
``seed=N`` (prepare's seed) or ``negative_sampling=popularity``. One prepared file is built per
(R, D, seed, sampling) in a temporary directory (deleted at exit; nothing is written to the
repository). The last stdout line is one JSON object with every row's P@10 by epoch.

    .venv/bin/python bench/experiments/fm_defaults_grid.py --grid record --epochs 4,6,8,10
    .venv/bin/python bench/experiments/fm_defaults_grid.py --rows 4,4,0.001,0.01 \\
        --rows 4,4,0.001,0.01,seed=7 --epochs 6,7,8,9,10
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline_steps.common.runio import Csr
from pipeline_steps.datasets.movielens import CITATION, load
from pipeline_steps.evaluate.metrics import baseline_metrics
from pipeline_steps.formats import recordio
from pipeline_steps.local_algorithms import fm
from pipeline_steps.local_algorithms.hyperparameters import parse_fm
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import LocalStorage

TOP_X = 10
PREPARE_KEYS = ("seed", "negative_sampling")
# Fixed for every row: SageMaker's binary classifier with the demo's factors and batch size.
BASE_HYPERPARAMETERS = {"predictor_type": "binary_classifier", "num_factors": "64", "mini_batch_size": "1000"}

# Rows of the grid in docs/decisions/0004 ("Revision": the grid on the prepare step's output).
PRESETS = {
    "record": [
        "3,4,0.002,0.01",
        "3,4,0.002,0.01,factors_wd=0.0001",
        "3,4,0.002,0.01,factors_wd=0.001",
        "3,4,0.001,0.01",
        "3,4,0.001,0.01,seed=7",
        "6,2,0.002,0.01",
        "12,1,0.002,0.01",
        "4,4,0.001,0.01",
        "4,4,0.001,0.01,seed=7",
    ],
    # The first grid of decision 0004 ("Experiment"), on the nearest prepare output: that grid put
    # each positive once with D x R negatives (1:12 for R=3, D=4), i.e. prepare's R*D negatives in
    # one draw. Not the same file (the original used raw-id columns and other random numbers).
    "original": [
        "3,1,0.0001,0.001",
        "3,1,0.001,0.01",
        "3,1,0.003,0.01",
        "3,1,0.01,0.01",
        "3,1,0.003,0.01,factors_wd=0.001",
        "3,1,0.003,0.01,factors_wd=0.0001",
        "12,1,0.003,0.01",
        "12,1,0.003,0.01,factors_wd=0.00003",
        "12,1,0.01,0.03,mini_batch_size=5000,factors_wd=0.00003",
        "12,1,0.002,0.01",
        "12,1,0.002,0.01,seed=1",
        "12,1,0.003,0.01,num_factors=32",
        "12,1,0.002,0.01,num_factors=32",
        "12,1,0.003,0.003",
        "12,1,0.005,0.01",
    ],
    # The chosen default and the setting it replaced.
    "default": ["4,4,0.001,0.01", "4,4,0.001,0.01,seed=7", "3,4,0.002,0.01"],
}


@dataclass
class Row:
    spec: str
    ratio: int
    draws: int
    prepare: dict = field(default_factory=dict)  # seed / negative_sampling overrides
    hyperparameters: dict = field(default_factory=dict)  # SageMaker strings (without feature_dim/epochs)

    @property
    def data_key(self) -> tuple:
        return (self.ratio, self.draws, tuple(sorted(self.prepare.items())))


def parse_row(spec: str) -> Row:
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if len(parts) < 4 or any("=" in p for p in parts[:4]):
        raise argparse.ArgumentTypeError(f"row {spec!r}: expected R,D,factors_lr,linear_lr[,key=value...]")
    try:
        ratio, draws = int(parts[0]), int(parts[1])
        float(parts[2]), float(parts[3])
    except ValueError:
        raise argparse.ArgumentTypeError(f"row {spec!r}: R, D must be integers, the rates numbers") from None
    row = Row(spec, ratio, draws)
    row.hyperparameters = dict(BASE_HYPERPARAMETERS, factors_lr=parts[2], linear_lr=parts[3])
    for item in parts[4:]:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"row {spec!r}: {item!r} is not key=value")
        if key in PREPARE_KEYS:
            row.prepare[key] = value
        elif key in ("feature_dim", "epochs"):
            raise argparse.ArgumentTypeError(f"row {spec!r}: {key} is set by the script")
        else:
            row.hyperparameters[key] = value
    return row


@dataclass
class Prepared:
    X: sp.csr_matrix
    y: np.ndarray
    n_users: int
    n_items: int
    seen: sp.csr_matrix
    holdout: sp.csr_matrix
    popularity: np.ndarray
    seconds: float


def train_channel(sink: LocalStorage, keys: list[str]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The FM train channel's shards read back into one CSR matrix and its float32 labels."""
    parts = [recordio.read_sparse(sink.read_bytes(key)) for key in keys]
    X = sp.vstack([sp.csr_matrix((d, i, p), shape=s) for d, i, p, s, _ in parts], format="csr")
    return X, np.concatenate([labels for *_, labels in parts]).astype(np.float32)


def _csr(data: bytes, n_users: int, n_items: int) -> sp.csr_matrix:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        indptr, indices = z["indptr"], z["indices"]
    ones = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((ones, indices, indptr), shape=(n_users, n_items))


def prepare_data(row: Row, src: Path, tmp: Path) -> Prepared:
    """The prepare step's output for ua.base/ua.test with this row's R, D and prepare overrides."""
    started = time.perf_counter()
    config = PrepareConfig.from_dict(
        {
            "input_prefix": "ua.base",
            "test_prefix": "ua.test",
            "label_mode": "implicit",
            "negative_ratio": row.ratio,
            "negative_draws": row.draws,
            **row.prepare,
        }
    )
    out = tmp / "-".join(
        [f"r{row.ratio}", f"d{row.draws}", *(f"{k}{v}" for k, v in sorted(row.prepare.items()))]
    )
    sink = LocalStorage(out)
    manifest = prepare(config, source=LocalStorage(src), sink=sink, run_id="grid", out_prefix="prepared/")
    n_users, n_items = manifest["n_users"], manifest["n_items"]
    X, y = train_channel(sink, manifest["train_shards"])
    files = manifest["files"]
    prepared = Prepared(
        X=X,
        y=y,
        n_users=n_users,
        n_items=n_items,
        seen=_csr(sink.read_bytes(files["seen"]), n_users, n_items),
        holdout=_csr(sink.read_bytes(files["holdout"]), n_users, n_items),
        popularity=np.load(io.BytesIO(sink.read_bytes(files["popularity"]))),
        seconds=time.perf_counter() - started,
    )
    shutil.rmtree(out, ignore_errors=True)  # everything needed is in memory now
    return prepared


def precision_at_x(scores: np.ndarray, data: Prepared) -> tuple[float, int]:
    """Mean hits/TOP_X over users with held-out items; ua.base items masked. Returns (P@TOP_X, users)."""
    scores = np.array(scores, dtype=np.float64)
    seen = data.seen.tocoo()
    scores[seen.row, seen.col] = -np.inf
    top = np.argpartition(-scores, TOP_X, axis=1)[:, :TOP_X]
    hits = np.asarray(data.holdout[np.arange(scores.shape[0])[:, None], top].sum(axis=1)).ravel()
    users = np.diff(data.holdout.indptr) > 0
    return float(hits[users].mean() / TOP_X), int(users.sum())


def fm_scores(params: fm.FMParams, n_users: int) -> np.ndarray:
    """w_i + <V_u, V_i> for every (user, item): the FM score of the pair minus per-user constants."""
    V, w = params.V, params.w
    return V[:n_users] @ V[n_users:].T + w[n_users:][None, :]


def run_row(row: Row, data: Prepared, epochs: list[int]) -> dict:
    hyper = dict(row.hyperparameters, feature_dim=str(data.n_users + data.n_items), epochs=str(max(epochs)))
    config = parse_fm(hyper)
    found: dict[str, float] = {}

    def on_params(epoch: int, params: fm.FMParams) -> None:
        if epoch in epochs:
            found[str(epoch)] = precision_at_x(fm_scores(params, data.n_users), data)[0]

    started, cpu = time.perf_counter(), time.process_time()
    fm.train(data.X, data.y, config, on_params=on_params)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return {
        "row": row.spec,
        "negative_ratio": row.ratio,
        "negative_draws": row.draws,
        "prepare": {"seed": PrepareConfig().seed, **row.prepare},
        "hyperparameters": hyper,
        "train_rows": int(data.X.shape[0]),
        "p_at_10": found,  # full precision; rounded when printed (JSON: 4 digits, table: 3)
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="presets: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()),
    )
    ap.add_argument(
        "--rows",
        action="append",
        type=parse_row,
        default=[],
        metavar="R,D,FACTORS_LR,LINEAR_LR[,KEY=VALUE...]",
        help="one grid row (repeatable), e.g. 4,4,0.001,0.01 or 3,4,0.002,0.01,factors_wd=0.0001",
    )
    ap.add_argument("--grid", choices=sorted(PRESETS), help="a named set of rows (added before --rows)")
    ap.add_argument(
        "--epochs", default="4,6,8,10", help="epochs after which P@10 is measured (default 4,6,8,10)"
    )
    args = ap.parse_args()
    rows = [parse_row(s) for s in PRESETS.get(args.grid or "", [])] + args.rows
    if not rows:
        ap.error("give --grid or at least one --rows")
    try:
        epochs = sorted({int(e) for e in args.epochs.split(",") if e.strip()})
    except ValueError:
        ap.error(f"--epochs {args.epochs!r}: expected integers separated by commas")
    if not epochs or epochs[0] < 1:
        ap.error("--epochs: at least one epoch, all >= 1")

    print(CITATION)
    ml = load()
    tmp = Path(tempfile.mkdtemp(prefix="fm-defaults-grid-"))
    results, baseline = [], None
    load_before = os.getloadavg()[0]
    try:
        src = tmp / "ml-100k"
        src.mkdir()
        shutil.copy(ml.ua_base, src / "ua.base")
        shutil.copy(ml.ua_test, src / "ua.test")
        cache: dict[tuple, Prepared] = {}
        header = f"{'row':44s} {'train rows':>10s}  " + "  ".join(f"{'ep' + str(e):>6s}" for e in epochs)
        for row in rows:
            if row.data_key not in cache:
                cache.clear()  # one prepared file in memory at a time (rows are usually grouped)
                cache[row.data_key] = prepare_data(row, src, tmp)
            data = cache[row.data_key]
            if baseline is None:
                # The evaluate step's baseline (ties by item index), same mask and held-out items.
                metrics, n_eval = baseline_metrics(
                    data.popularity,
                    Csr(indptr=data.seen.indptr.astype(np.int64), indices=data.seen.indices),
                    Csr(indptr=data.holdout.indptr.astype(np.int64), indices=data.holdout.indices),
                    x=TOP_X,
                )
                baseline = metrics["precision"]
                print(f"most-popular P@10 {baseline:.4f} over {n_eval} users; {data.n_items} items")
                print(header, flush=True)
            res = run_row(row, data, epochs)
            cells = "  ".join(f"{res['p_at_10'][str(e)]:6.3f}" for e in epochs)
            res["p_at_10"] = {e: round(v, 4) for e, v in res["p_at_10"].items()}
            results.append(res)
            print(f"{row.spec:44s} {res['train_rows']:>10,d}  {cells}   ({res['seconds']:.0f}s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "dataset": "ml-100k ua.base -> ua.test",
                "metric": "precision@10, ua.base items masked, mean over users with ua.test items",
                "epochs": epochs,
                "most_popular_p_at_10": round(baseline or 0.0, 4),
                "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "rows": results,
            }
        )
    )


if __name__ == "__main__":
    main()
