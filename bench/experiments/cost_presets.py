"""Quality/cost grid behind the cost-aware presets (docs/decisions/0017): negative draws x ratio x epochs.

Quality side, MovieLens 100k ua.base -> ua.test (the demo's protocol): for each grid row the
prepare step's own output (label mode implicit, D = ``negative_draws`` draws of R =
``negative_ratio`` uniform negatives per positive, prepare's seed 42) is read back and the local FM
(``pipeline_steps.local_algorithms.fm``, the trainer the local runner uses) is trained once with
the deployed hyperparameters (``cdk.json`` ``topx:fm.hyperparameters``; a row may override
``factors_lr``). After each listed epoch every (user, item) pair is scored by w_i + <V_u, V_i>
(what the k-NN index ranks: the FM score minus per-user constants), ua.base items are masked, the
best 10 are taken best-first and fed to the evaluate step's own ``MetricAccumulator``
(precision@10 and NDCG@10 over the users with ua.test items). Most-popular through the evaluate
step's ``baseline_metrics``.

Cost side: FM rows per epoch (D x (1 + R) x positives: the file SageMaker FM reads once per
epoch), rows x epochs (the cost proxy: SageMaker FM time is linear in it), local training seconds
(wall and CPU). The same rows are also prepared from a synthetic power-law file
(``bench/prepare.py``'s generator, last-10 split) and trained for one epoch, for rows/s at a larger
feature_dim; its quality is not reported (its users have no structure).

A row is ``D,R``, ``D,R,factors_lr`` or ``D,R,factors_lr,seed`` (prepare's seed; ``-`` for the
deployed factors_lr). Prepared files live in a temporary directory deleted at
exit; nothing is written to the repository. The last stdout line is one JSON object.

``--recipes`` replaces the default rows by one row per named recipe
(``pipeline_steps/common/recipes.py``), evaluates each at its own epochs and adds a ``recipes``
summary (P@10, NDCG@10, rows x epochs, cost relative to quality) to the JSON.

    .venv/bin/python bench/experiments/cost_presets.py
    .venv/bin/python bench/experiments/cost_presets.py --rows 1,4 --rows 4,4 --epochs 2,4,8 \\
        --synthetic-rows 0
    .venv/bin/python bench/experiments/cost_presets.py --recipes --epochs 3,6,8 --rows 4,4,-,7
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "bench" / "experiments"))

from fm_defaults_grid import fm_scores, train_channel  # noqa: E402  (the grid's scoring and reader)
from prepare import synthetic  # noqa: E402  (bench/prepare.py's power-law generator)

from pipeline_steps.common.recipes import RECIPES  # noqa: E402
from pipeline_steps.common.runio import Csr  # noqa: E402
from pipeline_steps.datasets.movielens import CITATION, load  # noqa: E402
from pipeline_steps.evaluate.metrics import MetricAccumulator, baseline_metrics  # noqa: E402
from pipeline_steps.local_algorithms import fm  # noqa: E402
from pipeline_steps.local_algorithms.hyperparameters import parse_fm  # noqa: E402
from pipeline_steps.prepare.config import PrepareConfig  # noqa: E402
from pipeline_steps.prepare.core import prepare  # noqa: E402
from pipeline_steps.prepare.storage import LocalStorage  # noqa: E402

TOP_X = 10
DEFAULT_EPOCHS = "1,2,3,4,6,8,12,16"
# Full D x R grid at the deployed factors_lr, plus the cheap D=1 rows at higher rates.
DEFAULT_ROWS = [f"{d},{r}" for d in (1, 2, 4) for r in (1, 2, 4)] + [
    f"1,{r},{lr}" for r in (1, 4) for lr in ("0.002", "0.004")
]


def deployed_hyperparameters() -> dict[str, str]:
    """cdk.json's topx:fm.hyperparameters (what a deployment and the local runner train with)."""
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return {k: str(v) for k, v in context["topx:fm"]["hyperparameters"].items()}


@dataclass(frozen=True)
class Row:
    spec: str
    draws: int
    ratio: int
    factors_lr: str | None  # None = the deployed value
    seed: int | None = None  # prepare's seed; None = PrepareConfig's default

    @property
    def multiplier(self) -> int:
        """FM rows per training positive: D draws x (the positive + R negatives)."""
        return self.draws * (1 + self.ratio)


def parse_row(spec: str) -> Row:
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) not in (2, 3, 4):
        raise argparse.ArgumentTypeError(f"row {spec!r}: expected D,R[,factors_lr[,seed]]")
    try:
        draws, ratio = int(parts[0]), int(parts[1])
        lr = parts[2] if len(parts) > 2 and parts[2] != "-" else None
        if lr is not None:
            float(lr)
        seed = int(parts[3]) if len(parts) == 4 else None
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"row {spec!r}: D, R and seed must be integers, factors_lr a number"
        ) from None
    if draws < 1 or ratio < 1:
        raise argparse.ArgumentTypeError(f"row {spec!r}: D and R must be >= 1")
    return Row(spec, draws, ratio, lr, seed)


@dataclass
class Prepared:
    X: sp.csr_matrix
    y: np.ndarray
    n_users: int
    n_items: int
    positives: int
    seen: Csr
    holdout: Csr
    popularity: np.ndarray
    seconds: float


def _csr(data: bytes) -> Csr:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return Csr(indptr=z["indptr"].astype(np.int64), indices=z["indices"])


def prepare_data(
    settings: dict, draws: int, ratio: int, src: Path, out: Path, seed: int | None = None
) -> Prepared:
    """The prepare step's output for these settings with D draws of R negatives, read into memory."""
    started = time.perf_counter()
    config = PrepareConfig.from_dict(
        {
            **settings,
            "label_mode": "implicit",
            "negative_ratio": ratio,
            "negative_draws": draws,
            **({} if seed is None else {"seed": seed}),
        }
    )
    sink = LocalStorage(out)
    manifest = prepare(config, source=LocalStorage(src), sink=sink, run_id="cost", out_prefix="prepared/")
    seconds = time.perf_counter() - started
    n_users, n_items = manifest["n_users"], manifest["n_items"]
    X, y = train_channel(sink, manifest["train_shards"])
    files = manifest["files"]
    prepared = Prepared(
        X=X,
        y=y,
        n_users=n_users,
        n_items=n_items,
        positives=int((y == 1).sum()) // draws,
        seen=_csr(sink.read_bytes(files["seen"])),
        holdout=_csr(sink.read_bytes(files["holdout"])),
        popularity=np.load(io.BytesIO(sink.read_bytes(files["popularity"]))),
        seconds=seconds,
    )
    shutil.rmtree(out, ignore_errors=True)
    return prepared


def ranking_metrics(scores: np.ndarray, data: Prepared) -> dict[str, float]:
    """precision@10 / NDCG@10 by the evaluate step's accumulator; seen items masked."""
    scores = np.array(scores, dtype=np.float64)
    acc = MetricAccumulator(x=TOP_X, n_items=data.n_items)
    for u in range(data.n_users):
        seen = data.seen.row(u)
        scores[u, seen] = -np.inf
    top = np.argpartition(-scores, TOP_X, axis=1)[:, :TOP_X]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    best_first = np.take_along_axis(top, order, axis=1)
    for u in range(data.n_users):
        acc.add(best_first[u], data.holdout.row(u))
    result = acc.result()
    return {"precision": result["precision"], "ndcg": result["ndcg"], "users": acc.n_users}


def train_row(row: Row, data: Prepared, epochs: list[int], base: dict[str, str], evaluate: bool) -> dict:
    hyper = dict(base, feature_dim=str(data.n_users + data.n_items), epochs=str(max(epochs)))
    if row.factors_lr is not None:
        hyper["factors_lr"] = row.factors_lr
    config = parse_fm(hyper)
    quality: dict[str, dict[str, float]] = {}
    eval_seconds = eval_cpu = 0.0

    def on_params(epoch: int, params: fm.FMParams) -> None:
        nonlocal eval_seconds, eval_cpu
        if evaluate and epoch in epochs:
            started, cpu = time.perf_counter(), time.process_time()
            m = ranking_metrics(fm_scores(params, data.n_users), data)
            quality[str(epoch)] = {"p_at_10": round(m["precision"], 4), "ndcg_at_10": round(m["ndcg"], 4)}
            eval_seconds += time.perf_counter() - started
            eval_cpu += time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    fm.train(data.X, data.y, config, on_params=on_params)
    seconds = time.perf_counter() - started - eval_seconds  # training alone
    cpu_seconds = time.process_time() - cpu - eval_cpu
    rows = int(data.X.shape[0])
    return {
        "row": row.spec,
        "negative_draws": row.draws,
        "negative_ratio": row.ratio,
        "factors_lr": hyper["factors_lr"],
        "prepare_seed": PrepareConfig().seed if row.seed is None else row.seed,
        "positives": data.positives,
        "rows_per_positive": row.multiplier,
        "fm_rows_per_epoch": rows,
        "epochs_trained": int(hyper["epochs"]),
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(cpu_seconds, 2),
        "rows_per_second": round(rows * int(hyper["epochs"]) / max(seconds, 1e-9)),
        "prepare_seconds": round(data.seconds, 2),
        "by_epoch": {
            e: {
                **q,
                "rows_x_epochs": rows * int(e),
                # training time up to this epoch, pro rata (epochs take the same time)
                "seconds_est": round(seconds * int(e) / max(epochs), 2),
                "cpu_seconds_est": round(cpu_seconds * int(e) / max(epochs), 2),
            }
            for e, q in quality.items()
        },
    }


def movielens(rows: list[Row], epochs: list[int], base: dict[str, str], tmp: Path) -> dict:
    ml = load()
    src = tmp / "ml-100k"
    src.mkdir()
    shutil.copy(ml.ua_base, src / "ua.base")
    shutil.copy(ml.ua_test, src / "ua.test")
    settings = {"input_prefix": "ua.base", "test_prefix": "ua.test"}
    results, baseline = [], None
    cache: dict[tuple[int, int, int | None], Prepared] = {}
    print(f"{'row':14s} {'rows/epoch':>10s}  " + "  ".join(f"{'ep' + str(e):>11s}" for e in epochs))
    for row in rows:
        key = (row.draws, row.ratio, row.seed)
        if key not in cache:
            cache.clear()
            cache[key] = prepare_data(settings, row.draws, row.ratio, src, tmp / "ml-out", row.seed)
        data = cache[key]
        if baseline is None:
            metrics, n_eval = baseline_metrics(data.popularity, data.seen, data.holdout, x=TOP_X)
            baseline = {"p_at_10": round(metrics["precision"], 4), "ndcg_at_10": round(metrics["ndcg"], 4)}
            p, ndcg = baseline["p_at_10"], baseline["ndcg_at_10"]
            print(f"most-popular P@10 {p:.4f} NDCG@10 {ndcg:.4f} ({n_eval} users)")
        res = train_row(row, data, epochs, base, evaluate=True)
        cells = "  ".join(
            f"{res['by_epoch'][str(e)]['p_at_10']:.3f}/{res['by_epoch'][str(e)]['ndcg_at_10']:.3f}"
            for e in epochs
        )
        print(
            f"{row.spec:14s} {res['fm_rows_per_epoch']:>10,d}  {cells}  ({res['train_seconds']:.0f}s)",
            flush=True,
        )
        results.append(res)
    return {
        "dataset": "ml-100k ua.base -> ua.test",
        "metric": "evaluate.metrics.MetricAccumulator, x=10, ua.base items masked, users with ua.test items",
        "most_popular": baseline,
        "rows": results,
    }


def synthetic_cost(rows: list[Row], n: int, base: dict[str, str], tmp: Path) -> dict:
    """Rows per epoch, prepare seconds and one epoch's training seconds on power-law data."""
    src = tmp / "synthetic"
    src.mkdir()
    synthetic(src / "interactions.csv", n)
    settings = {"input_prefix": "interactions.csv", "split": "last_n", "holdout_n": 10}
    results = []
    for key in sorted({(r.draws, r.ratio) for r in rows}):
        data = prepare_data(settings, key[0], key[1], src, tmp / "syn-out")
        res = train_row(Row(f"{key[0]},{key[1]}", key[0], key[1], None), data, [1], base, evaluate=False)
        res.pop("by_epoch")
        res.update(n_users=data.n_users, n_items=data.n_items)
        print(
            f"synthetic {n:,d}: D={key[0]} R={key[1]} {res['fm_rows_per_epoch']:,d} rows/epoch, "
            f"1 epoch {res['train_seconds']:.1f}s ({res['rows_per_second']:,d} rows/s), "
            f"prepare {res['prepare_seconds']:.1f}s",
            flush=True,
        )
        results.append(res)
        del data
    return {"dataset": f"synthetic power-law, {n} interactions, last-10 split", "rows": results}


def recipe_rows() -> tuple[list[Row], list[int]]:
    """One grid row per named recipe (common/recipes.py), evaluated at its own epochs."""
    rows = [
        Row(
            f"{r.negative_draws},{r.negative_ratio},{r.factors_lr}",
            r.negative_draws,
            r.negative_ratio,
            r.factors_lr,
        )
        for r in RECIPES.values()
    ]
    return rows, sorted({r.epochs for r in RECIPES.values()})


def recipe_summary(results: list[dict], base: dict[str, str]) -> list[dict]:
    """Each recipe at its own epochs: P@10, NDCG@10, rows x epochs and cost relative to quality."""
    out = []
    for name, recipe in RECIPES.items():
        lr = recipe.factors_lr
        for res in results:
            if (res["negative_draws"], res["negative_ratio"], res["factors_lr"]) == (
                recipe.negative_draws,
                recipe.negative_ratio,
                lr if lr is not None else base["factors_lr"],
            ):
                at = res["by_epoch"].get(str(recipe.epochs))
                if at is None:
                    continue
                out.append(
                    {
                        "recipe": name,
                        "prepare_seed": res["prepare_seed"],
                        "epochs": recipe.epochs,
                        "rows_x_epochs_per_positive": recipe.rows_x_epochs_per_positive,
                        "cost_vs_quality": round(
                            recipe.rows_x_epochs_per_positive / RECIPES["quality"].rows_x_epochs_per_positive,
                            4,
                        ),
                        **at,
                    }
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", action="append", type=parse_row, default=[], metavar="D,R[,FACTORS_LR[,SEED]]")
    ap.add_argument("--epochs", default=DEFAULT_EPOCHS, help=f"epochs to evaluate (default {DEFAULT_EPOCHS})")
    ap.add_argument(
        "--synthetic-rows",
        type=int,
        default=1_000_000,
        help="synthetic interactions for the cost side (0 = skip)",
    )
    ap.add_argument(
        "--recipes",
        action="store_true",
        help="one row per named recipe (pipeline_steps/common/recipes.py) at its own epochs, plus --rows",
    )
    args = ap.parse_args()
    rows = args.rows or [parse_row(s) for s in DEFAULT_ROWS]
    if args.recipes:
        rows, recipe_epochs = recipe_rows()
        rows += args.rows
        args.epochs = ",".join(
            str(e) for e in sorted({*recipe_epochs, *(int(e) for e in args.epochs.split(",") if e.strip())})
        )
    try:
        epochs = sorted({int(e) for e in args.epochs.split(",") if e.strip()})
    except ValueError:
        ap.error(f"--epochs {args.epochs!r}: expected integers separated by commas")
    if not epochs or epochs[0] < 1:
        ap.error("--epochs: at least one epoch, all >= 1")
    base = deployed_hyperparameters()
    print(CITATION)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="cost-presets-"))
    try:
        quality = movielens(rows, epochs, base, tmp)
        cost = synthetic_cost(rows, args.synthetic_rows, base, tmp) if args.synthetic_rows > 0 else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "hyperparameters": base,
                "epochs": epochs,
                "movielens": quality,
                "recipes": recipe_summary(quality["rows"], base) if args.recipes else None,
                "synthetic": cost,
                "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "cpu_count": os.cpu_count(),
                "total_seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
