"""Local SageMaker training jobs: a CreateTrainingJob request in, a DescribeTrainingJob-shaped dict out.

The algorithm is chosen from the image URI's repository name (``factorization-machines`` or
``knn``). User errors end the job as ``Failed`` with ``FailureReason = "ClientError: ..."`` like
SageMaker's built-ins; a malformed request (missing job name, image or output path) raises
``ValueError``, as the CreateTrainingJob API call itself would be rejected. Batch transform:
``transform.py``.

The security fields of the request (``EnableNetworkIsolation``,
``EnableInterContainerTrafficEncryption``, ``VpcConfig``, the output and volume KMS keys) are
checked against the API's constraints and logged; the outputs are written with SSE-KMS under the
output key when one is given. Offline there is no network to isolate, no volume and no second
instance: those settings are reported, not enacted.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from . import fm, knn, s3io
from .hyperparameters import ClientError, parse_fm, parse_knn

RECORDIO = "application/x-recordio-protobuf"
FM_IMAGE, KNN_IMAGE = "factorization-machines", "knn"
_REGION, _ACCOUNT = "us-east-1", "123456789012"
_EVAL_BATCH = 4096  # k-NN test-channel queries searched at a time
# SageMaker API reference: VpcConfig (1..16 subnets, 1..5 security groups, ids [-0-9a-zA-Z]+ of at
# most 32 characters) and the KMS key ids of OutputDataConfig / ResourceConfig (at most 2048).
_VPC_LIMITS = {"Subnets": 16, "SecurityGroupIds": 5}
_VPC_ID = re.compile(r"^[-0-9a-zA-Z]{1,32}$")
_KMS_KEY = re.compile(r"^[a-zA-Z0-9:/_-]{0,2048}$")

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


# ------------------------------------------------------------------------------------------ security


def check_security(
    request: dict, log: Log, *, keys: dict[str, tuple[str, str]], network: bool = True
) -> str | None:
    """Validate and report a request's network and encryption fields; returns the output KMS key.

    ``keys``: label -> (section, field) of the KMS key ids this request type carries, the first
    being the output key. ``network``: the request carries the network fields (a training job; a
    transform job runs with its model's). A malformed field raises ``ValueError``, as the API would
    reject the call.
    """
    if network:
        _check_network(request, log)
    found: list[str | None] = []
    for label, (section, field) in keys.items():
        key = (request.get(section) or {}).get(field)
        if key is not None and (not isinstance(key, str) or not _KMS_KEY.match(key)):
            raise ValueError(f"{section}.{field} is not a KMS key id, ARN or alias: {key!r}")
        if key:
            log(f"{label} KMS key: {key}")
        found.append(key or None)
    return found[0] if found else None


def _check_network(request: dict, log: Log) -> None:
    for flag in ("EnableNetworkIsolation", "EnableInterContainerTrafficEncryption"):
        if not isinstance(request.get(flag, False), bool):
            raise ValueError(f"{flag} must be true or false, got {request[flag]!r}")
    log(f"network isolation: {'on' if request.get('EnableNetworkIsolation') else 'off'}")
    if request.get("EnableInterContainerTrafficEncryption"):
        log("inter-container traffic encryption: on")
    vpc = request.get("VpcConfig")
    if vpc is not None:
        if not isinstance(vpc, dict) or set(vpc) != set(_VPC_LIMITS):
            raise ValueError(f"VpcConfig needs exactly Subnets and SecurityGroupIds, got {vpc!r}")
        for field, most in _VPC_LIMITS.items():
            ids = vpc[field]
            if not isinstance(ids, list) or not 1 <= len(ids) <= most:
                raise ValueError(f"VpcConfig.{field} must list 1 to {most} ids, got {ids!r}")
            bad = [i for i in ids if not isinstance(i, str) or not _VPC_ID.match(i)]
            if bad:
                raise ValueError(f"VpcConfig.{field}: invalid id(s) {bad!r}")
        log(f"VPC: subnets {', '.join(vpc['Subnets'])}; security groups {', '.join(vpc['SecurityGroupIds'])}")


_TRAINING_KEYS = {"output": ("OutputDataConfig", "KmsKeyId"), "volume": ("ResourceConfig", "VolumeKmsKeyId")}


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


def _train_fm(
    request: dict, s3: Any, log: Log, output: str, deadline: float, key: str | None = None
) -> dict[str, float]:
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

    history: list[dict[str, float]] = []  # per-epoch loss, kept with the model for the run report

    def on_epoch(r: fm.EpochReport) -> None:
        history.append({"epoch": r.epoch, "train_loss": float(r.train_loss), "seconds": float(r.seconds)})
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
    model_uri = s3io.join_uri(output, "model.tar.gz")
    s3io.put_bytes(s3, model_uri, buf.getvalue(), "application/x-tar", kms_key_id=key)
    report = {
        "metrics": metrics,
        "seconds": seconds,
        "rows": int(X.shape[0]),
        "epochs": config.epochs,
        "loss_name": loss_name,
        "epoch_history": history,
    }
    body = json.dumps(report, indent=1).encode()
    s3io.put_bytes(s3, s3io.join_uri(output, "metrics.json"), body, "application/json", kms_key_id=key)
    return metrics


def _train_knn(
    request: dict, s3: Any, log: Log, output: str, deadline: float, key: str | None = None
) -> dict[str, float]:
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
                knn.predict(model, knn.search(model, Xt[i : i + _EVAL_BATCH])[1])
                for i in range(0, len(Xt), _EVAL_BATCH)
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
    s3io.put_bytes(s3, s3io.join_uri(output, "model.tar.gz"), body, "application/x-tar", kms_key_id=key)
    return metrics


def run_training_job(request: dict, *, s3: Any = None, log: Log = print) -> dict:
    """Run a CreateTrainingJob request locally; returns a DescribeTrainingJob-shaped dict."""
    name = _require(request, "TrainingJobName")
    image = _require(request, "AlgorithmSpecification", "TrainingImage")
    output_path = _require(request, "OutputDataConfig", "S3OutputPath")
    key = check_security(request, log, keys=_TRAINING_KEYS)
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
        "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
        "EnableInterContainerTrafficEncryption": request.get("EnableInterContainerTrafficEncryption", False),
        "CreationTime": created,
        "TrainingStartTime": created,
    }
    max_runtime = float(request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
    deadline = time.monotonic() + max_runtime
    if "VpcConfig" in request:
        describe["VpcConfig"] = request["VpcConfig"]
    algorithm = algorithm_of(image)
    try:
        if algorithm == FM_IMAGE:
            metrics = _train_fm(request, s3, log, output, deadline, key)
        elif algorithm == KNN_IMAGE:
            metrics = _train_knn(request, s3, log, output, deadline, key)
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
