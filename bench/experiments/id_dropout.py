"""Cold-user and warm P@10 with ID dropout (`topx:prepare.user_id_dropout`, decision 0018), ML-100k.

Per dropout share: one `python -m pipeline_steps.local demo --features` (the features demo: the
deployed template in the embedded AWS, ML-100k ua with all five metadata fields, the cold protocols
on, the deployment's FM hyperparameters, x = 10) with `-c topx:prepare.user_id_dropout=SHARE`,
nothing else changed. The protocol's held-out users and items depend on prepare's seed only, so
every share is scored on the same held-out users; the most-popular baseline comes from the same run.
Optional `--seeds` adds `-c topx:prepare.seed=S` (a different hold-out, negatives and dropout draw);
`-c KEY=VALUE` adds any other context to every demo (e.g. `topx:prepare.feature_weight=0.25`).

Last stdout line: one JSON object, per (share, seed): warm P@10 (kept users, ua.test) and
most-popular's, cold users' P@10 / NDCG@10 and most-popular's, cold items' NDCG@10 and
category popularity's.

    nice -n 10 .venv/bin/python bench/experiments/id_dropout.py --shares 0 0.1 0.3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo import run_demo


def _row(report: dict, share: float, seed: int | None, wall: float) -> dict:
    warm, warm_base = report["metrics"], report["baseline"]
    cu, ci = report["cold_users"], report["cold_items"]
    return {
        "user_id_dropout": share,
        "seed": seed,
        "wall_seconds": round(wall, 1),
        "warm_precision_at_10": round(warm["precision"], 4),
        "warm_most_popular_precision_at_10": round(warm_base["precision"], 4),
        "cold_users": cu["n_eval_users"],
        "cold_users_precision_at_10": round(cu["metrics"]["precision"], 4),
        "cold_users_most_popular_precision_at_10": round(cu["baseline"]["precision"], 4),
        "ratio_cold_users_precision_vs_most_popular": round(
            cu["metrics"]["precision"] / cu["baseline"]["precision"], 3
        ),
        "cold_users_ndcg_at_10": round(cu["metrics"]["ndcg"], 4),
        "cold_users_most_popular_ndcg_at_10": round(cu["baseline"]["ndcg"], 4),
        "cold_items_ndcg_at_10": round(ci["metrics"]["ndcg"], 4),
        "cold_items_category_popularity_ndcg_at_10": round(ci["baseline"]["ndcg"], 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="prepare seeds (default: cdk.json)")
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more context for every demo, e.g. topx:prepare.feature_weight=0.25",
    )
    args = parser.parse_args(argv)
    rows = []
    for seed in args.seeds or [None]:
        for share in args.shares:
            extra = ["--features", "-c", f"topx:prepare.user_id_dropout={share}"]
            for item in args.context:
                extra += ["-c", item]
            if seed is not None:
                extra += ["-c", f"topx:prepare.seed={seed}"]
            report, wall, code = run_demo(*extra)
            if code != 0 or report is None:
                print(json.dumps({"error": f"demo {extra} exited {code}", "wall_seconds": round(wall, 1)}))
                return 1
            rows.append(_row(report, share, seed, wall))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    name = "ID dropout on the features demo (ML-100k ua, protocols on)"
    print(json.dumps({"experiment": name, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
