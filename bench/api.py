"""The read API under load, on loopback: N concurrent SigV4-signed clients against the local API.

Setup (embedded AWS, IAM enforced): a run `bench-a` of `--users` users x 20 items whose ids all
start with `A-`, published as publish does (run record, items, fallback, conditional pointer
flip); the API's function and role as infra/api.py declares them (GetItem on the table only,
pointer cached `--pointer-ttl` seconds); the local API (`pipeline_steps.local.api_server`), which
verifies every signature and authorises `execute-api:Invoke` before invoking the function.

Phases, each bounded by `--requests` and `--seconds`:
1. steady: `--clients` threads, random users, `x` and `exclude` varied;
2. flip: the same load while run `bench-b` (ids starting with `B-`) is written and the pointer
   flipped mid-phase. A response is *mixed* when its items are not all from the run it names;
3. baseline: `get_recommendations` called in-process with the same threads and users (no HTTP,
   no signature, no Lambda), the same table.

Measured: requests/s, end-to-end and handler latency percentiles (the handler's own time comes
from its `Server-Timing` header), DynamoDB calls per request (counted on the function's own
client), errors (any status but 200) and mixed responses.

Last line: one JSON object (`requests`, `errors`, `mixed_responses`, `dynamodb_calls_per_request`,
`p50_ms`, `p99_ms`, `rps_vs_in_process`, ...).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline_steps.common.items import encode_items
from pipeline_steps.local import access
from pipeline_steps.local.api_server import LocalApi, call, create_query_function, function_invoker
from pipeline_steps.local.server import LocalAws
from pipeline_steps.publish import versioning
from pipeline_steps.query import clear_pointer_cache, get_recommendations
from pipeline_steps.query import handler as query_handler
from tests.conftest import create_table

TABLE = "bench-api-table"
ITEMS = 20
RUNS = {"bench-a": "A-", "bench-b": "B-"}


def publish(dynamodb: Any, run_id: str, users: int) -> None:
    """One run as publish writes it: run record `writing`, items, fallback, then the pointer flip."""
    prefix = RUNS[run_id]
    expires = int(time.time()) + 86_400
    versioning.begin_run(dynamodb, TABLE, run_id, n_parts=1, expires_at=expires, now=time.time())
    rng = random.Random(run_id)
    batch: list[dict[str, Any]] = []
    for u in range(users):
        ids = [f"{prefix}{n}" for n in rng.sample(range(500), ITEMS)]
        text, _ = encode_items(ids, [float(ITEMS - k) for k in range(ITEMS)])
        item = {
            "pk": {"S": f"u#{u}"},
            "sk": {"S": run_id},
            "items": {"S": text},
            "expires_at": {"N": str(expires)},
        }
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == 25 or u == users - 1:
            dynamodb.batch_write_item(RequestItems={TABLE: batch})
            batch = []
    text, _ = encode_items([f"{prefix}pop{k}" for k in range(ITEMS)], [1.0] * ITEMS)
    dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "fallback"}, "sk": {"S": run_id}, "items": {"S": text}}
    )
    versioning.mark_part_done(dynamodb, TABLE, run_id, part=0, users=users)
    versioning.flip_pointer(dynamodb, TABLE, run_id, metrics={}, now=time.time())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Load:
    """Concurrent requests, bounded by count and time; results kept per request."""

    def __init__(self, clients: int, requests: int, seconds: float, users: int) -> None:
        self.clients, self.requests, self.seconds, self.users = clients, requests, seconds, users
        self.lock = threading.Lock()
        self.issued = 0
        self.results: list[dict[str, Any]] = []

    def _next(self, deadline: float) -> bool:
        with self.lock:
            if self.issued >= self.requests or time.monotonic() > deadline:
                return False
            self.issued += 1
            return True

    def run(self, one: Any) -> float:
        deadline = time.monotonic() + self.seconds
        started = time.monotonic()

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            while self._next(deadline):
                user = str(rng.randrange(self.users))
                x = rng.choice([None, 5, 10])
                exclude = [f"A-{rng.randrange(500)}", f"B-{rng.randrange(500)}"] if rng.random() < 0.3 else []
                t = time.perf_counter()
                result = one(user, x, exclude)
                result["e2e_ms"] = (time.perf_counter() - t) * 1000
                with self.lock:
                    self.results.append(result)

        with ThreadPoolExecutor(self.clients) as pool:
            list(pool.map(worker, range(self.clients)))
        return time.monotonic() - started


def mixed(body: dict[str, Any]) -> bool:
    prefix = RUNS.get(body.get("run_id", ""), "?")
    return not all(i["item_id"].startswith(prefix) for i in body.get("items", []))


def summarize(load: Load, wall: float) -> dict[str, Any]:
    ok = [r for r in load.results if r["status"] == 200]
    return {
        "requests": len(load.results),
        "errors": len(load.results) - len(ok),
        "mixed_responses": sum(1 for r in ok if mixed(r["body"])),
        "rps": round(len(load.results) / wall, 1) if wall else 0.0,
        "p50_ms": round(percentile([r["e2e_ms"] for r in load.results], 50), 2),
        "p95_ms": round(percentile([r["e2e_ms"] for r in load.results], 95), 2),
        "p99_ms": round(percentile([r["e2e_ms"] for r in load.results], 99), 2),
        "handler_p50_ms": round(percentile([r["handler_ms"] for r in ok if "handler_ms" in r], 50), 3),
        "handler_p95_ms": round(percentile([r["handler_ms"] for r in ok if "handler_ms" in r], 95), 3),
        "handler_p99_ms": round(percentile([r["handler_ms"] for r in ok if "handler_ms" in r], 99), 3),
        "runs_served": {run: sum(1 for r in ok if r["body"]["run_id"] == run) for run in RUNS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000, help="per phase (bound)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per phase (bound)")
    parser.add_argument("--pointer-ttl", type=float, default=1.0)
    args = parser.parse_args()

    with LocalAws() as aws:
        dynamodb = aws.client("dynamodb")
        create_table(dynamodb, TABLE)
        publish(dynamodb, "bench-a", args.users)
        name = create_query_function(aws, TABLE, pointer_ttl=args.pointer_ttl)
        invoke = function_invoker(name, account=aws.account_id, region=aws.region)
        operator = access.operator()
        with LocalApi(invoke, region=aws.region, account=aws.account_id) as api:

            def over_http(user: str, x: int | None, exclude: list[str]) -> dict[str, Any]:
                query = "&".join(
                    part
                    for part in (f"x={x}" if x else "", f"exclude={','.join(exclude)}" if exclude else "")
                    if part
                )
                url = f"{api.url}/users/{user}/recommendations" + (f"?{query}" if query else "")
                status, headers, body = call(url, operator, aws.region)
                out: dict[str, Any] = {"status": status, "body": body}
                timing = headers.get("Server-Timing", "")
                if timing.startswith("handler;dur="):
                    out["handler_ms"] = float(timing.split("=", 1)[1])
                return out

            over_http("0", None, [])  # warm: the function's client exists from here on
            calls = {"n": 0}
            lock = threading.Lock()

            def count(**_: Any) -> None:
                with lock:
                    calls["n"] += 1

            for client in query_handler._clients.values():
                client.meta.events.register("before-call.dynamodb.GetItem", count)

            steady = Load(args.clients, args.requests, args.seconds, args.users)
            steady_wall = steady.run(over_http)
            steady_calls = calls["n"]

            flip = Load(args.clients, args.requests, args.seconds, args.users)
            flip_started = threading.Event()

            def writer() -> None:
                flip_started.wait()
                time.sleep(min(2.0, args.seconds / 4))
                publish(aws.client("dynamodb"), "bench-b", args.users)

            thread = threading.Thread(target=writer)
            thread.start()
            flip_started.set()
            flip_wall = flip.run(over_http)
            thread.join()
            flip_calls = calls["n"] - steady_calls

        clear_pointer_cache()
        baseline = Load(args.clients, args.requests, args.seconds, args.users)

        def in_process(user: str, x: int | None, exclude: list[str]) -> dict[str, Any]:
            body = get_recommendations(
                user, table_name=TABLE, dynamodb=dynamodb, x=x, exclude=exclude, cache_ttl=args.pointer_ttl
            )
            return {"status": 200, "body": body}

        baseline_wall = baseline.run(in_process)

    s, f, b = summarize(steady, steady_wall), summarize(flip, flip_wall), summarize(baseline, baseline_wall)
    requests = s["requests"] + f["requests"]
    result = {
        "clients": args.clients,
        "users": args.users,
        "pointer_ttl_s": args.pointer_ttl,
        "requests": requests,
        "errors": s["errors"] + f["errors"],
        "mixed_responses": s["mixed_responses"] + f["mixed_responses"],
        "dynamodb_calls_per_request": round((steady_calls + flip_calls) / requests, 4),
        "p50_ms": s["p50_ms"],
        "p95_ms": s["p95_ms"],
        "p99_ms": s["p99_ms"],
        "rps": s["rps"],
        "handler_p50_ms": s["handler_p50_ms"],
        "handler_p95_ms": s["handler_p95_ms"],
        "handler_p99_ms": s["handler_p99_ms"],
        "steady": s,
        "flip": f,
        "flip_runs_served": f["runs_served"],
        "baseline_in_process": b,
        "rps_vs_in_process": round(s["rps"] / b["rps"], 3) if b["rps"] else None,
        "p50_vs_in_process": round(s["p50_ms"] / b["p50_ms"], 2) if b["p50_ms"] else None,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
