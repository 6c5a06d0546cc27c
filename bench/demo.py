"""The full ML-100k demo as a benchmark: the deployed template, run offline end to end.

Runs `python -m pipeline_steps.local demo` in a subprocess (a fresh embedded AWS), reads its
report.json and prints wall time per stage and the ranking quality next to the most-popular
baseline computed in the same run. Targets (issue 7): precision@10 >= 0.24, NDCG@10 above
most-popular's, whole demo after setup <= 90 s.

Last stdout line: one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline_steps.local", "demo", "--out", tmp],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
        wall = time.perf_counter() - started
        report_path = Path(tmp) / "report.json"
        if proc.returncode != 0 or not report_path.exists():
            print(json.dumps({"error": f"demo exited {proc.returncode}", "wall_seconds": round(wall, 1)}))
            return 1
        report = json.loads(report_path.read_text())
    model, base = report["metrics"], report["baseline"]
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
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    result["targets"] = {
        "precision_at_10>=0.24": result["precision_at_10"] >= 0.24,
        "ndcg_above_most_popular": model["ndcg"] > base["ndcg"],
        "total_seconds<=90": report["total_seconds"] <= 90,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
