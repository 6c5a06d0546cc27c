"""Time and peak memory of every pipeline step, each in its own process, at growing synthetic sizes.

Synthetic power-law interactions (`bench/support/synthetic.py`: Pareto user activity, Zipf-like
items, rows drawn with replacement so prepare de-duplicates), with users = 3% and items = 0.3% of
the rows, as in issue 12's probe (10M rows -> ~295k users x 30k items). Default sizes 1M, 3M, 10M
and 30M rows (`--sizes`). The data lives on a moto server in its own process (S3 and DynamoDB,
`bench/support/moto_process.py`), so a step's process holds only what the step holds. Per size,
each in a fresh process, in pipeline order:

- ``prepare``: the prepare core on the CSV in the bucket, per engine (`--engines`: `duckdb`, the
  in-process one; `spark`, `spark_engine.run_spark_prepare` on PySpark `local[*]`, decision 0016),
  with the deployed defaults of `topx:prepare` and `negative_draws` 1. Later steps read DuckDB's outputs.
- ``fm``: the local FM trainer as a CreateTrainingJob request (`topx:fm.hyperparameters` of
  cdk.json, `epochs` 1; the test channel is scored, as the state machine sends it).
- ``repackage``, ``knn_train`` (local k-NN index), ``transform`` (local batch transform of the user
  and item queries), ``evaluate`` (its default `max_users` sample) and ``publish`` (the one-Lambda
  path, against the moto DynamoDB), each with the deployed defaults of cdk.json.

Per step and size: wall and CPU seconds, peak RSS (VmHWM) and the increment above the RSS after
imports and client set-up (what the step itself holds; the Spark engine's JVM is a separate process
and is not in it), the step's input rows. Growth exponents per step: least-squares slope of
log(seconds) and log(RSS increment) on log(rows) over the sizes. Baseline in the same run: each
step's time at the largest size against the smallest one's scaled linearly (`vs_linear`). A PNG
plot goes under `--out` (default `bench-output/scale/`, git-ignored).

Last stdout line: one JSON object with `max_time_exponent`, `max_rss_exponent`, per-step figures
per size, `prepare_rows_per_core_s` (DuckDB) and `spark_rows_per_core_s` (rows / (seconds after the
Spark session's start-up × cores); null when `--engines` leaves Spark out, see `spark_status`).

`--index-type` sets `topx:knn.hyperparameters.index_type` for the k-NN training (default: cdk.json's,
`faiss.Flat`), so the transform's growth can be measured with `faiss.IVFFlat` (decision 0019).

    .venv/bin/python bench/scale.py [--sizes 1000000,3000000,10000000,30000000] [--engines duckdb,spark]
                                    [--index-type faiss.IVFFlat] [--out DIR] [--seed 0]
                                    [--profile profiles/100m.json] [--spark-max-rows N]

`--profile FILE`: every step takes the named configuration's values as the app resolves them for
`-c topx:profile=FILE` (its recipe's draws, negatives and epochs instead of the bench's one draw and
one epoch); `topx:fm.instance_count` becomes prepare's train shards and
`topx:transform.instance_count` repackage's query parts (one local process trains and transforms
them all), and a Spark `topx:prepare.engine` adds the Spark engine (`--spark-max-rows` bounds the
sizes it runs at; later steps read DuckDB's outputs either way). The JSON then has `profile`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support import moto_process  # noqa: E402
from bench.support import steps as support  # noqa: E402
from bench.support.moto_process import clients, use_bench_credentials  # noqa: E402
from bench.support.synthetic import scale_csv  # noqa: E402

BUCKET, REGION = "bench-bucket", "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/bench-sagemaker"  # the local jobs only log it
DEFAULT_SIZES = "1000000,3000000,10000000,30000000"
STEPS = ("prepare", "fm", "repackage", "knn_train", "transform", "evaluate", "publish")
ENGINES = ("duckdb", "spark")
DEFAULT_OUT = ROOT / "bench-output" / "scale"


# `--profile`: the named configuration every step takes its values from (set in the parent and,
# through the state, in each child); None = cdk.json's defaults with the bench's two reductions.
PROFILE: str | None = None


def context() -> dict[str, Any]:
    """The deployed defaults: cdk.json's context (what `cdk deploy` uses without `-c`), or with
    `--profile` the sections as the app resolves them for `-c topx:profile=<file>` (the profile
    layered over cdk.json, its recipe applied, the shared values injected: prepare's `min_shards` =
    `topx:fm.instance_count`, repackage's `transform_instance_count`)."""
    base: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    if PROFILE is None:
        return base
    return base | profile_sections(PROFILE, base)


def profile_sections(profile: str, base: dict[str, Any]) -> dict[str, Any]:
    """The `topx:` sections the steps read, from the AppConfig the app builds with this profile."""
    from dataclasses import asdict

    from infra.config import AppConfig
    from infra.profiles import PROFILE_KEY, with_profile

    config = AppConfig.from_context(with_profile({**base, PROFILE_KEY: profile}, base, root=ROOT))
    steps = config.steps
    return {
        "topx:x": steps.publish.x,
        "topx:recipe": steps.prepare.recipe,
        "topx:fm": asdict(config.fm),
        "topx:knn": asdict(config.knn),
        "topx:transform": asdict(config.transform),
        "topx:lambda": asdict(config.lambdas),
        "topx:state_machine_timeout_hours": config.state_machine_timeout_hours,
        **{
            f"topx:{name}": asdict(getattr(steps, name))
            for name in ("prepare", "repackage", "evaluate", "publish")
        },
    }


# -- the steps, in child processes ---------------------------------------------------------------


def _prepare_config(state: dict) -> Any:
    from pipeline_steps.prepare.config import PrepareConfig

    defaults = {k: v for k, v in context()["topx:prepare"].items() if v is not None}
    # without a profile, one negative draw (the FM rows of section 1 of docs/scale.md); with one, its recipe's
    reduced = {} if PROFILE else {"negative_draws": 1}
    return PrepareConfig.from_dict(
        {**defaults, "input_prefix": state["input_prefix"], **reduced}, where="bench"
    )


def step_prepare(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.common.layout import RunLayout
    from pipeline_steps.prepare.core import prepare, step_output
    from pipeline_steps.prepare.engine import THREADS
    from pipeline_steps.prepare.storage import S3Storage

    storage, layout = S3Storage(BUCKET, s3), RunLayout(state["run"])
    manifest = prepare(
        _prepare_config(state),
        source=storage,
        sink=storage,
        run_id=state["run"],
        out_prefix=layout.prepared,
        bucket=BUCKET,
    )
    out = step_output(manifest, storage, layout.manifest)
    counts = manifest["counts"]
    return {"result": out, "input_rows": state["rows"], "cores": THREADS, "counts": counts}


def step_prepare_spark(s3: Any, _dynamodb: Any, state: dict) -> dict:
    """The Spark engine (`run_spark_prepare`, decision 0016) on the same input and config, into its
    own run prefix, on PySpark `local[*]`; its timings give the session's start-up and the cores."""
    from pipeline_steps.common.layout import RunLayout
    from pipeline_steps.prepare.spark_engine import run_spark_prepare
    from pipeline_steps.prepare.storage import S3Storage

    run = state["run"] + "-spark"
    storage = S3Storage(BUCKET, s3)
    _manifest, timings = run_spark_prepare(
        _prepare_config(state),
        source=storage,
        sink=storage,
        run_id=run,
        out_prefix=RunLayout(run).prepared,
        bucket=BUCKET,
    )
    return {
        "input_rows": state["rows"],
        "cores": int(timings["cores"]),
        "startup_seconds": float(timings["startup_s"]),
        "timings": timings,
    }


def _channel(name: str, uri: str) -> dict:
    source = {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
    return {
        "ChannelName": name,
        "ContentType": "application/x-recordio-protobuf",
        "InputMode": "File",
        "DataSource": {"S3DataSource": source},
    }


def _training_request(algorithm: str, name: str, hyper: dict, channels: list, output: str) -> dict:
    """A CreateTrainingJob request shaped like infra/sagemaker_tasks.training_request's."""
    from infra.images import image_uri

    job = context()[f"topx:{algorithm}"]
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri(algorithm, REGION),
            "TrainingInputMode": "File",
        },
        "RoleArn": ROLE,
        "HyperParameters": hyper,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {
            "InstanceType": job["instance_type"],
            "InstanceCount": job["instance_count"],
            "VolumeSizeInGB": job["volume_gb"],
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 7 * 86400},
        "EnableNetworkIsolation": True,
    }


def _completed(describe: dict, status: str) -> dict:
    if describe.get(status) != "Completed":
        raise RuntimeError(f"local job {status}={describe.get(status)}: {describe.get('FailureReason')}")
    return describe


def step_fm(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.local_algorithms import run_training_job

    prep, run = state["prepare"], state["run"]
    hyper = {**context()["topx:fm"]["hyperparameters"], "feature_dim": prep["feature_dim"]}
    if PROFILE is None:
        hyper["epochs"] = "1"  # with a profile, its recipe's epochs
    channels = [_channel("train", prep["train_s3_uri"])]
    if prep["test_s3_uri"]:
        channels.append(_channel("test", prep["test_s3_uri"]))
    request = _training_request("fm", f"{run}-fm", hyper, channels, f"s3://{BUCKET}/runs/{run}/fm/")
    describe = _completed(run_training_job(request, s3=s3, log=lambda _m: None), "TrainingJobStatus")
    return {
        "model_s3_uri": describe["ModelArtifacts"]["S3ModelArtifacts"],
        "input_rows": prep["train_rows"] + prep["test_rows"],
        "train_rows": prep["train_rows"],
        "test_rows": prep["test_rows"],
    }


def _repackage_config() -> Any:
    from pipeline_steps.common.config import config_from_dict
    from pipeline_steps.repackage.config import RepackageConfig

    ctx = context()
    publish, transform = ctx["topx:publish"], ctx["topx:transform"]
    values = {
        "x": ctx["topx:x"],
        "k_quantile": ctx["topx:repackage"]["k_quantile"],
        "read_extra": publish["read_extra"],
        "related_x": publish["related_x"],
        "max_payload_mb": transform["max_payload_mb"],
        "response_budget_bytes": transform["response_budget_bytes"],
        "transform_instance_count": transform["instance_count"],
    }
    return config_from_dict(RepackageConfig, values, where="bench")


def step_repackage(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.repackage.core import repackage

    run, prep = state["run"], state["prepare"]
    event = {"run_id": run, "manifest_key": prep["manifest_key"], "model_s3_uri": state["fm"]["model_s3_uri"]}
    result = repackage(s3=s3, bucket=BUCKET, event=event, config=_repackage_config())
    qm = json.loads(s3.get_object(Bucket=BUCKET, Key=result["queries_manifest_key"])["Body"].read())
    return {
        "result": result,
        "input_rows": prep["n_users"] + prep["n_items"],  # rows of the FM model streamed
        "k": qm["k"],
        "k_all_users": qm["k_all_users"],
        "n_parts": result["n_parts"],  # user + related query parts = transform objects, publish children
        "users_over_cap": qm["users_over_cap"],
    }


def step_knn_train(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.local_algorithms import run_training_job

    rep, run = state["repackage"]["result"], state["run"]
    hyper = {
        **context()["topx:knn"]["hyperparameters"],
        "feature_dim": rep["feature_dim"],
        "k": rep["k"],
        "sample_size": rep["sample_size"],
    }
    if state.get("index_type"):
        hyper["index_type"] = state["index_type"]
    channels = [_channel("train", rep["knn_train_s3_uri"])]
    request = _training_request("knn", f"{run}-knn", hyper, channels, f"s3://{BUCKET}/runs/{run}/knn/model/")
    describe = _completed(run_training_job(request, s3=s3, log=lambda _m: None), "TrainingJobStatus")
    return {
        "model_s3_uri": describe["ModelArtifacts"]["S3ModelArtifacts"],
        "input_rows": state["prepare"]["n_items"],
    }


def step_transform(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.local_algorithms import run_transform_job
    from tests.prepared_run import event

    transform, run, prep = context()["topx:transform"], state["run"], state["prepare"]
    request = {
        "TransformJobName": f"{run}-transform",
        "ModelName": f"{run}-knn",
        "MaxPayloadInMB": transform["max_payload_mb"],
        "MaxConcurrentTransforms": transform["max_concurrent_transforms"],
        "BatchStrategy": "MultiRecord",
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": state["repackage"]["result"]["queries_s3_uri"],
                }
            },
            "ContentType": "application/x-recordio-protobuf",
            "SplitType": "RecordIO",
        },
        "TransformOutput": {
            "S3OutputPath": event(BUCKET, run)["transform_output_s3_uri"],
            "Accept": "application/jsonlines; verbose=true",
            "AssembleWith": "Line",
        },
        "TransformResources": {
            "InstanceType": transform["instance_type"],
            "InstanceCount": transform["instance_count"],
        },
    }
    model_uri = state["knn_train"]["model_s3_uri"]
    describe = run_transform_job(request, s3=s3, model_resolver=lambda _n: model_uri, log=lambda _m: None)
    _completed(describe, "TransformJobStatus")
    return {"input_rows": prep["n_users"] + prep["n_items"]}  # user queries + related item queries


def step_evaluate(s3: Any, _dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.common.config import config_from_dict
    from pipeline_steps.evaluate.config import EvaluateConfig
    from pipeline_steps.evaluate.core import evaluate_run
    from tests.prepared_run import event

    ctx = context()
    values = {k: v for k, v in ctx["topx:evaluate"].items() if v is not None} | {"x": ctx["topx:x"]}
    config = config_from_dict(EvaluateConfig, values, where="bench")
    result = evaluate_run(s3=s3, bucket=BUCKET, event=event(BUCKET, state["run"]), config=config)
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=result["metrics_key"])["Body"].read())
    return {
        "input_rows": doc["n_eval_users"],
        "max_users": config.max_users,
        "users_filled": doc["users_filled"],
        "transform_output": doc["transform_output"],
        "precision": doc["model"].get("precision"),
        "baseline_precision": doc["baseline"].get("precision"),
    }


def step_publish(s3: Any, dynamodb: Any, state: dict) -> dict:
    from pipeline_steps.common.config import config_from_dict
    from pipeline_steps.publish.config import PublishConfig
    from pipeline_steps.publish.core import publish_run
    from tests.prepared_run import event

    ctx = context()
    values = {k: ctx["topx:publish"][k] for k in ("ttl_days", "read_extra", "related_x")} | {
        "x": ctx["topx:x"]
    }
    config = config_from_dict(PublishConfig, values, where="bench")
    result = publish_run(
        s3=s3,
        dynamodb=dynamodb,
        bucket=BUCKET,
        table_name=state["table"],
        event=event(BUCKET, state["run"]),
        config=config,
    )
    prep = state["prepare"]
    return {"input_rows": prep["n_users"] + prep["n_items"], "result": result}


CHILD_STEPS = {
    "prepare": step_prepare,
    "prepare_spark": step_prepare_spark,
    "fm": step_fm,
    "repackage": step_repackage,
    "knn_train": step_knn_train,
    "transform": step_transform,
    "evaluate": step_evaluate,
    "publish": step_publish,
}


def _import_everything() -> None:
    """Every module any step uses, before the baseline RSS: the same baseline for every step."""
    import duckdb  # noqa: F401

    import pipeline_steps.evaluate.core
    import pipeline_steps.local_algorithms
    import pipeline_steps.prepare.core
    import pipeline_steps.publish.core
    import pipeline_steps.repackage.core  # noqa: F401
    import tests.prepared_run  # noqa: F401


def child(step: str, endpoint: str, state: dict) -> None:
    global PROFILE
    PROFILE = state.get("profile")
    _import_everything()
    s3, dynamodb = clients(endpoint)
    s3.list_buckets()
    dynamodb.list_tables()
    start_rss = support.proc_kb("VmRSS")
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    out = CHILD_STEPS[step](s3, dynamodb, state)
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    figures = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "start_rss_kb": start_rss,
        "peak_rss_kb": support.proc_kb("VmHWM"),
    }
    print(json.dumps({"step": step, **figures, **out}))


# -- the parent: data, the sequence of steps, the fits -------------------------------------------


def write_input(s3: Any, tmp: Path, rows: int, seed: int, prefix: str) -> dict:
    """The CSV of one size, generated locally then put in the bucket (neither is timed as a step)."""
    path = tmp / f"interactions-{rows}.csv"
    started = time.perf_counter()
    n_users, n_items = scale_csv(path, rows, seed)
    s3.upload_file(str(path), BUCKET, prefix + "interactions.csv")
    size = path.stat().st_size
    path.unlink()
    return {
        "rows": rows,
        "users_drawn_from": n_users,
        "items_drawn_from": n_items,
        "csv_bytes": size,
        "setup_seconds": round(time.perf_counter() - started, 1),
    }


def delete_prefix(s3: Any, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def run_size(s3: Any, dynamodb: Any, endpoint: str, index: int, rows: int, args: argparse.Namespace) -> dict:
    from tests.conftest import create_table

    run, prefix = f"scale-{index}", f"input/scale-{index}/"
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        shape = write_input(s3, tmp, rows, args.seed + index, prefix)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    state: dict[str, Any] = {
        "run": run,
        "rows": rows,
        "input_prefix": prefix,
        "table": f"bench-table-{index}",
        "index_type": args.index_type,
        "profile": PROFILE,
    }
    create_table(dynamodb, state["table"])
    figures: dict[str, dict] = {}

    def step(name: str, child_step: str | None = None) -> dict:
        result = support.run_child(
            __file__, child_step or name, "--endpoint", endpoint, "--state", json.dumps(state)
        )
        print(json.dumps({"size": rows, **{k: v for k, v in result.items() if k != "result"}}), flush=True)
        return result

    if "spark" in args.engines and rows <= args.spark_max_rows:
        figures["prepare_spark"] = step("prepare_spark")
    prep = step("prepare")
    figures["prepare"], state["prepare"] = prep, prep["result"]
    shape |= {
        "counts": prep["counts"],
        "n_users": prep["result"]["n_users"],
        "n_items": prep["result"]["n_items"],
    }
    delete_prefix(s3, prefix)  # the CSV: only prepare reads it
    for name in STEPS[1:]:
        figures[name] = state[name] = step(name)
        if name == "fm":  # the FM channels: only the trainer reads them
            delete_prefix(s3, f"runs/{run}/prepared/train/")
            delete_prefix(s3, f"runs/{run}/prepared/test/")
    shape |= {k: figures["repackage"][k] for k in ("k", "k_all_users", "users_over_cap", "n_parts")}
    shape["evaluate"] = {
        k: figures["evaluate"][k] for k in ("users_filled", "precision", "baseline_precision")
    }
    for prefix_done in (f"runs/{run}/", f"runs/{run}-spark/"):
        delete_prefix(s3, prefix_done)
    dynamodb.delete_table(TableName=state["table"])
    return {"shape": shape, "figures": figures}


def summarise(
    all_sizes: list[int], per_size: list[dict], engines: list[str], index_type: str | None = None
) -> dict:
    names = [s for s in ("prepare_spark", *STEPS) if any(s in p["figures"] for p in per_size)]
    steps: dict[str, dict] = {}
    for name in names:
        # the sizes the step ran at (`--spark-max-rows` leaves the Spark engine out above it)
        ran = [
            (n, p["figures"][name]) for n, p in zip(all_sizes, per_size, strict=True) if name in p["figures"]
        ]
        sizes = [n for n, _ in ran]
        rows = [r for _, r in ran]
        seconds = [r["seconds"] for r in rows]
        inc = [max(r["peak_rss_kb"] - r["start_rss_kb"], 0) / 1024 for r in rows]
        steps[name] = {
            "sizes": sizes,
            "input_rows": [r["input_rows"] for r in rows],
            "seconds": [round(v, 2) for v in seconds],
            "cpu_seconds": [round(r["cpu_seconds"], 2) for r in rows],
            "peak_rss_mb": [round(r["peak_rss_kb"] / 1024, 1) for r in rows],
            "rss_increment_mb": [round(v, 1) for v in inc],
            "us_per_input_row": [
                round(1e6 * s / max(r["input_rows"], 1), 3) for s, r in zip(seconds, rows, strict=True)
            ],
            "cpu_us_per_input_row": [
                round(1e6 * r["cpu_seconds"] / max(r["input_rows"], 1), 3) for r in rows
            ],
            "rss_bytes_per_input_row": [
                round(v * 2**20 / max(r["input_rows"], 1), 1) for v, r in zip(inc, rows, strict=True)
            ],
            "time_exponent": support.fit_exponent(sizes, seconds),
            # CPU time: less sensitive than wall time to other processes sharing the machine
            "cpu_time_exponent": support.fit_exponent(sizes, [r["cpu_seconds"] for r in rows]),
            "rss_exponent": support.fit_exponent(sizes, inc),
            # the baseline: the smallest size's time scaled linearly to the largest
            "vs_linear": round(seconds[-1] / (seconds[0] * sizes[-1] / sizes[0]), 3)
            if len(sizes) > 1
            else None,
        }
    time_exp = {s: v["time_exponent"] for s, v in steps.items() if v["time_exponent"] is not None}
    rss_exp = {s: v["rss_exponent"] for s, v in steps.items() if v["rss_exponent"] is not None}
    cpu_exp = {s: v["cpu_time_exponent"] for s, v in steps.items() if v["cpu_time_exponent"] is not None}
    prep = [p["figures"]["prepare"] for p in per_size]
    out: dict[str, Any] = {
        "sizes": all_sizes,
        "shapes": [p["shape"] for p in per_size],
        "steps": steps,
        "max_time_exponent": max(time_exp.values()) if time_exp else None,
        "max_time_exponent_step": max(time_exp, key=time_exp.__getitem__) if time_exp else None,
        "max_cpu_time_exponent": max(cpu_exp.values()) if cpu_exp else None,
        "max_cpu_time_exponent_step": max(cpu_exp, key=cpu_exp.__getitem__) if cpu_exp else None,
        "max_rss_exponent": max(rss_exp.values()) if rss_exp else None,
        "max_rss_exponent_step": max(rss_exp, key=rss_exp.__getitem__) if rss_exp else None,
        # rows / (wall seconds x the engine's threads), at the largest size; and per CPU-second
        "prepare_rows_per_core_s": round(prep[-1]["input_rows"] / (prep[-1]["seconds"] * prep[-1]["cores"])),
        "prepare_rows_per_cpu_s": round(prep[-1]["input_rows"] / prep[-1]["cpu_seconds"]),
        "prepare_cores": prep[-1]["cores"],
        "spark_rows_per_core_s": None,
        "spark_startup_seconds": None,
        "engines": engines,
        "index_type": index_type or context()["topx:knn"]["hyperparameters"].get("index_type", "faiss.Flat"),
    }
    if "spark" in engines and "prepare_spark" in steps:
        spark = [p["figures"]["prepare_spark"] for p in per_size if "prepare_spark" in p["figures"]][-1]
        busy = max(spark["seconds"] - spark["startup_seconds"], 1e-9)
        out["spark_rows_per_core_s"] = round(spark["input_rows"] / (busy * spark["cores"]))
        out["spark_startup_seconds"] = round(spark["startup_seconds"], 2)
        out["spark_status"] = "measured (start-up excluded from the per-core figure)"
    else:
        out["spark_status"] = "not requested (--engines)"
    return out


# steps whose figures make a size's shape: without them the size cannot be summarised
SHAPE_STEPS = ("prepare", "repackage", "evaluate")


def per_size_from_log(text: str) -> tuple[list[int], list[dict]]:
    """The sizes and per-size figures from the per-step lines a run printed (`--from-log`): the
    summary of a run whose last line is missing can be made again without running it.

    A run stopped by a failed step (e.g. publish at the largest size) is summarised too: each other
    step is fitted over the sizes it has, and the size lists the missing steps (`missing_steps`)."""
    figures: dict[int, dict[str, dict]] = {}
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "size" in doc and "step" in doc:
            figures.setdefault(int(doc["size"]), {})[doc["step"]] = doc
    sizes = sorted(figures)
    per_size = []
    for rows in sizes:
        fig = figures[rows]
        missing = [step for step in STEPS if step not in fig]
        if any(step in missing for step in SHAPE_STEPS):
            raise SystemExit(f"--from-log: size {rows} has no line for {missing}")
        shape = {"rows": rows, "counts": fig["prepare"]["counts"]}
        if missing:
            shape["missing_steps"] = missing
        shape |= {k: fig["repackage"][k] for k in ("k", "k_all_users", "users_over_cap", "n_parts")}
        shape["evaluate"] = {
            k: fig["evaluate"][k] for k in ("users_filled", "precision", "baseline_precision")
        }
        per_size.append({"shape": shape, "figures": fig})
    return sizes, per_size


def profile_engines(engines: list[str]) -> list[str]:
    """`--engines` plus the Spark engine when the profile's prepare runs on Spark."""
    wanted = context()["topx:prepare"]["engine"] == "spark"
    return [*engines, "spark"] if wanted and "spark" not in engines else engines


def profile_summary(profile: str) -> dict[str, Any]:
    """The profile's values as the bench used them (and what each became locally)."""
    ctx = context()
    fm, transform, prepare = ctx["topx:fm"], ctx["topx:transform"], ctx["topx:prepare"]
    return {
        "file": profile,
        "recipe": ctx["topx:recipe"],
        "negative_draws": prepare["negative_draws"],
        "negative_ratio": prepare["negative_ratio"],
        "epochs": fm["hyperparameters"]["epochs"],
        "fm_instance_count": fm["instance_count"],  # locally: prepare's min_shards (train shards)
        "min_shards": prepare["min_shards"],
        "transform_instance_count": transform["instance_count"],  # locally: repackage's parts
        "prepare_engine": prepare["engine"],
        "spark_instance_type": prepare["spark_instance_type"],
        "spark_instance_count": prepare["spark_instance_count"],
        "lambda_memory_mb": ctx["topx:lambda"]["memory_mb"],
        "evaluate_max_users": ctx["topx:evaluate"]["max_users"],
        "publish_users_per_child": ctx["topx:publish"]["users_per_child"],
        "state_machine_timeout_hours": ctx["topx:state_machine_timeout_hours"],
    }


def plot(summary: dict, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 5))
    for name, s in summary["steps"].items():
        ax_t.plot(s["sizes"], s["seconds"], marker="o", label=f"{name} ({s['time_exponent']})")
        ax_m.plot(
            s["sizes"],
            [max(v, 0.1) for v in s["rss_increment_mb"]],
            marker="o",
            label=f"{name} ({s['rss_exponent']})",
        )
    for ax, title, unit in ((ax_t, "wall time", "seconds"), (ax_m, "peak RSS above imports", "MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions (input rows)")
        ax.set_ylabel(unit)
        ax.set_title(f"{title} per step (fitted exponent)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scale.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated interaction counts")
    parser.add_argument("--engines", default=",".join(ENGINES), help="prepare engines: duckdb,spark")
    parser.add_argument(
        "--index-type",
        choices=("faiss.Flat", "faiss.IVFFlat"),
        help="k-NN index_type for the k-NN training (default: cdk.json's topx:knn.hyperparameters)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory of the PNG plot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile",
        help="a configuration file (profiles/*.json, as `cdk synth -c topx:profile=FILE` takes it): every "
        "step takes its values; its instance counts become train shards and transform parts; "
        "`topx:prepare.engine` spark adds the Spark engine",
    )
    parser.add_argument(
        "--spark-max-rows",
        type=int,
        default=None,
        help="run the Spark engine only at sizes up to this many rows (default: every size)",
    )
    parser.add_argument(
        "--from-log",
        type=Path,
        help="summarise the per-step lines a run printed (its stdout) instead of running",
    )
    parser.add_argument("--child")
    parser.add_argument("--endpoint")
    parser.add_argument("--state")
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    use_bench_credentials()
    if args.child:
        child(args.child, args.endpoint, json.loads(args.state))
        return 0
    if args.from_log is not None:
        return summarise_log(args)
    sizes = sorted(int(v) for v in args.sizes.split(","))
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if PROFILE is not None:
        engines = profile_engines(engines)
    if args.spark_max_rows is None:
        args.spark_max_rows = max(sizes)
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown or "duckdb" not in engines:
        parser.error(f"--engines: duckdb plus any of {ENGINES}; got {args.engines!r}")
    args.engines = engines

    endpoint, conn, _server = moto_process.start(moto_process.serve)
    s3, dynamodb = clients(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    per_size = []
    try:
        for index, rows in enumerate(sizes):
            per_size.append(run_size(s3, dynamodb, endpoint, index, rows, args))
    finally:
        conn.send("stop")
    summary = summarise(sizes, per_size, engines, args.index_type)
    path = plot(summary, args.out).resolve()
    summary["plot"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    if PROFILE is not None:
        summary["profile"] = profile_summary(PROFILE)
    summary["cpu_count"] = os.cpu_count()
    summary["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(summary))
    return 0


def summarise_log(args: argparse.Namespace) -> int:
    sizes, per_size = per_size_from_log(args.from_log.read_text())
    engines = ["duckdb", "spark"] if any("prepare_spark" in p["figures"] for p in per_size) else ["duckdb"]
    summary = summarise(sizes, per_size, engines)
    path = plot(summary, args.out).resolve()
    summary["plot"] = str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    if PROFILE is not None:
        summary["profile"] = profile_summary(PROFILE)
    summary["from_log"] = args.from_log.name
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
