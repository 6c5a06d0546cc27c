"""One publish Map child (decision 0015 "A child holds its own users"): peak memory, S3 GetObject
bytes and load time of a child that reads its batch's user slice, against the way before (every user
id and the whole `seen`), measured in the same run on the same range of parts.

Synthetic power-law interactions at the target's ratios (10 interactions per user, items 1% of the
interactions: 3M interactions = 300k users x 30k items by default), written to a moto server in its
own process (S3 and DynamoDB). Query parts of `--users-per-part` users; repackage's batches and slices
(`publish-batches.json`, `publish-slice-*.npz`, written by the same `common/slices.py` code repackage
runs) at `--users-per-child`; the transform output is synthesised (k = x + 10 labels per line) for
the measured child's parts only (the other parts' `.out` objects exist, empty: only listed).

Each way runs in its own process (bench/support/steps.py): `old` = `load_inputs` (every id and the
whole `seen`) then `publish_parts` over the first batch's parts; `new` = `load_range_inputs` (the
slice) then the same `publish_parts`. Increment = peak RSS - RSS after imports and client set-up;
`load_*` = the input load before the first write.

Last stdout line: one JSON object with both ways and the new / old ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np

from bench.steps_memory import count_gets
from bench.support import moto_process
from bench.support import steps as steps_support
from bench.support.moto_process import clients, use_bench_credentials
from bench.support.steps import proc_kb
from bench.support.synthetic import power_law_seen

BUCKET, TABLE, RUN = "bench-bucket", "bench-table", "bench-child"
X, EXTRA_K = 10, 10


def child(way: str, endpoint: str, first: int, last: int) -> None:
    from pipeline_steps.common.config import config_from_dict
    from pipeline_steps.common.events import PublishPartsEvent
    from pipeline_steps.common.runio import load_inputs
    from pipeline_steps.common.slices import load_range_inputs
    from pipeline_steps.publish import core
    from pipeline_steps.publish.config import PublishConfig
    from tests.prepared_run import event

    s3, dynamodb = clients(endpoint)
    s3.list_buckets()
    dynamodb.list_tables()
    got = count_gets(s3)
    config = config_from_dict(PublishConfig, {"x": X, "read_extra": 0, "related_x": 0}, where="bench")
    ev = PublishPartsEvent.parse({**event(BUCKET, RUN), "first_part": first, "last_part": last})
    start_rss = proc_kb("VmRSS")
    started = time.perf_counter()
    if way == "old":
        inputs, parts = load_inputs(s3, BUCKET, ev), range(first, last + 1)
    else:
        inputs, parts = load_range_inputs(s3, BUCKET, ev)
    run = core.load_run_filters(s3, inputs, config)
    load_seconds, load_rss, load_gets = time.perf_counter() - started, proc_kb("VmHWM"), dict(got)
    done = core.publish_parts(
        s3=s3, dynamodb=dynamodb, table_name=TABLE, inputs=inputs, parts=parts, config=config, run_filters=run
    )
    print(
        json.dumps(
            {
                "way": way,
                "users_written": sum(d["users_written"] for d in done),
                "users_held": len(inputs.users),
                "seconds": round(time.perf_counter() - started, 2),
                "load_seconds": round(load_seconds, 3),
                "start_rss_kb": start_rss,
                "load_peak_rss_kb": load_rss,
                "peak_rss_kb": proc_kb("VmHWM"),
                "load_get_objects": load_gets["get_objects"],
                "load_get_bytes": load_gets["get_bytes"],
                **got,
            }
        )
    )


def setup(s3, n: int, users_per_part: int, users_per_child: int, seed: int) -> dict:
    from pipeline_steps.local_algorithms.knn_lines import format_results
    from tests.prepared_run import put_prepared, put_publish_batches, put_queries_manifest

    rng = np.random.default_rng(seed)
    n_users, n_items = n // 10, n // 100
    seen = power_law_seen(n, n_users, n_items, rng)
    put_prepared(
        s3,
        BUCKET,
        RUN,
        users=[f"user-{u:010d}" for u in range(n_users)],
        items=[f"item-{i:08d}" for i in range(n_items)],
        seen=seen,
    )
    sizes = [min(users_per_part, n_users - s) for s in range(0, n_users, users_per_part)]
    k = X + EXTRA_K
    put_queries_manifest(s3, BUCKET, RUN, part_sizes=sizes, k=k, n_items=n_items)
    started = time.perf_counter()
    batches = put_publish_batches(s3, BUCKET, RUN, users_per_child=users_per_child)
    slices_seconds = time.perf_counter() - started
    measured = batches[0]
    for part, size in enumerate(sizes):
        body = b""
        if part <= measured["last_part"]:
            base = rng.integers(0, n_items, size)
            labels = (base[:, None] + np.arange(k) * 7919) % n_items + 1.0
            body = format_results(labels, np.sort(rng.normal(size=(size, k)), axis=1)).encode()
        s3.put_object(Bucket=BUCKET, Key=f"runs/{RUN}/transform/users-{part:05d}.rec.out", Body=body)
    sizes_of = {
        name: s3.head_object(Bucket=BUCKET, Key=f"runs/{RUN}/prepared/{name}")["ContentLength"]
        for name in ("users.json", "items.json", "seen.npz")
    }
    slice_bytes = s3.head_object(Bucket=BUCKET, Key=f"runs/{RUN}/knn/queries/publish-slice-00000.npz")
    return {
        "interactions": int(sum(len(r) for r in seen)),
        "users": n_users,
        "items": n_items,
        "parts": len(sizes),
        "users_per_part": users_per_part,
        "users_per_child": users_per_child,
        "batches": len(batches),
        "measured_batch": measured,
        "object_bytes": {**sizes_of, "publish-slice-00000.npz": slice_bytes["ContentLength"]},
        "write_slices_seconds": round(slices_seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    parser.add_argument("--users-per-part", type=int, default=5_000)
    parser.add_argument("--users-per-child", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child")
    parser.add_argument("--endpoint")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--last", type=int, default=0)
    args = parser.parse_args()
    use_bench_credentials()
    if args.child:
        child(args.child, args.endpoint, args.first, args.last)
        return 0

    endpoint, conn, _server = moto_process.start(moto_process.serve)
    s3, dynamodb = clients(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    from tests.conftest import create_table

    create_table(dynamodb, TABLE)
    shape = setup(s3, args.interactions, args.users_per_part, args.users_per_child, args.seed)
    print(json.dumps({"shape": shape}))
    batch = shape["measured_batch"]
    ways = {}
    for way in ("old", "new"):
        ways[way] = steps_support.run_child(
            __file__,
            way,
            "--endpoint",
            endpoint,
            "--first",
            str(batch["first_part"]),
            "--last",
            str(batch["last_part"]),
        )
        print(json.dumps(ways[way]))
    conn.send("stop")

    def inc(r: dict, peak: str = "peak_rss_kb") -> float:
        return round((r[peak] - r["start_rss_kb"]) / 1024, 1)

    summary: dict = {"shape": shape}
    for way, r in ways.items():
        summary[way] = {
            "rss_increment_mb": inc(r),
            "load_rss_increment_mb": inc(r, "load_peak_rss_kb"),
            "peak_rss_mb": round(r["peak_rss_kb"] / 1024, 1),
            **{k: r[k] for k in ("users_held", "users_written", "seconds", "load_seconds")},
            **{k: r[k] for k in ("load_get_objects", "load_get_bytes", "get_objects", "get_bytes")},
        }
    # a Python str per id + its list slot: what holding the ids costs (the run's users before, the
    # items still: any item can be in any list)
    summary["bytes_per_id_held"] = {
        "user": sys.getsizeof(f"user-{0:010d}") + 8,
        "item": sys.getsizeof(f"item-{0:08d}") + 8,
    }
    old, new = summary["old"], summary["new"]
    summary["new_vs_old"] = {
        name: round(new[name] / old[name], 3) if old[name] else None
        for name in (
            "rss_increment_mb",
            "load_rss_increment_mb",
            "load_get_bytes",
            "get_bytes",
            "load_seconds",
        )
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
