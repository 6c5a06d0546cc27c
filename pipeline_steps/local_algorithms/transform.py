"""Local SageMaker batch transform for k-NN models: a CreateTransformJob request in, a
DescribeTransformJob-shaped dict out (same failure conventions as ``jobs.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from . import knn, s3io
from .hyperparameters import ClientError
from .jobs import _ACCOUNT, _REGION, RECORDIO, Log, _failed, _now, _require, check_security

JSONLINES = "application/jsonlines"
QUERY_BATCH = 4096  # queries per search call (faiss blocks BLAS by 4096 queries); memory ~ 2 x batch x k
MIN_QUERY_BATCH = 256  # smaller objects are still cut in ~4 batches so writing overlaps searching
SPOOL_BYTES = 64 << 20  # transform output kept in memory up to this size, then spilled to disk
_TRANSFORM_KEYS = {
    "output": ("TransformOutput", "KmsKeyId"),
    "volume": ("TransformResources", "VolumeKmsKeyId"),
}


def load_knn_model(s3: Any, model_data_url: str) -> knn.KNNModel:
    from pipeline_steps.formats import artifact

    try:
        bucket, key = s3io.split_uri(model_data_url)
        body = s3io.get_bytes(s3, bucket, key)
    except Exception as e:
        raise ClientError(f"could not read model data {model_data_url}: {e}") from None
    try:
        members = {m.name: m.data for m in artifact.read_model_tar_gz(body)}
    except artifact.ArtifactError as e:
        raise ClientError(f"model data {model_data_url}: {e}") from None
    wanted = ("model_algo-1", "model_algo-1.labels", "model_algo-1.json")
    if not all(m in members for m in wanted):
        raise ClientError(f"model data {model_data_url} is not a k-NN model (members: {sorted(members)})")
    return knn.deserialize(*(members[m] for m in wanted))


def _output_key(prefix_uri: str, key: str) -> str:
    """Name of an input object relative to the input prefix's folder (SageMaker keeps it + ".out")."""
    _, prefix = s3io.split_uri(prefix_uri)
    base = prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""
    return key[len(base) :]


def transform_object(
    model: knn.KNNModel, body: bytes, out, *, verbose: bool, where: str, timings: dict | None = None
) -> int:
    """Search every record of one RecordIO object; write one JSON line per record to ``out``.

    ``timings`` (optional) accumulates seconds spent in "read", "search" (wall time of the
    search calls, which overlap with writing) and "write".
    """
    from pipeline_steps.formats import knn_output, recordio

    clock = timings if timings is not None else {}
    started = time.perf_counter()
    try:
        Q, _ = recordio.read_dense(body)
    except ValueError as e:
        raise ClientError(f"{where}: not RecordIO-protobuf: {e}") from None
    if Q.shape[0] and Q.shape[1] != model.index.d:
        raise ClientError(
            f"{where}: records have {Q.shape[1]} features but the model expects {model.index.d}"
        )
    clock["read"] = clock.get("read", 0.0) + time.perf_counter() - started
    # faiss releases the GIL, so the next batch can be searched while this one is written, but only
    # with a core to spare: faiss's BLAS/OpenMP threads use every core by default, and a writer
    # thread beside them made the search 2x slower on 2 cores (bench/knn.py), more than it saved.
    overlap = _spare_core()
    batch = _batch_size(Q.shape[0]) if overlap else QUERY_BATCH
    starts = range(0, Q.shape[0], batch)
    with ThreadPoolExecutor(max_workers=1) as pool:
        submit = pool.submit if overlap else _run_now
        pending = submit(_search_batch, model, Q[:batch]) if len(starts) else None
        for start in starts:
            dist, labels, predicted, seconds = pending.result()
            if start + batch < Q.shape[0]:
                pending = submit(_search_batch, model, Q[start + batch : start + 2 * batch])
            t0 = time.perf_counter()
            if verbose:
                knn_output.write_results(out, labels, dist, predicted, predictor_type=model.predictor_type)
            else:
                out.write(
                    "".join(json.dumps({"predicted_label": float(p)}) + "\n" for p in predicted).encode()
                )
            clock["search"] = clock.get("search", 0.0) + seconds
            clock["write"] = clock.get("write", 0.0) + time.perf_counter() - t0
    return int(Q.shape[0])


def _spare_core() -> bool:
    import faiss

    return (os.cpu_count() or 1) > faiss.omp_get_max_threads()


def _run_now(fn: Callable, *args: Any) -> Future:
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def _batch_size(n_queries: int) -> int:
    """QUERY_BATCH, but at least four batches for objects of a few thousand queries (overlap)."""
    return max(1, min(QUERY_BATCH, max(MIN_QUERY_BATCH, -(-n_queries // 4))))


def _search_batch(model: knn.KNNModel, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    started = time.perf_counter()
    dist, labels = knn.search(model, Q)
    predicted = knn.predict(model, labels)
    return dist, labels, predicted, time.perf_counter() - started


def run_transform_job(
    request: dict,
    *,
    s3: Any = None,
    model_resolver: Callable[[str], str],
    log: Log = print,
    timings: dict | None = None,
) -> dict:
    """Run a CreateTransformJob request for a k-NN model locally; returns a DescribeTransformJob dict.

    ``timings`` (optional, for benchmarks) accumulates seconds in "read", "search", "write", "s3".
    """
    name = _require(request, "TransformJobName")
    model_name = _require(request, "ModelName")
    input_uri = _require(request, "TransformInput", "DataSource", "S3DataSource", "S3Uri")
    output_path = _require(request, "TransformOutput", "S3OutputPath")
    kms_key = check_security(request, log, keys=_TRANSFORM_KEYS, network=False)  # the model's
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    created = _now()
    describe: dict[str, Any] = {
        "TransformJobName": name,
        "TransformJobArn": f"arn:aws:sagemaker:{_REGION}:{_ACCOUNT}:transform-job/{name.lower()}",
        "ModelName": model_name,
        "TransformInput": request["TransformInput"],
        "TransformOutput": request["TransformOutput"],
        "TransformResources": request.get("TransformResources", {}),
        "CreationTime": created,
        "TransformStartTime": created,
    }
    try:
        _transform(request, s3, model_resolver(model_name), input_uri, output_path, log, timings, kms_key)
    except ClientError as e:
        return _failed(describe, "TransformJobStatus", f"ClientError: {e}", log)
    except Exception as e:
        return _failed(describe, "TransformJobStatus", f"AlgorithmError: {type(e).__name__}: {e}", log)
    end = _now()
    describe.update(TransformJobStatus="Completed", TransformEndTime=end, LastModifiedTime=end)
    return describe


def _transform(
    request: dict,
    s3: Any,
    model_url: str,
    input_uri: str,
    output_path: str,
    log: Log,
    timings: dict | None,
    kms_key: str | None = None,
) -> None:
    tin, tout = request["TransformInput"], request["TransformOutput"]
    source = tin["DataSource"]["S3DataSource"]
    if source.get("S3DataType", "S3Prefix") != "S3Prefix":
        raise ClientError("only S3DataType S3Prefix is supported locally")
    content_type = (tin.get("ContentType") or "").split(";")[0].strip()
    if content_type != RECORDIO:
        raise ClientError(f"content type {tin.get('ContentType')!r} is not supported; use {RECORDIO}")
    if tin.get("SplitType", "None") not in ("RecordIO", "None", None):
        raise ClientError(f"SplitType {tin['SplitType']!r} does not fit {RECORDIO}; use RecordIO")
    accept = tout.get("Accept") or JSONLINES
    parts = [p.strip().replace(" ", "") for p in accept.split(";")]
    if parts[0] != JSONLINES:
        raise ClientError(f"Accept {accept!r} is not supported locally; use {JSONLINES}; verbose=true")
    verbose = "verbose=true" in parts[1:]
    model = load_knn_model(s3, model_url)
    bucket, _ = s3io.split_uri(input_uri)
    listed = s3io.list_objects(s3, input_uri)
    if not listed:
        raise ClientError(f"no input object under {input_uri}")
    clock = timings if timings is not None else {}
    for key, _size in listed:
        where = f"s3://{bucket}/{key}"
        started = time.perf_counter()
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as out:
            t0 = time.perf_counter()
            body = s3io.get_bytes(s3, bucket, key)
            clock["s3"] = clock.get("s3", 0.0) + time.perf_counter() - t0
            n = transform_object(model, body, out, verbose=verbose, where=where, timings=clock)
            target = s3io.join_uri(output_path, _output_key(input_uri, key) + ".out")
            t0 = time.perf_counter()
            s3io.put_file(s3, target, out, kms_key_id=kms_key)
            clock["s3"] += time.perf_counter() - t0
        log(f"[knn] {where}: {n} records -> {target} ({time.perf_counter() - started:.2f}s)")
