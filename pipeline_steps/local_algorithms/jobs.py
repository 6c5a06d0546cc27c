"""Local SageMaker jobs: CreateTrainingJob / CreateTransformJob requests in, Describe*-shaped dicts out.

The algorithm is chosen from the image URI's repository name (``factorization-machines`` or
``knn``). User errors end the job as ``Failed`` with ``FailureReason = "ClientError: ..."`` like
SageMaker's built-ins; a malformed request (missing job name, image or output path) raises
``ValueError``, as the CreateTrainingJob API call itself would be rejected.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import fm, knn, s3io
from .hyperparameters import ClientError, parse_fm, parse_knn

RECORDIO = "application/x-recordio-protobuf"
JSONLINES = "application/jsonlines"
FM_IMAGE, KNN_IMAGE = "factorization-machines", "knn"
_REGION, _ACCOUNT = "us-east-1", "123456789012"
QUERY_BATCH = 4096  # queries per search call (faiss blocks BLAS by 4096 queries); memory ~ 2 x batch x k
SPOOL_BYTES = 64 << 20  # transform output kept in memory up to this size, then spilled to disk

Log = Callable[[str], None]


class _Stopped(Exception):
    pass


def algorithm_of(image: str) -> str:
    """Repository name of an ECR image URI: ``.../factorization-machines:1`` -> ``factorization-machines``."""
    name = image.rsplit("/", 1)[-1]
    return name.split("@", 1)[0].split(":", 1)[0]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _require(request: dict, *path: str) -> Any:
    node: Any = request
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"request is missing {'.'.join(path)}")
        node = node[key]
    return node


# --------------------------------------------------------------------------------------------- data


def _channels(request: dict, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, dict]:
    out = {}
    for channel in request.get("InputDataConfig") or []:
        name = channel.get("ChannelName")
        if name not in allowed:
            raise ClientError(f"channel {name!r} is not supported (allowed: {', '.join(allowed)})")
        source = channel.get("DataSource", {}).get("S3DataSource", {})
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise ClientError(f"channel {name!r}: only S3DataType S3Prefix is supported locally")
        if channel.get("CompressionType", "None") not in ("None", None):
            raise ClientError(
                f"channel {name!r}: CompressionType {channel['CompressionType']} is not supported"
            )
        content_type = channel.get("ContentType") or RECORDIO
        if content_type.split(";")[0].strip() != RECORDIO:
            raise ClientError(
                f"channel {name!r}: content type {content_type!r} is not supported; use {RECORDIO}"
            )
        out[name] = {"uri": source.get("S3Uri", "")}
    for name in required:
        if name not in out:
            raise ClientError(f"required channel {name!r} is missing from InputDataConfig")
    return out


def _objects(s3: Any, uri: str, channel: str) -> Iterator[tuple[str, bytes]]:
    try:
        bucket, _ = s3io.split_uri(uri)
    except ValueError as e:
        raise ClientError(f"channel {channel!r}: {e}") from None
    listed = s3io.list_objects(s3, uri)
    if not listed:
        raise ClientError(f"channel {channel!r} is empty: no object under {uri}")
    for key, _size in listed:
        yield f"s3://{bucket}/{key}", s3io.get_bytes(s3, bucket, key)


def _one_label_per_record(labels: Any, n: int, where: str) -> np.ndarray:
    out = np.asarray(labels, dtype=np.float32).reshape(-1)
    if out.shape[0] != n:
        raise ClientError(f"{where}: expected one label per record, found {out.shape[0]} for {n} records")
    return out


def _read_sparse_channel(
    s3: Any, uri: str, channel: str, feature_dim: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    from pipeline_steps.formats import recordio

    parts, labels = [], []
    for where, body in _objects(s3, uri, channel):
        try:
            data, indices, indptr, (n, n_cols), lab = recordio.read_sparse(body)
        except ValueError as e:
            raise ClientError(f"{where}: not RecordIO-protobuf: {e}") from None
        if n == 0:
            continue
        if n_cols != feature_dim:
            raise ClientError(
                f"{where}: records have {n_cols} features but hyperparameter feature_dim is {feature_dim}"
            )
        if data.dtype != np.float32:
            raise ClientError(f"{where}: features must be Float32 tensors, found {data.dtype}")
        if lab is None:
            raise ClientError(f"{where}: records have no label")
        parts.append(sp.csr_matrix((data, indices, indptr), shape=(n, n_cols)))
        labels.append(_one_label_per_record(lab, n, where))
    if not parts:
        raise ClientError(f"channel {channel!r} has no records under {uri}")
    return sp.vstack(parts, format="csr"), np.concatenate(labels)


def _read_dense_channel(s3: Any, uri: str, channel: str, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    from pipeline_steps.formats import recordio

    arrays, labels = [], []
    for where, body in _objects(s3, uri, channel):
        try:
            X, lab = recordio.read_dense(body)
        except ValueError as e:
            raise ClientError(f"{where}: not RecordIO-protobuf: {e}") from None
        if X.shape[0] == 0:
            continue
        if X.shape[1] != feature_dim:
            raise ClientError(
                f"{where}: records have {X.shape[1]} features but hyperparameter feature_dim is {feature_dim}"
            )
        if lab is None:
            raise ClientError(f"{where}: records have no label")
        arrays.append(np.asarray(X, dtype=np.float32))
        labels.append(_one_label_per_record(lab, X.shape[0], where))
    if not arrays:
        raise ClientError(f"channel {channel!r} has no records under {uri}")
    return np.concatenate(arrays), np.concatenate(labels)


# ------------------------------------------------------------------------------------------ training


def _fm_metrics(config: fm.FMConfig, y: np.ndarray, raw: np.ndarray, prefix: str) -> dict[str, float]:
    if config.predictor_type == fm.BINARY:
        m = fm.binary_metrics(y, raw)
        return {
            f"{prefix}:binary_classification_accuracy": m["accuracy"],
            f"{prefix}:binary_classification_cross_entropy": m["log_loss"],
            f"{prefix}:binary_f_1.000": m["f1"],
            f"{prefix}:binary_f_beta": m["f1"],
        }
    return {f"{prefix}:rmse": fm.regression_metrics(y, raw)["rmse"]}


def _train_fm(request: dict, s3: Any, log: Log, output: str, deadline: float) -> dict[str, float]:
    from pipeline_steps.formats.fm_model import FMModel, write_fm_model

    hyperparameters = request.get("HyperParameters") or {}
    config = parse_fm(hyperparameters)
    channels = _channels(request, ("train", "test"), ("train",))
    X, y = _read_sparse_channel(s3, channels["train"]["uri"], "train", config.feature_dim)
    if config.predictor_type == fm.BINARY and not np.all((y == 0) | (y == 1)):
        raise ClientError("binary_classifier labels must be 0 or 1 (channel 'train')")
    test = None
    if "test" in channels:
        test = _read_sparse_channel(s3, channels["test"]["uri"], "test", config.feature_dim)
    log(f"[fm] train: {X.shape[0]} rows x {config.feature_dim} features, nnz {X.nnz}")
    loss_name = (
        "binary_classification_cross_entropy" if config.predictor_type == fm.BINARY else "squared_loss"
    )

    def on_epoch(r: fm.EpochReport) -> None:
        rate = r.rows / r.seconds if r.seconds else float("inf")
        progress = f"train {loss_name}={r.train_loss:.4f} ({r.seconds:.2f}s, {rate:,.0f} rows/s)"
        log(f"[fm] epoch {r.epoch}/{r.epochs}: {progress}")
        if time.monotonic() > deadline and r.epoch < r.epochs:
            raise _Stopped

    started = time.perf_counter()
    params = fm.train(X, y, config, on_epoch=on_epoch)
    seconds = time.perf_counter() - started
    metrics = _fm_metrics(config, y, fm.predict_raw(X, params), "train")
    if test is not None:
        metrics.update(_fm_metrics(config, test[1], fm.predict_raw(test[0], params), "test"))
    for name, value in metrics.items():
        log(f"[fm] #{name} = {value:.4f}")
    # meta.json keeps the hyperparameters as sent, with the two the arrays fix in canonical form
    hyper = {
        **hyperparameters,
        "feature_dim": str(config.feature_dim),
        "num_factors": str(config.num_factors),
    }
    model = FMModel(params.w0, params.w, params.V, config.feature_dim, hyper)
    buf = io.BytesIO()
    write_fm_model(model, buf)
    s3io.put_bytes(s3, s3io.join_uri(output, "model.tar.gz"), buf.getvalue(), "application/x-tar")
    report = {"metrics": metrics, "seconds": seconds, "rows": int(X.shape[0]), "epochs": config.epochs}
    s3io.put_bytes(
        s3, s3io.join_uri(output, "metrics.json"), json.dumps(report, indent=1).encode(), "application/json"
    )
    return metrics


def _train_knn(request: dict, s3: Any, log: Log, output: str, deadline: float) -> dict[str, float]:
    from pipeline_steps.formats import artifact

    config = parse_knn(request.get("HyperParameters") or {})
    channels = _channels(request, ("train", "test"), ("train",))
    X, y = _read_dense_channel(s3, channels["train"]["uri"], "train", config.feature_dim)
    log(f"[knn] train: {X.shape[0]} vectors x {X.shape[1]}, sample_size {config.sample_size}")
    started = time.perf_counter()
    model = knn.build(X, y, config)
    log(
        f"[knn] {config.index_type} {config.index_metric} index of {model.index.ntotal} vectors "
        f"built in {time.perf_counter() - started:.2f}s"
    )
    metrics: dict[str, float] = {}
    if "test" in channels:
        # as SageMaker's k-NN: accuracy (classifier) or mean squared error (regressor) on "test"
        Xt, yt = _read_dense_channel(s3, channels["test"]["uri"], "test", config.feature_dim)
        predicted = np.concatenate(
            [
                knn.predict(model, knn.search(model, Xt[i : i + QUERY_BATCH])[1])
                for i in range(0, len(Xt), QUERY_BATCH)
            ]
        )
        if config.predictor_type == knn.CLASSIFIER:
            metrics["test:accuracy"] = float(np.mean(predicted == yt))
        else:
            metrics["test:mse"] = float(np.mean((predicted - yt) ** 2))
        for name, value in metrics.items():
            log(f"[knn] #{name} = {value:.4f}")
    index_bytes, labels, meta = knn.serialize(model)
    stamp = int(time.time())  # SageMaker's tar members carry their write time
    members = [
        artifact.Member("model_algo-1", index_bytes, stamp),
        artifact.Member("model_algo-1.labels", labels, stamp),
        artifact.Member("model_algo-1.json", meta, stamp),
    ]
    body = artifact.model_tar_gz(members)
    s3io.put_bytes(s3, s3io.join_uri(output, "model.tar.gz"), body, "application/x-tar")
    return metrics


def run_training_job(request: dict, *, s3: Any = None, log: Log = print) -> dict:
    """Run a CreateTrainingJob request locally; returns a DescribeTrainingJob-shaped dict."""
    name = _require(request, "TrainingJobName")
    image = _require(request, "AlgorithmSpecification", "TrainingImage")
    output_path = _require(request, "OutputDataConfig", "S3OutputPath")
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    created = _now()
    output = s3io.join_uri(output_path, name, "output")
    describe: dict[str, Any] = {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:{_REGION}:{_ACCOUNT}:training-job/{name.lower()}",
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "HyperParameters": dict(request.get("HyperParameters") or {}),
        "InputDataConfig": request.get("InputDataConfig") or [],
        "OutputDataConfig": request["OutputDataConfig"],
        "ResourceConfig": request.get("ResourceConfig", {}),
        "StoppingCondition": request.get("StoppingCondition", {}),
        "RoleArn": request.get("RoleArn", ""),
        "CreationTime": created,
        "TrainingStartTime": created,
    }
    max_runtime = float(request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
    deadline = time.monotonic() + max_runtime
    algorithm = algorithm_of(image)
    try:
        if algorithm == FM_IMAGE:
            metrics = _train_fm(request, s3, log, output, deadline)
        elif algorithm == KNN_IMAGE:
            metrics = _train_knn(request, s3, log, output, deadline)
        else:
            raise ClientError(f"training image {image!r} is not a built-in algorithm available locally")
    except ClientError as e:
        return _failed(describe, "TrainingJobStatus", f"ClientError: {e}", log)
    except _Stopped:
        reason = f"MaxRuntimeExceeded: training stopped after MaxRuntimeInSeconds={max_runtime:g}"
        return _failed(describe, "TrainingJobStatus", reason, log)
    except Exception as e:  # the job fails, as a container crash would; the caller sees the reason
        return _failed(describe, "TrainingJobStatus", f"AlgorithmError: {type(e).__name__}: {e}", log)
    end = _now()
    describe.update(
        TrainingJobStatus="Completed",
        SecondaryStatus="Completed",
        ModelArtifacts={"S3ModelArtifacts": s3io.join_uri(output, "model.tar.gz")},
        TrainingEndTime=end,
        LastModifiedTime=end,
        TrainingTimeInSeconds=max(1, int((end - created).total_seconds())),
        FinalMetricDataList=[
            {"MetricName": k, "Value": float(v), "Timestamp": end} for k, v in metrics.items()
        ],
    )
    return describe


def _failed(describe: dict, status_key: str, reason: str, log: Log) -> dict:
    log(f"[job] {describe.get('TrainingJobName') or describe.get('TransformJobName')} failed: {reason}")
    end = _now()
    describe.update({status_key: "Failed", "SecondaryStatus": "Failed", "FailureReason": reason[:1024]})
    describe.update({"LastModifiedTime": end})
    describe["TrainingEndTime" if status_key == "TrainingJobStatus" else "TransformEndTime"] = end
    return describe


# ----------------------------------------------------------------------------------------- transform


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
    starts = range(0, Q.shape[0], QUERY_BATCH)
    # faiss releases the GIL: search the next batch while this one is formatted and written
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_search_batch, model, Q[:QUERY_BATCH]) if len(starts) else None
        for start in starts:
            dist, labels, predicted, seconds = pending.result()
            if start + QUERY_BATCH < Q.shape[0]:
                pending = pool.submit(_search_batch, model, Q[start + QUERY_BATCH : start + 2 * QUERY_BATCH])
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
        _transform(request, s3, model_resolver(model_name), input_uri, output_path, log, timings)
    except ClientError as e:
        return _failed(describe, "TransformJobStatus", f"ClientError: {e}", log)
    except Exception as e:
        return _failed(describe, "TransformJobStatus", f"AlgorithmError: {type(e).__name__}: {e}", log)
    end = _now()
    describe.update(TransformJobStatus="Completed", TransformEndTime=end, LastModifiedTime=end)
    return describe


def _transform(
    request: dict, s3: Any, model_url: str, input_uri: str, output_path: str, log: Log, timings: dict | None
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
            s3io.put_file(s3, target, out)
            clock["s3"] += time.perf_counter() - t0
        log(f"[knn] {where}: {n} records -> {target} ({time.perf_counter() - started:.2f}s)")
