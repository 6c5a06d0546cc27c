"""Peak memory and time of the steps after prepare (repackage, evaluate, publish), each in its own process.

Synthetic power-law data at two or more shapes (default 1M and 3M interactions; users = 5% and
items = 1% of the interactions: 50k users x 10k items, 150k x 30k), written to a moto server in
a separate process (S3 and DynamoDB), so a step's process holds only what the step holds. Per
shape and step: peak RSS (VmHWM), the RSS after imports and client set-up, the increment between
them (what the step itself holds) and the wall time. Fitted growth exponents between the smallest
and the largest shape: log(increment ratio) / log(interaction ratio), and the same for time.

Baselines measured in the same run: repackage reading the whole FM artifact (the path before
streaming, kept as the fallback) against the streamed repackage, and evaluate scoring every user
(`max_users` 0) against the sample (`--max-users`, default `topx:evaluate.max_users`). Each step
also reports its S3 GetObject calls and the bytes of the objects they opened (`get_objects`,
`get_bytes`). The transform is SageMaker's (not a Lambda): its output
is synthesised here at the run's k (x 10, no read extra or related items, `max_k` 40 to keep the
files small; k is the same at every shape, as the quantile rule makes it).

Last stdout line: one JSON object with per-step figures, `max_rss_exponent`, `max_time_exponent`
and the baseline ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import numpy as np

from bench.support import moto_process
from bench.support import steps as steps_support
from bench.support.moto_process import clients, use_bench_credentials
from bench.support.steps import exponent, proc_kb
from bench.support.synthetic import power_law_seen

BUCKET, TABLE = "bench-bucket", "bench-table"
FACTORS, X, MAX_K = 32, 10, 40


# -- the steps, in child processes ---------------------------------------------------------------


def count_gets(s3) -> dict[str, int]:
    """GetObject calls and the bytes of the objects they opened (ContentLength), on this client."""
    got = {"get_objects": 0, "get_bytes": 0}

    def after(http_response, parsed, **_kwargs):
        got["get_objects"] += 1
        got["get_bytes"] += int(parsed.get("ContentLength", 0))

    s3.meta.events.register("after-call.s3.GetObject", after)
    return got


def child(step: str, endpoint: str, run: str, max_users: int) -> None:
    from pipeline_steps.common.config import config_from_dict
    from pipeline_steps.evaluate.config import EvaluateConfig
    from pipeline_steps.evaluate.core import evaluate_run
    from pipeline_steps.publish.config import PublishConfig
    from pipeline_steps.publish.core import publish_run
    from pipeline_steps.repackage import core as repackage
    from pipeline_steps.repackage.config import RepackageConfig
    from tests.prepared_run import event

    s3, dynamodb = clients(endpoint)
    s3.list_buckets()
    dynamodb.list_tables()
    got = count_gets(s3)
    start_rss = proc_kb("VmRSS")
    started = time.perf_counter()
    if step.startswith("repackage"):
        if step == "repackage_whole":

            def whole(*args, **kwargs):
                raise repackage.StreamUnsupportedError("baseline: the whole-artifact path")

            repackage.iter_fm_model = whole  # type: ignore[assignment]
        config = config_from_dict(
            RepackageConfig, {"x": X, "read_extra": 0, "related_x": 0, "max_k": MAX_K}, where="bench"
        )
        ev = {
            "run_id": run,
            "manifest_key": f"runs/{run}/prepared/manifest.json",
            "model_s3_uri": f"s3://{BUCKET}/runs/{run}/fm/model.tar.gz",
        }
        repackage.repackage(s3=s3, bucket=BUCKET, event=ev, config=config)
    elif step.startswith("evaluate"):
        evaluate_run(
            s3=s3,
            bucket=BUCKET,
            event=event(BUCKET, run),
            config=EvaluateConfig(max_users=0 if step == "evaluate_all" else max_users),
        )
    else:
        config = config_from_dict(PublishConfig, {"x": X, "read_extra": 0, "related_x": 0}, where="bench")
        publish_run(
            s3=s3, dynamodb=dynamodb, bucket=BUCKET, table_name=TABLE, event=event(BUCKET, run), config=config
        )
    seconds = time.perf_counter() - started
    peak = proc_kb("VmHWM")
    print(
        json.dumps({"step": step, "seconds": seconds, "start_rss_kb": start_rss, "peak_rss_kb": peak, **got})
    )


def run_child(step: str, endpoint: str, run: str, max_users: int) -> dict:
    return steps_support.run_child(
        __file__, step, "--endpoint", endpoint, "--run", run, "--max-users", str(max_users)
    )


# -- synthetic data ------------------------------------------------------------------------------


def setup_shape(s3, run: str, n: int, seed: int) -> dict:
    from pipeline_steps.formats.fm_model import FMModel, fm_model_bytes
    from tests.prepared_run import put_prepared

    rng = np.random.default_rng(seed)
    n_users, n_items = n // 20, n // 100
    seen = power_law_seen(n, n_users, n_items, rng)
    holdout = [[int(i)] for i in rng.integers(0, n_items, n_users)]
    put_prepared(
        s3,
        BUCKET,
        run,
        users=[f"user-{u:08d}" for u in range(n_users)],
        items=[f"item-{i:07d}" for i in range(n_items)],
        seen=seen,
        holdout=holdout,
    )
    dim = n_users + n_items
    model = FMModel(
        w0=0.0,
        w=rng.normal(size=dim).astype(np.float32),
        V=(rng.normal(size=(dim, FACTORS)) * 0.1).astype(np.float32),
        feature_dim=dim,
        hyperparameters={"predictor_type": "binary_classifier"},
    )
    s3.put_object(Bucket=BUCKET, Key=f"runs/{run}/fm/model.tar.gz", Body=fm_model_bytes(model, mtime=0))
    return {"interactions": int(sum(len(r) for r in seen)), "users": n_users, "items": n_items}


def synth_transform(s3, run: str, seed: int) -> dict:
    """Verbose k-NN output for every query part at the run's k (distinct labels per line)."""
    from tests.prepared_run import put_transform_output

    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=f"runs/{run}/knn/queries/manifest.json")["Body"].read())
    rng = np.random.default_rng(seed)
    k, n_items = qm["k"], qm["n_items"]
    total = 0
    for part, p in enumerate(qm["parts"]):
        base = rng.integers(0, n_items, p["n_users"])
        labels = (base[:, None] + np.arange(k) * 7919) % n_items + 1.0
        distances = np.sort(rng.normal(size=(p["n_users"], k)), axis=1)[:, ::-1]
        key = put_transform_output(s3, BUCKET, run, part, labels, distances)
        total += s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
    return {"k": k, "parts": len(qm["parts"]), "users_over_cap": qm["users_over_cap"], "output_bytes": total}


STEPS = ("repackage_whole", "repackage", "evaluate_all", "evaluate", "publish")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interactions", default="1000000,3000000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child")
    parser.add_argument("--endpoint")
    parser.add_argument("--run")
    parser.add_argument("--only-evaluate", action="store_true", help="skip repackage_whole and publish")
    parser.add_argument(
        "--max-users", type=int, default=None, help="evaluate's sample (default: EvaluateConfig's)"
    )
    args = parser.parse_args()
    use_bench_credentials()
    if args.max_users is None:
        from pipeline_steps.evaluate.config import EvaluateConfig

        args.max_users = EvaluateConfig().max_users
    if args.child:
        child(args.child, args.endpoint, args.run, args.max_users)
        return 0

    endpoint, conn, _server = moto_process.start(moto_process.serve)
    s3, dynamodb = clients(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    from tests.conftest import create_table

    create_table(dynamodb, TABLE)

    shapes, results = [], {step: [] for step in STEPS}
    for index, n in enumerate(int(v) for v in args.interactions.split(",")):
        run = f"bench-{index}"
        shape = setup_shape(s3, run, n, args.seed + index)
        for step in STEPS[:2]:
            if args.only_evaluate and step == "repackage_whole":
                continue
            results[step].append(run_child(step, endpoint, run, args.max_users))
        shape["transform"] = synth_transform(s3, run, args.seed + index)
        for step in STEPS[2:]:
            if args.only_evaluate and step == "publish":
                continue
            results[step].append(run_child(step, endpoint, run, args.max_users))
        shapes.append(shape)
        print(json.dumps({"shape": shape, **{s: results[s][-1] for s in STEPS if results[s]}}))
    conn.send("stop")

    n_a, n_b = shapes[0]["interactions"], shapes[-1]["interactions"]
    steps = {}
    for step, rows in results.items():
        if not rows:
            continue
        inc = [(r["peak_rss_kb"] - r["start_rss_kb"]) / 1024 for r in rows]
        steps[step] = {
            "peak_rss_mb": [round(r["peak_rss_kb"] / 1024, 1) for r in rows],
            "rss_increment_mb": [round(v, 1) for v in inc],
            "seconds": [round(r["seconds"], 2) for r in rows],
            "get_objects": [r["get_objects"] for r in rows],
            "get_bytes": [r["get_bytes"] for r in rows],
            "rss_exponent": exponent(inc[0], inc[-1], n_a, n_b),
            "time_exponent": exponent(rows[0]["seconds"], rows[-1]["seconds"], n_a, n_b),
        }
    bounded = [s for s in ("repackage", "evaluate", "publish") if s in steps]
    summary = {
        "shapes": shapes,
        "steps": steps,
        "max_rss_exponent": max(steps[s]["rss_exponent"] or 0.0 for s in bounded),
        "max_time_exponent": max(steps[s]["time_exponent"] or 0.0 for s in bounded),
        "repackage_stream_vs_whole_rss_increment": [
            round(a / b, 3) if b else None
            for a, b in zip(
                steps["repackage"]["rss_increment_mb"],
                steps["repackage_whole"]["rss_increment_mb"],
                strict=True,
            )
        ]
        if "repackage_whole" in steps
        else None,
        "evaluate_sample_vs_all_seconds": [
            round(a / b, 3) if b else None
            for a, b in zip(steps["evaluate"]["seconds"], steps["evaluate_all"]["seconds"], strict=True)
        ],
    }
    summary["evaluate_sample_vs_all_get_bytes"] = [
        round(a / b, 3) if b else None
        for a, b in zip(steps["evaluate"]["get_bytes"], steps["evaluate_all"]["get_bytes"], strict=True)
    ]
    summary["evaluate_max_users"] = args.max_users
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
