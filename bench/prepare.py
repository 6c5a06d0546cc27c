"""Benchmark of the prepare step: ML-100k (u.data, ua.base + ua.test) and a synthetic 10M-row file.

Each case runs in a fresh subprocess (so `ru_maxrss` of that child is the case's peak RSS), end to
end: read -> rules -> labels -> every output file written to a local directory. Measured in the same
run on the same 10M-row file: a plain `csv.reader` pass (rows only, no conversion: the
`ratio_vs_csv_reader` baseline), the bare engine (DuckDB with prepare's settings: read, latest row
per pair, last-10 split, both id maps into numpy; no validation, no outputs), and the hand-written
prepare this SQL one replaced (`OLD_PREPARE_REF`, exported with `git archive`; decision 0014).
The last stdout line is one JSON object.

    .venv/bin/python bench/prepare.py [--rows 10000000] [--keep] [--general] [--no-old]

``--general`` writes the RecordIO files without the writer's one-layout path (decision 0010).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.support.synthetic import interactions_csv  # noqa: E402

GENERAL = False  # --general
# The last commit with the hand-written parser (parse.py, fields.py, hashtable.py): decision 0014.
OLD_PREPARE_REF = "f9b3a30"

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import LocalStorage
args = json.loads(sys.argv[1])
if args.get("general"):  # the RecordIO writer without its one-layout path (same bytes)
    import functools
    from pipeline_steps.formats.recordio import writer
    writer.iter_sparse_chunks = functools.partial(writer.iter_sparse_chunks, accelerate=False)
config = PrepareConfig.from_dict(args["config"])
t = time.perf_counter()
m = prepare(config, source=LocalStorage(args["src"]), sink=LocalStorage(args["out"]),
            test_source=LocalStorage(args["test_src"]) if args.get("test_src") else None,
            run_id="bench", out_prefix="runs/bench/prepared/")
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": dt, "peak_rss_mb": ru.ru_maxrss / 1024,
                  "cpu_seconds": ru.ru_utime + ru.ru_stime, "user_seconds": ru.ru_utime,
                  "sys_seconds": ru.ru_stime, "minor_faults": ru.ru_minflt,
                  "counts": m["counts"], "n_users": m["n_users"], "n_items": m["n_items"]}}))
"""

_BARE_ENGINE = r"""
import json, resource, sys, tempfile, time
sys.path.insert(0, {root!r})
from pipeline_steps.prepare import query
from pipeline_steps.prepare.engine import connect
t = time.perf_counter()
con = connect(tempfile.mkdtemp())
con.execute("CREATE TABLE p AS SELECT user_id AS u, item_id AS i, rating, "
            "timestamp AS ts, CAST(NULL AS TINYINT) AS reason "
            f"FROM read_csv({{query.literal(sys.argv[1])}})")
for name, col in (("user_ids", "u"), ("item_ids", "i")):
    con.execute(f"CREATE TABLE {{name}} AS {{query.ID_ORDER.format(col=col, source='p')}}")
con.execute(f"CREATE TABLE c AS {{query.CODED.format(source=query.with_seq('p'))}}; DROP TABLE p")
con.execute(f"CREATE TABLE d AS {{query.LATEST.format(source='c')}}; DROP TABLE c")
con.execute(f"CREATE TABLE s AS {{query.LAST_N.format(source='d', n=10)}}; DROP TABLE d")
pairs = con.execute("SELECT u, i, rating FROM s WHERE NOT held").fetchnumpy()
ids = [con.execute(f"SELECT id FROM {{t}} ORDER BY ix").fetchnumpy()["id"] for t in ("user_ids", "item_ids")]
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": dt, "peak_rss_mb": ru.ru_maxrss / 1024,
                  "cpu_seconds": ru.ru_utime + ru.ru_stime, "train_pairs": len(pairs["u"])}}))
"""

_BASELINE = r"""
import csv, json, resource, sys, time
t = time.perf_counter()
n = 0
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    for _row in csv.reader(f):
        n += 1
dt = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru.ru_utime + ru.ru_stime
print(json.dumps({"seconds": dt, "rows": n, "peak_rss_mb": ru.ru_maxrss / 1024, "cpu_seconds": cpu}))
"""


def run_case(
    name: str, src: Path, out: Path, config: dict, rows: int, test_src: Path | None = None, root: Path = ROOT
) -> dict:
    args = {
        "src": str(src),
        "out": str(out),
        "config": config,
        "test_src": str(test_src) if test_src else None,
        "general": GENERAL,
    }
    code = _CHILD.format(root=str(root))
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["rows_per_s"] = round(rows / res["seconds"])
    res["name"] = name
    res["config"] = config
    res["seconds"] = round(res["seconds"], 3)
    res["cpu_seconds"] = round(res["cpu_seconds"], 3)
    res["user_seconds"], res["sys_seconds"] = round(res["user_seconds"], 3), round(res["sys_seconds"], 3)
    res["rows_per_cpu_s"] = round(rows / res["cpu_seconds"])
    res["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
    res["rss_bytes_per_row"] = round(res["peak_rss_mb"] * 2**20 / rows)
    print(
        f"  {name}: {rows:,} rows in {res['seconds']:.2f}s = {res['rows_per_s']:,} rows/s "
        f"(cpu {res['cpu_seconds']:.2f}s = {res['rows_per_cpu_s']:,} rows/cpu-s; user "
        f"{res['user_seconds']:.2f}s, system {res['sys_seconds']:.2f}s, {res['minor_faults']:,} faults), "
        f"peak RSS {res['peak_rss_mb']:.0f} MB ({res['rss_bytes_per_row']} B/row), "
        f"{res['n_users']:,} users, {res['n_items']:,} items, "
        f"{res['counts']['train_rows']:,} train rows",
        flush=True,
    )
    return res


def _run_json(code: str, *argv: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def synthetic(path: Path, rows: int, seed: int = 7) -> None:
    """CSV with Amazon-like string ids: users uniform (rows / 20), Zipf-like items (rows / 100)."""
    interactions_csv(path, rows, n_users=max(rows // 20, 10), n_items=max(rows // 100, 10), seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--general", action="store_true", help="RecordIO writer without its one-layout path")
    ap.add_argument("--no-old", action="store_true", help="skip the hand-written prepare (OLD_PREPARE_REF)")
    args = ap.parse_args()
    global GENERAL
    GENERAL = args.general
    sys.path.insert(0, str(ROOT))
    from pipeline_steps.datasets.movielens import load

    tmp = Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    cases = []
    try:
        ml = load()
        print("ML-100k (default config: implicit, ratio 3, 4 draws):", flush=True)
        cfg = {"input_prefix": "u.data"}
        cases.append(run_case("ml100k_u_data_last_n", ml.u_data.parent, tmp / "o1", cfg, 100_000))
        ml_src = tmp / "ml"
        ml_src.mkdir()
        shutil.copy(ml.ua_base, ml_src / "ua.base")
        shutil.copy(ml.ua_test, ml_src / "ua.test")
        cfg = {"input_prefix": "ua.base", "test_prefix": "ua.test"}
        cases.append(run_case("ml100k_ua_explicit", ml_src, tmp / "o2", cfg, 100_000))
        cfg = {"input_prefix": "ua.base", "test_prefix": "ua.test", "label_mode": "binary"}
        cases.append(run_case("ml100k_ua_binary", ml_src, tmp / "o3", cfg, 100_000))

        label = f"{args.rows // 1_000_000}m" if args.rows >= 1_000_000 else f"{args.rows // 1000}k"
        big = tmp / "big"
        big.mkdir()
        t = time.perf_counter()
        synthetic(big / "interactions.csv", args.rows)
        size_mb = (big / "interactions.csv").stat().st_size / 1e6
        print(
            f"synthetic file: {args.rows:,} rows, {size_mb:.0f} MB, "
            f"generated in {time.perf_counter() - t:.1f}s"
        )
        base = _run_json(_BASELINE, str(big / "interactions.csv"))
        base_rps = round(args.rows / base["seconds"])
        base_cpu_rps = round(args.rows / base["cpu_seconds"])
        print(
            f"  baseline csv.reader (parse only, no conversion): {base['seconds']:.2f}s = {base_rps:,} rows/s"
        )
        bare = _run_json(_BARE_ENGINE.format(root=str(ROOT)), str(big / "interactions.csv"))
        bare_rps = round(args.rows / bare["seconds"])
        bare_mb = round(bare["peak_rss_mb"], 1)
        print(
            f"  bare engine (typed read, id codes, dedupe, split, arrays; no validation or outputs): "
            f"{bare['seconds']:.2f}s = {bare_rps:,} rows/s (cpu {bare['cpu_seconds']:.2f}s), "
            f"peak RSS {bare_mb:.0f} MB"
        )
        big_cfg = {"input_prefix": "", "label_mode": "binary"}
        big_case = run_case(f"synthetic_{label}_binary_last_n", big, tmp / "o4", big_cfg, args.rows)
        cases.append(big_case)
        shutil.rmtree(tmp / "o4", ignore_errors=True)
        old_case = None
        if not args.no_old:
            old_root = tmp / "old"
            old_root.mkdir()
            archive = subprocess.run(
                ["git", "-C", str(ROOT), "archive", OLD_PREPARE_REF, "pipeline_steps"],
                capture_output=True,
                check=True,
            )
            subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive.stdout, check=True)
            old_case = run_case(
                f"old_{label}_binary_last_n", big, tmp / "o6", big_cfg, args.rows, root=old_root
            )
            shutil.rmtree(tmp / "o6", ignore_errors=True)
        # The implicit default (ratio 3 x 4 draws) writes 16 rows per training interaction; on the
        # big file one draw of one negative shows the cost of sampling without a 10x bigger output.
        imp_cfg = {"input_prefix": "", "negative_ratio": 1, "negative_draws": 1}
        cases.append(run_case(f"synthetic_{label}_implicit_1x1", big, tmp / "o5", imp_cfg, args.rows))
        shutil.rmtree(tmp / "o5", ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "rows_per_s": big_case["rows_per_s"],
        "peak_rss_mb": big_case["peak_rss_mb"],
        "rows": args.rows,
        "headline_case": big_case["name"],
        "baseline_csv_reader_rows_per_s": base_rps,
        "ratio_vs_csv_reader": round(big_case["rows_per_s"] / base_rps, 2),
        # CPU time is less sensitive than wall time to other processes sharing the machine.
        "rows_per_cpu_s": big_case["rows_per_cpu_s"],
        "baseline_csv_reader_rows_per_cpu_s": base_cpu_rps,
        "ratio_vs_csv_reader_cpu": round(big_case["rows_per_cpu_s"] / base_cpu_rps, 2),
        "rss_bytes_per_row": big_case["rss_bytes_per_row"],
        "bare_engine": {
            "rows_per_s": bare_rps,
            "peak_rss_mb": bare_mb,
            "cpu_seconds": round(bare["cpu_seconds"], 2),
        },
        "old_prepare": (
            {
                "ref": OLD_PREPARE_REF,
                "rows_per_s": old_case["rows_per_s"],
                "rows_per_cpu_s": old_case["rows_per_cpu_s"],
                "peak_rss_mb": old_case["peak_rss_mb"],
                "rss_bytes_per_row": old_case["rss_bytes_per_row"],
                "user_seconds": old_case["user_seconds"],
                "sys_seconds": old_case["sys_seconds"],
                "throughput_vs_old": round(big_case["rows_per_s"] / old_case["rows_per_s"], 2),
                # user CPU only: the kernel's share (page faults) varies between machines and days
                "user_cpu_vs_old": round(big_case["user_seconds"] / old_case["user_seconds"], 2),
                "memory_vs_old": round(big_case["peak_rss_mb"] / old_case["peak_rss_mb"], 2),
            }
            if old_case
            else None
        ),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "targets": {"rows_per_s": 1_000_000, "peak_rss_mb": 2048},
        "targets_met": big_case["rows_per_s"] >= 1_000_000 and big_case["peak_rss_mb"] <= 2048,
        "cpu_count": os.cpu_count(),
        "recordio_writer": "general" if args.general else "with one-layout path",
        "cases": [
            {
                k: c[k]
                for k in (
                    "name",
                    "seconds",
                    "rows_per_s",
                    "cpu_seconds",
                    "user_seconds",
                    "sys_seconds",
                    "minor_faults",
                    "peak_rss_mb",
                    "n_users",
                    "n_items",
                    "config",
                )
            }
            | {"train_rows": c["counts"]["train_rows"]}
            for c in cases
        ],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
