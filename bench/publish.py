"""Publish 100,000 users x top-20 into DynamoDB (local moto server) with 30% of write calls faulty.

Faults are injected client-side (tests/publish/faults.py): 30% of BatchWriteItem calls fail, half
of them with a throttling error (ProvisionedThroughputExceeded, Throttling, RequestLimitExceeded or
a 500), half by handing back a random 1..24 of the 25 items as UnprocessedItems.

Measured: the whole `publish_run` (stream the .out parts from S3, rank, filter seen items, encode,
write, flip the pointer). Baseline in the same run: one PutItem per user, one thread, no faults
(the loop public pipelines use), on a sample. Verification: every user's item is read back from
the server process's table store (a full API Scan is avoided: moto re-sorts the whole table on every Scan
page, ~2.5 s a page here, ~3 min for this table) and a random sample through BatchGetItem is
compared with a top-x computed independently with numpy.

Last line: one JSON object (`items_per_s`, `requests_per_item`, `lost_items`, `speedup_vs_baseline`, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import boto3
import numpy as np
from botocore.config import Config
from moto.server import ThreadedMotoServer

from bench.support import moto_process
from bench.support.moto_process import use_bench_credentials
from pipeline_steps.common.config import config_from_dict
from pipeline_steps.common.items import encode_items
from pipeline_steps.local import moto_fixes
from pipeline_steps.publish import core
from pipeline_steps.publish.config import PublishConfig
from tests.conftest import create_table
from tests.prepared_run import event, put_prepared, put_queries_manifest, put_transform_output
from tests.publish.faults import FaultyDynamoDB

BUCKET, TABLE, RUN = "bench-bucket", "bench-table", "bench-run"
ACCOUNT = "123456789012"  # moto's default account


def serve(port: int, conn) -> None:
    """Child process: the moto server, plus answers about its own table store for verification."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.dynamodb.models import dynamodb_backends

    moto_fixes.install()  # as the local runner's server
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    conn.send("ready")
    while True:
        command, *rest = conn.recv()
        if command == "keys":
            table_name, run_id = rest
            table = dynamodb_backends[ACCOUNT]["us-east-1"].tables[table_name]
            conn.send([i.hash_key.value for i in table.all_items() if i.range_key.value == run_id])
        else:
            server.stop()
            conn.send("stopped")
            return


def synthetic(n_users: int, n_items: int, x: int, max_seen: int, seed: int):
    """k-NN results with k = x + max_seen distinct items per user; the first s_u of them are 'seen'."""
    rng = np.random.default_rng(seed)
    k = x + max_seen
    base = rng.integers(0, n_items, n_users)
    labels = (base[:, None] + np.arange(k) * 7919) % n_items  # distinct per row (7919 prime, n_items < it*k)
    distances = rng.normal(size=(n_users, k))
    n_seen = rng.integers(0, max_seen + 1, n_users)
    # Seen items are a random subset of the neighbours, so filtering really removes some.
    picks = np.argsort(rng.random((n_users, k)), axis=1)
    seen = [sorted(labels[u, picks[u, : n_seen[u]]].tolist()) for u in range(n_users)]
    return labels, distances, seen, k


def expected_top(labels, distances, seen, u: int, x: int) -> list[str]:
    order = np.argsort(-distances[u], kind="stable")
    s = set(seen[u])
    return [f"item-{labels[u, j]:06d}" for j in order if labels[u, j] not in s][:x]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--x", type=int, default=20)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument(
        "--throttle-share", type=float, default=0.5, help="share of faulty calls that throttle"
    )
    parser.add_argument("--baseline-sample", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    use_bench_credentials()
    # The server runs in its own process so that it and the publisher each get a core.
    endpoint, conn, server = moto_process.start(serve)
    boto_cfg = Config(max_pool_connections=max(10, 2 * args.threads), retries={"mode": "standard"})
    s3 = boto3.client("s3", endpoint_url=endpoint)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, config=boto_cfg)
    s3.create_bucket(Bucket=BUCKET)
    create_table(dynamodb, TABLE)
    print(f"moto server on {endpoint}")

    t0 = time.perf_counter()
    labels, distances, seen, k = synthetic(args.users, args.items, args.x, 10, args.seed)
    users = [f"user-{u:07d}" for u in range(args.users)]
    items = [f"item-{i:06d}" for i in range(args.items)]
    put_prepared(s3, BUCKET, RUN, users=users, items=items, seen=seen)
    sizes = [len(c) for c in np.array_split(np.arange(args.users), args.parts)]
    put_queries_manifest(s3, BUCKET, RUN, part_sizes=sizes, k=k, n_items=args.items)
    first = 0
    for p, n in enumerate(sizes):
        put_transform_output(
            s3, BUCKET, RUN, p, labels[first : first + n] + 1.0, distances[first : first + n]
        )
        first += n
    print(
        f"inputs: {args.users:,} users x k={k} neighbours in {args.parts} parts "
        f"({time.perf_counter() - t0:.1f}s)"
    )

    # Baseline: one PutItem per user, one thread, no faults, on a sample of users.
    sample = args.baseline_sample
    texts = [
        encode_items(expected_top(labels, distances, seen, u, args.x), [1.0] * args.x)[0]
        for u in range(sample)
    ]
    t = time.perf_counter()
    for u in range(sample):
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"u#{users[u]}"},
                "sk": {"S": "baseline"},
                "items": {"S": texts[u]},
                "expires_at": {"N": "1900000000"},
            },
        )
    baseline_s = time.perf_counter() - t
    baseline_ips = sample / baseline_s
    print(f"baseline: {sample:,} PutItem calls in {baseline_s:.1f}s = {baseline_ips:,.0f} items/s")

    faulty = FaultyDynamoDB(
        dynamodb, fault_rate=args.fault_rate, throttle_share=args.throttle_share, seed=args.seed
    )
    # Lists of exactly x (no read_extra tail) and no related lists: the synthetic k-NN output holds
    # k = x + max_seen neighbours per user, and the sample check compares with numpy's top x.
    settings = {"x": args.x, "writer_threads": args.threads, "read_extra": 0, "related_x": 0}
    config = config_from_dict(PublishConfig, settings, where="bench")
    t = time.perf_counter()
    result = core.publish_run(
        s3=s3, dynamodb=faulty, bucket=BUCKET, table_name=TABLE, event=event(BUCKET, RUN), config=config
    )
    elapsed = time.perf_counter() - t
    ips = result["users_written"] / elapsed
    user_calls = result["requests"]
    print(
        f"publish: {result['users_written']:,} users in {elapsed:.1f}s = {ips:,.0f} items/s, "
        f"{user_calls:,} BatchWriteItem calls ({faulty.throttled:,} throttled, {faulty.partial:,} partial)"
    )

    # Verification 1: the server's own table store (every item of the run, exactly the expected keys).
    conn.send(("keys", TABLE, RUN))
    stored = {key for key in conn.recv() if key.startswith("u#")}
    wanted = {f"u#{u}" for u in users}
    lost = len(wanted - stored)
    extra = len(stored - wanted)
    accepted_user_puts = {key: n for key, n in faulty.accepted.items() if key[0].startswith("u#")}
    duplicates = sum(n - 1 for n in accepted_user_puts.values() if n > 1)
    # Verification 2: a random sample read back through the API, against an independent numpy top-x.
    rng = np.random.default_rng(args.seed + 1)
    check = rng.choice(args.users, size=min(5_000, args.users), replace=False)
    mismatched = 0
    for start in range(0, check.size, 100):
        keys = [{"pk": {"S": f"u#{users[u]}"}, "sk": {"S": RUN}} for u in check[start : start + 100]]
        got = {}
        while keys:
            resp = dynamodb.batch_get_item(RequestItems={TABLE: {"Keys": keys}})
            for it in resp["Responses"].get(TABLE, []):
                got[it["pk"]["S"]] = [p[0] for p in json.loads(it["items"]["S"])]
            keys = resp.get("UnprocessedKeys", {}).get(TABLE, {}).get("Keys", [])
        for u in check[start : start + 100]:
            mismatched += got.get(f"u#{users[u]}") != expected_top(labels, distances, seen, u, args.x)
    print(
        f"verify: {len(stored):,} items stored, lost {lost}, unexpected {extra}, "
        f"duplicate puts {duplicates}, "
        f"{mismatched} of {check.size:,} sampled lists differ from numpy"
    )
    conn.send(("stop",))
    conn.recv()
    server.join(10)

    # Fewest calls any client could make under these faults: throttled calls write nothing, partial
    # ones hold back 12.5 items on average, all others write 25.
    p_throttle = args.fault_rate * args.throttle_share
    p_partial = args.fault_rate - p_throttle
    floor = 1.0 / (25 * (1 - p_throttle) - p_partial * 12.5)
    summary = {
        "users": args.users,
        "x": args.x,
        "k": k,
        "writer_threads": args.threads,
        "fault_rate": args.fault_rate,
        "throttle_share": args.throttle_share,
        "seconds": round(elapsed, 2),
        "items_per_s": round(ips, 1),
        "requests_per_item": round(user_calls / result["users_written"], 4),
        "requests_per_item_floor": round(floor, 4),
        "batch_write_calls": user_calls,
        "throttled_calls": faulty.throttled,
        "partial_calls": faulty.partial,
        "lost_items": lost,
        "unexpected_items": extra,
        "duplicate_puts": duplicates,
        "sample_mismatches": mismatched,
        "baseline": "one PutItem per user, 1 thread, no faults",
        "baseline_items_per_s": round(baseline_ips, 1),
        "baseline_requests_per_item": 1.0,
        "speedup_vs_baseline": round(ips / baseline_ips, 2),
        "requests_ratio_vs_baseline": round((user_calls / result["users_written"]) / 1.0, 4),
    }
    print(json.dumps(summary))
    return 0 if lost == 0 and extra == 0 and duplicates == 0 and mismatched == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
