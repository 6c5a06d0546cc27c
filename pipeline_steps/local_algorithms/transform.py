"""Local SageMaker batch transform for k-NN models: a CreateTransformJob request in, a
DescribeTransformJob-shaped dict out (same failure conventions as ``jobs.py``).

Batching is emulated so the rehearsal fails where AWS would (docs/decisions/0008): per input
object, ``SplitType=RecordIO`` + ``BatchStrategy=MultiRecord`` packs whole records into mini-batches
of at most ``MaxPayloadInMB`` (``SingleRecord``: one record each; no SplitType: the whole object),
each mini-batch is one container request, and a response over the container's limit
(``sizing.CONTAINER_RESPONSE_LIMIT``) fails the job with a ``ClientError``. With
``AssembleWith=Line`` a newline follows every mini-batch's response, as SageMaker adds one; the JSON
lines already end with one, so the ``.out`` has an empty line after each mini-batch.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline_steps.common import sizing

from . import knn, s3io
from .hyperparameters import ClientError
from .jobs import _ACCOUNT, _REGION, RECORDIO, Log, _failed, _now, _require, check_security

DEFAULT_MAX_PAYLOAD_MB = 6  # CreateTransformJob's default MaxPayloadInMB

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


@dataclass(frozen=True, kw_only=True)
class Batching:
    """How SageMaker cuts one input object into requests and assembles the responses."""

    split: bool = True  # SplitType RecordIO; False (None): the whole object is one request
    multi_record: bool = True  # BatchStrategy MultiRecord; False: SingleRecord
    max_payload_mb: int = DEFAULT_MAX_PAYLOAD_MB
    assemble_line: bool = True  # AssembleWith Line: a newline after each response

    @classmethod
    def from_request(cls, request: dict) -> Batching:
        tin, tout = request.get("TransformInput", {}), request.get("TransformOutput", {})
        mb = request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
        if not isinstance(mb, int) or isinstance(mb, bool) or not 0 <= mb <= 100:
            raise ClientError(f"MaxPayloadInMB must be an integer in 0..100, got {mb!r}")
        if mb == 0:
            raise ClientError(
                "MaxPayloadInMB 0 (HTTP chunked encoding) is not supported by built-in algorithms"
            )
        strategy = request.get("BatchStrategy", "MultiRecord")  # unset: assume the larger responses
        if strategy not in ("MultiRecord", "SingleRecord"):
            raise ClientError(f"BatchStrategy {strategy!r} is not one of MultiRecord, SingleRecord")
        assemble = tout.get("AssembleWith", "None")
        if assemble not in ("Line", "None"):
            raise ClientError(f"AssembleWith {assemble!r} is not one of Line, None")
        return cls(
            split=tin.get("SplitType", "None") not in ("None", None),
            multi_record=strategy == "MultiRecord",
            max_payload_mb=mb,
            assemble_line=assemble == "Line",
        )

    def mini_batches(self, sizes: np.ndarray, where: str) -> np.ndarray:
        """End index (exclusive) of every mini-batch of records with these byte sizes, in order."""
        n = int(sizes.size)
        budget = self.max_payload_mb * sizing.BATCH_BYTES_PER_MB  # the larger reading of "MB"
        if not self.split:
            total = int(sizes.sum())
            if total > budget:
                raise ClientError(
                    f"{where}: without SplitType the whole object ({total} bytes) is one request, more "
                    f"than MaxPayloadInMB {self.max_payload_mb}"
                )
            return np.array([n] if n else [], np.int64)
        too_big = np.flatnonzero(sizes > budget)
        if too_big.size:
            i = int(too_big[0])
            raise ClientError(
                f"{where}: record {i + 1} is {int(sizes[i])} bytes, more than MaxPayloadInMB "
                f"{self.max_payload_mb} (it must hold one record)"
            )
        if not self.multi_record:
            return np.arange(1, n + 1, dtype=np.int64)
        cum = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        stops, start = [], 0
        while start < n:  # greedy: as many whole records as fit
            stop = int(np.searchsorted(cum, cum[start] + budget, side="right")) - 1
            stops.append(stop)
            start = stop
        return np.array(stops, np.int64)


def transform_object(
    model: knn.KNNModel,
    body: bytes,
    out,
    *,
    verbose: bool,
    where: str,
    batching: Batching | None = None,
    timings: dict | None = None,
) -> int:
    """Answer every record of one RecordIO object, one JSON line each, mini-batch by mini-batch.

    ``batching`` (default: MultiRecord, 6 MB, AssembleWith Line) decides the mini-batches; a
    response over the container's limit raises ``ClientError`` naming the object, the mini-batch
    and the sizes (as soon as it is exceeded: nothing more is searched). ``timings`` (optional)
    accumulates seconds spent in "read", "search" (wall time of the search calls, which overlap
    with writing) and "write".
    """
    from pipeline_steps.formats import recordio

    batching = batching or Batching()
    clock = timings if timings is not None else {}
    started = time.perf_counter()
    try:
        Q, _ = recordio.read_dense(body)
        sizes = recordio.record_sizes(body)
    except ValueError as e:
        raise ClientError(f"{where}: not RecordIO-protobuf: {e}") from None
    if Q.shape[0] and Q.shape[1] != model.index.d:
        raise ClientError(
            f"{where}: records have {Q.shape[1]} features but the model expects {model.index.d}"
        )
    stops = batching.mini_batches(sizes, where)
    clock["read"] = clock.get("read", 0.0) + time.perf_counter() - started
    # faiss releases the GIL, so the next batch can be searched while this one is written, but only
    # with a core to spare: faiss's BLAS/OpenMP threads use every core by default, and a writer
    # thread beside them made the search 2x slower on 2 cores (bench/knn.py), more than it saved.
    overlap = _spare_core()
    batch = _batch_size(Q.shape[0]) if overlap else QUERY_BATCH
    starts = range(0, Q.shape[0], batch)
    response = _Responses(out, stops, sizes, batching, where, verbose, model.predictor_type)
    with ThreadPoolExecutor(max_workers=1) as pool:
        submit = pool.submit if overlap else _run_now
        pending = submit(_search_batch, model, Q[:batch]) if len(starts) else None
        for start in starts:
            assert pending is not None  # set before the loop whenever there is a batch
            dist, labels, predicted, seconds = pending.result()
            if start + batch < Q.shape[0]:
                pending = submit(_search_batch, model, Q[start + batch : start + 2 * batch])
            t0 = time.perf_counter()
            response.write(start, labels, dist, predicted)
            clock["search"] = clock.get("search", 0.0) + seconds
            clock["write"] = clock.get("write", 0.0) + time.perf_counter() - t0
    return int(Q.shape[0])


class _Responses:
    """Writes search results as the container's responses, one per mini-batch, checking each size."""

    def __init__(self, out, stops, sizes, batching: Batching, where: str, verbose: bool, predictor: str):
        self.out, self.stops, self.sizes, self.batching = out, stops, sizes, batching
        self.where, self.verbose, self.predictor = where, verbose, predictor
        self.index = 0  # current mini-batch
        self.bytes = 0  # response bytes of the current mini-batch so far

    def write(self, start: int, labels: np.ndarray, dist: np.ndarray, predicted: np.ndarray) -> None:
        """Results of records [start, start + len(labels)), cut at mini-batch boundaries."""
        pos, stop = start, start + labels.shape[0]
        while pos < stop:
            end = min(stop, int(self.stops[self.index]))
            rows = slice(pos - start, end - start)
            self.bytes += self._render(labels[rows], dist[rows], predicted[rows])
            self._check(end)
            pos = end
            if pos == self.stops[self.index]:
                if self.batching.assemble_line:
                    self.out.write(b"\n")
                self.index += 1
                self.bytes = 0

    def _render(self, labels, dist, predicted) -> int:
        from . import knn_lines

        if self.verbose:
            return knn_lines.write_results(self.out, labels, dist, predicted, predictor_type=self.predictor)
        data = "".join(json.dumps({"predicted_label": float(p)}) + "\n" for p in predicted).encode()
        self.out.write(data)
        return len(data)

    def _check(self, written_to: int) -> None:
        limit = sizing.CONTAINER_RESPONSE_LIMIT
        if self.bytes <= limit:
            return
        first = int(self.stops[self.index - 1]) if self.index else 0
        last = int(self.stops[self.index])
        payload = int(self.sizes[first:last].sum())
        size = (
            f"is {self.bytes} bytes"
            if written_to == last
            else f"has {self.bytes} bytes after {written_to - first} of its records"
        )
        raise ClientError(
            f"{self.where}: mini-batch {self.index + 1} of {self.stops.size} (records {first + 1}-{last}, "
            f"{payload} bytes of payload, MaxPayloadInMB {self.batching.max_payload_mb}): the response "
            f"{size}, over the container's {limit}-byte limit; make the input objects smaller "
            "(repackage sizes them: docs/decisions/0008)"
        )


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
    batching = Batching.from_request(request)
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
            n = transform_object(
                model, body, out, verbose=verbose, where=where, batching=batching, timings=clock
            )
            target = s3io.join_uri(output_path, _output_key(input_uri, key) + ".out")
            t0 = time.perf_counter()
            s3io.put_file(s3, target, out, kms_key_id=kms_key)
            clock["s3"] += time.perf_counter() - t0
        log(f"[knn] {where}: {n} records -> {target} ({time.perf_counter() - started:.2f}s)")
