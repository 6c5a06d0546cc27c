"""The full ML-100k demo as a benchmark: the deployed template, run offline end to end.

Runs `python -m pipeline_steps.local demo` in a subprocess (a fresh embedded AWS), reads its
report.json and prints wall time per stage and the ranking quality next to the most-popular
baseline computed in the same run. Targets (issue 7): precision@10 >= 0.24, NDCG@10 above
most-popular's, whole demo after setup <= 90 s.

The cost of IAM enforcement (every call authorised against the caller's policies) is measured in
the same run: the demo runs `--repeat` times with enforcement and as many times without
(`--no-enforce-iam`), alternating, and the ratio of the median totals is printed with the spread
(target: enforced total within +20%).

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_demo(*extra: str) -> tuple[dict | None, float, int]:
    """One demo in a fresh process; returns (report or None, wall seconds, exit code)."""
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline_steps.local", "demo", "--out", tmp, *extra],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        wall = time.perf_counter() - started
        report_path = Path(tmp) / "report.json"
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    return report, wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="demos per mode (IAM enforced / not)")
    parser.add_argument("--features", action="store_true", help="`demo --features` (make demo-features)")
    args = parser.parse_args(argv)
    extra = ("--features",) if args.features else ()
    enforced: list[tuple[dict, float]] = []
    plain: list[float] = []
    for _ in range(args.repeat):
        for mode in ("enforced", "plain"):
            flags = extra if mode == "enforced" else (*extra, "--no-enforce-iam")
            report, wall, code = run_demo(*flags)
            if code != 0 or report is None:
                print(json.dumps({"error": f"demo ({mode}) exited {code}", "wall_seconds": round(wall, 1)}))
                return 1
            if mode == "enforced":
                enforced.append((report, wall))
            else:
                plain.append(report["total_seconds"])
    report, wall = enforced[-1]
    enforced_totals = [r["total_seconds"] for r, _ in enforced]
    model, base = report["metrics"], report["baseline"]
    overhead = statistics.median(enforced_totals) / statistics.median(plain)
    result = {
        "benchmark": "make demo (ML-100k ua.base -> ua.test, x=10) through the deployed template in moto",
        "status": report["status"],
        "wall_seconds": round(wall, 1),
        "total_seconds": report["total_seconds"],
        "deploy_seconds": report.get("deploy_seconds"),
        "pipeline_seconds": report.get("pipeline_seconds"),
        "stage_seconds": report["stage_seconds"],
        "precision_at_10": round(model["precision"], 4),
        "ndcg_at_10": round(model["ndcg"], 4),
        "coverage": round(model["coverage"], 4),
        "baseline_precision_at_10": round(base["precision"], 4),
        "baseline_ndcg_at_10": round(base["ndcg"], 4),
        "ratio_precision_vs_most_popular": round(model["precision"] / base["precision"], 2),
        "ratio_ndcg_vs_most_popular": round(model["ndcg"] / base["ndcg"], 2),
        "iam_enforced_total_seconds": [round(t, 1) for t in enforced_totals],
        "iam_not_enforced_total_seconds": [round(t, 1) for t in plain],
        "ratio_total_iam_enforced_vs_not": round(overhead, 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    # The cold protocols (decision 0018; `--features` runs them with ML-100k's metadata), with their
    # baselines from the same run.
    cold_users, cold_items = report.get("cold_users"), report.get("cold_items")
    if cold_users:
        m, b = cold_users["metrics"], cold_users["baseline"]
        result["cold_users_precision_at_10"] = round(m["precision"], 4)
        result["cold_users_most_popular_precision_at_10"] = round(b["precision"], 4)
        result["ratio_cold_users_precision_vs_most_popular"] = round(m["precision"] / b["precision"], 2)
    if cold_items:
        m, b, r = cold_items["metrics"], cold_items["baseline"], cold_items["random"]
        result["cold_items_ndcg_at_10"] = round(m["ndcg"], 4)
        result["cold_items_category_popularity_ndcg_at_10"] = round(b["ndcg"], 4)
        result["cold_items_random_ndcg_at_10"] = round(r["ndcg"], 4)
        result["ratio_cold_items_ndcg_vs_random"] = round(m["ndcg"] / r["ndcg"], 2)
    result["targets"] = {
        "precision_at_10>=0.24": result["precision_at_10"] >= 0.24,
        "ndcg_above_most_popular": model["ndcg"] > base["ndcg"],
        "total_seconds<=90": report["total_seconds"] <= 90,
        "iam_enforcement_overhead<=1.2": overhead <= 1.2,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
