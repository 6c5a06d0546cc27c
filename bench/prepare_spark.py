"""Benchmark of the Spark prepare (decision 0016) against the DuckDB prepare, same files, same run.

Cases: ML-100k `u.data` (when present) and a synthetic file (`bench/prepare.py`'s generator:
Amazon-like string ids, binary labels, last-10 holdout). Each engine runs in its own subprocess:
the DuckDB prepare end to end; the Spark prepare on a fresh PySpark `local[*]` session (its start-up
measured alone: `startup_s`), every output file written. Rows per second per core = input rows /
(parse + rules seconds) / cores, the part Spark parallelises; the writers after it are shared.
The last stdout line is one JSON object (`ratio_vs_duckdb`: Spark wall / DuckDB wall, same file).
`cpu_s`: CPU seconds of the case's process and everything it started (Spark's JVM, its Python
workers), read from /proc when it ends; `peak_rss_mb`: the peak RSS of the case's Python process
(the Spark driver's Python side, without its JVM); `--set KEY=VALUE` changes the synthetic case's prepare
config (e.g. `--set label_mode=implicit --set negative_draws=1`: the training channel that the
Spark engine writes in its partitions); `--no-ml100k` leaves the ML-100k case out.

    .venv/bin/python bench/prepare_spark.py [--rows 1000000] [--ml100k PATH] [--no-ml100k] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare import synthetic  # bench/prepare.py's generator

ROOT = Path(__file__).resolve().parent.parent
ML100K = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fm-knn-topx" / "ml-100k" / "u.data"
)

_CASE = """
import json, os, sys, time
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.storage import LocalStorage
engine, path, out, config = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
cfg = PrepareConfig.from_dict({"input_prefix": os.path.basename(path), **config})
kwargs = dict(source=LocalStorage(os.path.dirname(path)), sink=LocalStorage(out), run_id="b", out_prefix="p/")
t0 = time.perf_counter()
timings = {}
if engine == "duckdb":
    from pipeline_steps.prepare.core import prepare
    manifest = prepare(cfg, timings=timings, **kwargs)
    timings["cores"] = 2.0  # DuckDB threads (engine.THREADS)
else:
    from pipeline_steps.prepare.spark_engine import run_spark_prepare
    manifest, timings = run_spark_prepare(cfg, **kwargs)
timings["wall_s"] = time.perf_counter() - t0
timings["rows"] = manifest["counts"]["rows_read"]
timings["train_rows"] = manifest["counts"]["train_rows"]
import psutil
me = psutil.Process()
cpu = 0.0
for p in [me, *me.children(recursive=True)]:
    try:
        t = p.cpu_times()
        cpu += t.user + t.system + t.children_user + t.children_system
    except psutil.Error:
        pass
timings["cpu_s"] = round(cpu, 1)
import resource
timings["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # this process
print(json.dumps(timings))
"""


def run(engine: str, path: Path, work: Path, config: dict) -> dict:
    out = work / f"out-{engine}-{path.stem}"
    done = subprocess.run(
        [sys.executable, "-c", _CASE, engine, str(path), str(out), json.dumps(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    core_s = result["parse_s"] + result["rules_s"]
    result["rows_per_core_s"] = round(result["rows"] / core_s / result["cores"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--ml100k", type=Path, default=ML100K)
    ap.add_argument("--no-ml100k", action="store_true", help="the synthetic case only")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="synthetic case config")
    args = ap.parse_args()
    overrides = {k: _value(v) for k, _, v in (item.partition("=") for item in args.set)}
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        work = Path(tmp)
        cases = []
        if args.ml100k.is_file() and not args.no_ml100k:
            cases.append(("ml100k", args.ml100k, {}))
        synth = work / "synthetic.csv"
        synthetic(synth, args.rows)
        cases.append(("synthetic", synth, {"label_mode": "binary", **overrides}))
        for name, path, config in cases:
            duck, spark = run("duckdb", path, work, config), run("spark", path, work, config)
            report[name] = {
                "rows": duck["rows"],
                "duckdb": duck,
                "spark": spark,
                "ratio_vs_duckdb": round(spark["wall_s"] / duck["wall_s"], 2),
            }
            print(name, json.dumps(report[name]), file=sys.stderr)
    last = report["synthetic"]["spark"]
    report |= {
        "spark_startup_s": last["startup_s"],
        "spark_rows_per_core_s": last["rows_per_core_s"],
        "duckdb_rows_per_core_s": report["synthetic"]["duckdb"]["rows_per_core_s"],
    }
    print(json.dumps(report))


def _value(text: str) -> object:
    """A `--set` value: JSON when it parses (numbers, true/false), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


if __name__ == "__main__":
    main()
