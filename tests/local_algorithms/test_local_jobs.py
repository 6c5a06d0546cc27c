"""Local SageMaker jobs against moto S3: FM and k-NN training, batch transform, failure reasons."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
import scipy.sparse as sp
from moto import mock_aws

from pipeline_steps.formats import artifact, knn_output, recordio
from pipeline_steps.formats.fm_model import read_fm_model
from pipeline_steps.local_algorithms import fm, run_training_job, run_transform_job
from pipeline_steps.local_algorithms.hyperparameters import parse_fm

BUCKET = "jobs"
FM_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/factorization-machines:1"
KNN_IMAGE = "382416733822.dkr.ecr.us-east-1.amazonaws.com/knn:1"
RECORDIO = "application/x-recordio-protobuf"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def _put(s3, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def _get(s3, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def _one_hot(n_users=30, n_items=20, rows=600, seed=0, regression=False):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(0, n_users, rows), rng.integers(0, n_items, rows)
    r = np.repeat(np.arange(rows), 2)
    cols = np.stack([users, n_users + items], axis=1).ravel()
    X = sp.csr_matrix((np.ones(2 * rows, np.float32), (r, cols)), shape=(rows, n_users + n_items))
    score = np.sin(users) * np.cos(items)
    y = (score * 2 + 3).astype(np.float32) if regression else (score > 0).astype(np.float32)
    return X, y


def _channel(name, prefix, content_type=RECORDIO):
    channel = {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": f"s3://{BUCKET}/{prefix}",
                "S3DataDistributionType": "FullyReplicated",
            }
        },
    }
    if content_type:
        channel["ContentType"] = content_type
    return channel


def _fm_request(hp=None, channels=None, name="run1-fm"):
    hyper = {"feature_dim": "50", "num_factors": "4", "predictor_type": "binary_classifier", "epochs": "3"}
    hyper.update(hp or {})
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": FM_IMAGE, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/sm",
        "HyperParameters": {k: v for k, v in hyper.items() if v is not None},
        "InputDataConfig": channels
        if channels is not None
        else [_channel("train", "fm/train/"), _channel("test", "fm/test/")],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/fm/model"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def _upload_fm(s3, regression=False):
    X, y = _one_hot(regression=regression)
    _put(s3, "fm/train/part-00000.rec", recordio.encode_sparse(X[:300], y[:300]))
    _put(s3, "fm/train/part-00001.rec", recordio.encode_sparse(X[300:500], y[300:500]))
    _put(s3, "fm/test/part-00000.rec", recordio.encode_sparse(X[500:], y[500:]))
    return X, y


def test_fm_training_job_writes_sagemaker_model_and_metrics(s3):
    X, y = _upload_fm(s3)
    lines: list[str] = []
    result = run_training_job(_fm_request(), s3=s3, log=lines.append)
    assert result["TrainingJobStatus"] == "Completed", result.get("FailureReason")
    uri = result["ModelArtifacts"]["S3ModelArtifacts"]
    assert uri == f"s3://{BUCKET}/fm/model/run1-fm/output/model.tar.gz"
    model = read_fm_model(_get(s3, "fm/model/run1-fm/output/model.tar.gz"))
    assert model.feature_dim == 50 and model.V.shape == (50, 4)
    assert model.hyperparameters["predictor_type"] == "binary_classifier"
    # same numbers as the core trainer on the shards in key order
    config = parse_fm(_fm_request()["HyperParameters"])
    direct = fm.train(X[:500], y[:500], config)
    np.testing.assert_array_equal(model.V, direct.V)
    np.testing.assert_array_equal(model.w, direct.w)
    names = {m["MetricName"] for m in result["FinalMetricDataList"]}
    assert {
        "test:binary_classification_accuracy",
        "test:binary_f_1.000",
        "test:binary_classification_cross_entropy",
    } <= names
    metrics = json.loads(_get(s3, "fm/model/run1-fm/output/metrics.json"))
    want = fm.binary_metrics(y[500:], fm.predict_raw(X[500:], direct))
    assert metrics["metrics"]["test:binary_classification_accuracy"] == pytest.approx(want["accuracy"])
    assert metrics["metrics"]["test:binary_classification_cross_entropy"] == pytest.approx(want["log_loss"])
    assert sum("epoch 3/3" in line for line in lines) == 1
    # the per-epoch loss the run report plots as the training curve
    assert metrics["loss_name"] == "binary_classification_cross_entropy"
    assert [h["epoch"] for h in metrics["epoch_history"]] == [1, 2, 3]
    assert all(h["train_loss"] > 0 for h in metrics["epoch_history"])


def test_fm_regressor_reports_rmse_and_is_deterministic(s3):
    _upload_fm(s3, regression=True)
    hp = {
        "predictor_type": "regressor",
        "epochs": "2",
        "bias_init_method": "constant",
        "bias_init_value": "3",
    }
    first = run_training_job(_fm_request(hp, name="a"), s3=s3, log=lambda _: None)
    second = run_training_job(_fm_request(hp, name="b"), s3=s3, log=lambda _: None)
    assert first["TrainingJobStatus"] == second["TrainingJobStatus"] == "Completed"
    assert [m["MetricName"] for m in first["FinalMetricDataList"]] == ["train:rmse", "test:rmse"]
    a = read_fm_model(_get(s3, "fm/model/a/output/model.tar.gz"))
    b = read_fm_model(_get(s3, "fm/model/b/output/model.tar.gz"))
    assert a.w0 == b.w0
    np.testing.assert_array_equal(a.V, b.V)


@pytest.mark.parametrize(
    ("hp", "channels", "reason"),
    [
        (
            {"foo": "1"},
            None,
            "ClientError: Additional hyperparameters are not allowed ('foo' was unexpected)",
        ),
        ({"num_factors": "many"}, None, "ClientError: hyperparameter num_factors='many' is not an integer"),
        ({"epochs": "0"}, None, "ClientError: hyperparameter epochs='0' must be >= 1"),
        ({"factors_lr": "-1"}, None, "ClientError: hyperparameter factors_lr='-1' must be >= 0"),
        (
            {"predictor_type": "multiclass"},
            None,
            "ClientError: hyperparameter predictor_type='multiclass' must be one of binary_classifier",
        ),
        ({"predictor_type": None}, None, "ClientError: missing required hyperparameter(s): predictor_type"),
        (
            {"feature_dim": "51"},
            None,
            "ClientError: s3://jobs/fm/train/part-00000.rec: records have 50 features",
        ),
        ({}, [_channel("train", "fm/nothing/")], "ClientError: channel 'train' is empty: no object under"),
        ({}, [_channel("test", "fm/test/")], "ClientError: required channel 'train' is missing"),
        (
            {},
            [_channel("train", "fm/train/", "text/csv")],
            "ClientError: channel 'train': content type 'text/csv'",
        ),
        ({}, [_channel("validation", "fm/train/")], "ClientError: channel 'validation' is not supported"),
        (
            {"linear_init_method": "uniform"},
            None,
            "ClientError: hyperparameter linear_init_scale is required",
        ),
    ],
)
def test_fm_failure_reasons(s3, hp, channels, reason):
    _upload_fm(s3)
    result = run_training_job(_fm_request(hp, channels), s3=s3, log=lambda _: None)
    assert result["TrainingJobStatus"] == "Failed"
    assert result["FailureReason"].startswith(reason), result["FailureReason"]
    assert "ModelArtifacts" not in result


def test_fm_rejects_non_binary_labels_and_float64_features(s3):
    X, y = _one_hot()
    _put(s3, "fm/train/part-00000.rec", recordio.encode_sparse(X, y * 2))
    result = run_training_job(
        _fm_request(channels=[_channel("train", "fm/train/")]), s3=s3, log=lambda _: None
    )
    assert result["FailureReason"] == "ClientError: binary_classifier labels must be 0 or 1 (channel 'train')"
    _put(s3, "fm/train/part-00000.rec", recordio.encode_sparse(X.astype(np.float64), y))
    result = run_training_job(
        _fm_request(channels=[_channel("train", "fm/train/")]), s3=s3, log=lambda _: None
    )
    assert "features must be Float32 tensors" in result["FailureReason"]
    _put(s3, "fm/train/part-00000.rec", b"not recordio at all")
    result = run_training_job(
        _fm_request(channels=[_channel("train", "fm/train/")]), s3=s3, log=lambda _: None
    )
    assert result["FailureReason"].startswith("ClientError: s3://jobs/fm/train/part-00000.rec: not RecordIO")


def test_unknown_image_and_malformed_request(s3):
    request = _fm_request()
    request["AlgorithmSpecification"]["TrainingImage"] = "123.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"
    result = run_training_job(request, s3=s3, log=lambda _: None)
    assert result["FailureReason"].startswith("ClientError: training image")
    with pytest.raises(ValueError, match="OutputDataConfig"):
        run_training_job(
            {"TrainingJobName": "x", "AlgorithmSpecification": {"TrainingImage": FM_IMAGE}}, s3=s3
        )


# ----------------------------------------------------------------------------------------------- k-NN


def _knn_request(hp=None, name="run1-knn", prefix="knn/train/"):
    hyper = {"feature_dim": "6", "k": "5", "predictor_type": "classifier", "sample_size": "100"}
    hyper.update({"index_metric": "INNER_PRODUCT"})
    hyper.update(hp or {})
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": KNN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {k: v for k, v in hyper.items() if v is not None},
        "InputDataConfig": [_channel("train", prefix)],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/knn/model"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }


def _transform_request(
    prefix="knn/queries/users-", accept="application/jsonlines; verbose=true", top=None, **tin
):
    return {
        **(top or {}),
        "TransformJobName": "run1-tr",
        "ModelName": "run1-knn",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}"}},
            "ContentType": RECORDIO,
            "SplitType": "RecordIO",
            **tin,
        },
        "TransformOutput": {
            "S3OutputPath": f"s3://{BUCKET}/transform",
            "Accept": accept,
            "AssembleWith": "Line",
        },
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }


def _knn_data(seed=1):
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(40, 6)).astype(np.float32)
    labels = np.arange(1, 41, dtype=np.float32)
    users = rng.normal(size=(23, 6)).astype(np.float32)
    return items, labels, users


@pytest.mark.parametrize("metric", ["INNER_PRODUCT", "L2", "COSINE"])
def test_knn_train_and_batch_transform(s3, metric):
    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users[:15]))
    _put(s3, "knn/queries/users-00001.rec", recordio.encode_dense(users[15:]))
    _put(s3, "knn/queries/manifest.json", b"{}")  # next to the shards; outside the transform prefix
    trained = run_training_job(_knn_request({"index_metric": metric}), s3=s3, log=lambda _: None)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    model_url = trained["ModelArtifacts"]["S3ModelArtifacts"]
    members = {
        m.name: m.data for m in artifact.read_model_tar_gz(_get(s3, "knn/model/run1-knn/output/model.tar.gz"))
    }
    assert sorted(members) == ["model_algo-1", "model_algo-1.json", "model_algo-1.labels"]
    assert np.frombuffer(members["model_algo-1.labels"], "<f4").tolist() == labels.tolist()
    assert json.loads(members["model_algo-1.json"])["k"] == 5

    result = run_transform_job(
        _transform_request(), s3=s3, model_resolver={"run1-knn": model_url}.__getitem__
    )
    assert result["TransformJobStatus"] == "Completed", result.get("FailureReason")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="transform/")["Contents"])
    assert keys == ["transform/users-00000.rec.out", "transform/users-00001.rec.out"]
    outs = [_get(s3, k) for k in keys]
    # each small object is one mini-batch: its JSON lines, then AssembleWith=Line's newline
    assert all(out.endswith(b"}\n\n") and out.count(b"\n\n") == 1 for out in outs)
    raw_lines = [line for line in b"".join(outs).decode().splitlines() if line]
    assert len(raw_lines) == 23
    for line in raw_lines:
        obj = json.loads(line)
        assert set(obj) == {"labels", "distances", "predicted_label"}
        assert obj["distances"] == sorted(obj["distances"])
    if metric == "L2":
        score = -((users[:, None, :] - items[None]) ** 2).sum(-1)
    elif metric == "COSINE":
        norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        score = norm(users) @ norm(items).T
    else:
        score = users @ items.T
    want = np.argsort(-score, axis=1, kind="stable")[:, :5] + 1
    for (got_labels, _scores), expected in zip(knn_output.iter_results(raw_lines, metric), want, strict=True):
        assert got_labels.tolist() == expected.tolist()


def test_knn_sample_size_and_predicted_label(s3):
    items, _, users = _knn_data()
    labels = (np.arange(40) % 3).astype(np.float32)
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    hp = {"sample_size": "10", "predictor_type": "regressor", "index_metric": "L2"}
    trained = run_training_job(_knn_request(hp), s3=s3, log=lambda _: None)
    members = {
        m.name: m.data for m in artifact.read_model_tar_gz(_get(s3, "knn/model/run1-knn/output/model.tar.gz"))
    }
    assert len(np.frombuffer(members["model_algo-1.labels"], "<f4")) == 10
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__
    assert (
        run_transform_job(_transform_request(), s3=s3, model_resolver=resolver)["TransformJobStatus"]
        == "Completed"
    )
    for line in _get(s3, "transform/users-00000.rec.out").decode().splitlines()[:-1]:
        obj = json.loads(line)
        assert obj["predicted_label"] == pytest.approx(np.mean(np.float32(obj["labels"])), rel=1e-6)


def test_knn_non_verbose_output(s3):
    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    trained = run_training_job(_knn_request(), s3=s3, log=lambda _: None)
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__
    result = run_transform_job(
        _transform_request(accept="application/jsonlines"), s3=s3, model_resolver=resolver
    )
    assert result["TransformJobStatus"] == "Completed"
    lines = _get(s3, "transform/users-00000.rec.out").decode().splitlines()
    assert len(lines) == 24 and lines[-1] == "" and set(json.loads(lines[0])) == {"predicted_label"}


@pytest.mark.parametrize(
    ("hp", "reason"),
    [
        ({"sample_size": None}, "ClientError: missing required hyperparameter(s): sample_size"),
        ({"feature_dim": "7"}, "ClientError: s3://jobs/knn/train/items.rec: records have 6 features"),
        (
            {"index_metric": "MANHATTAN"},
            "ClientError: hyperparameter index_metric='MANHATTAN' must be one of",
        ),
        ({"k": "0"}, "ClientError: hyperparameter k='0' must be >= 1"),
        ({"num_factors": "3"}, "ClientError: Additional hyperparameters are not allowed ('num_factors' was"),
    ],
)
def test_knn_training_failure_reasons(s3, hp, reason):
    items, labels, _ = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    result = run_training_job(_knn_request(hp), s3=s3, log=lambda _: None)
    assert result["TrainingJobStatus"] == "Failed"
    assert result["FailureReason"].startswith(reason), result["FailureReason"]


def test_transform_failure_reasons(s3):
    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    _put(s3, "bad/users-00000.rec", recordio.encode_dense(users[:, :4]))
    trained = run_training_job(_knn_request(), s3=s3, log=lambda _: None)
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__

    def reason(request, resolve=resolver):
        result = run_transform_job(request, s3=s3, model_resolver=resolve, log=lambda _: None)
        assert result["TransformJobStatus"] == "Failed"
        return result["FailureReason"]

    assert reason(_transform_request(ContentType="text/csv")).startswith(
        "ClientError: content type 'text/csv'"
    )
    assert reason(_transform_request(accept="application/json")).startswith(
        "ClientError: Accept 'application/json'"
    )
    assert reason(_transform_request(prefix="nothing/")).startswith("ClientError: no input object under")
    assert "records have 4 features but the model expects 6" in reason(_transform_request(prefix="bad/"))
    X, y = _one_hot()
    _put(s3, "fm/train/part-00000.rec", recordio.encode_sparse(X, y))
    fm_job = run_training_job(
        _fm_request(channels=[_channel("train", "fm/train/")]), s3=s3, log=lambda _: None
    )
    fm_url = fm_job["ModelArtifacts"]["S3ModelArtifacts"]
    assert "is not a k-NN model" in reason(_transform_request(), lambda _: fm_url)


def test_knn_test_channel_metrics(s3):
    items, _, _ = _knn_data()
    labels = (np.arange(40) % 4).astype(np.float32)
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/test/items.rec", recordio.encode_dense(items[:10], labels[:10]))
    request = _knn_request({"k": "1", "index_metric": "L2"})
    request["InputDataConfig"].append(_channel("test", "knn/test/"))
    result = run_training_job(request, s3=s3, log=lambda _: None)
    # each test vector is its own nearest neighbour in the index
    assert result["FinalMetricDataList"][0]["MetricName"] == "test:accuracy"
    assert result["FinalMetricDataList"][0]["Value"] == 1.0


def test_transform_output_is_the_same_whatever_the_query_batch(s3, monkeypatch):
    from pipeline_steps.local_algorithms import transform

    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    trained = run_training_job(_knn_request(), s3=s3, log=lambda _: None)
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__
    run_transform_job(_transform_request(), s3=s3, model_resolver=resolver, log=lambda _: None)
    whole = _get(s3, "transform/users-00000.rec.out")
    monkeypatch.setattr(transform, "QUERY_BATCH", 4)  # 23 queries: 6 batches
    for spare_core in (True, False):  # searched ahead of writing, or one batch after the other
        monkeypatch.setattr(transform, "_spare_core", lambda spare_core=spare_core: spare_core)
        run_transform_job(_transform_request(), s3=s3, model_resolver=resolver, log=lambda _: None)
        assert _get(s3, "transform/users-00000.rec.out") == whole
    assert len(whole.decode().splitlines()) == 24 and whole.endswith(b"}\n\n")


def test_single_record_batches_get_a_newline_each_and_none_assembles_nothing(s3, monkeypatch):
    from pipeline_steps.local_algorithms import transform

    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    trained = run_training_job(_knn_request(), s3=s3, log=lambda _: None)
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__
    quiet = {"s3": s3, "model_resolver": resolver, "log": lambda _: None}
    run_transform_job(_transform_request(), **quiet)
    multi = _get(s3, "transform/users-00000.rec.out")
    single_request = _transform_request(top={"BatchStrategy": "SingleRecord"})
    monkeypatch.setattr(transform, "QUERY_BATCH", 4)  # search batches cut across responses
    result = run_transform_job(single_request, **quiet)
    assert result["TransformJobStatus"] == "Completed", result.get("FailureReason")
    single = _get(s3, "transform/users-00000.rec.out")
    assert single == multi[:-1].replace(b"\n", b"\n\n")  # one response per record, each + "\n"
    none_request = _transform_request()
    none_request["TransformOutput"]["AssembleWith"] = "None"
    run_transform_job(none_request, **quiet)
    assert _get(s3, "transform/users-00000.rec.out") == multi[:-1]
    assert knn_output.read_results(single, "INNER_PRODUCT")[0].tolist() == (
        knn_output.read_results(multi, "INNER_PRODUCT")[0].tolist()
    )


def _big_knn(s3, n_items=1000, k=737, dim=65, seed=3):
    """A k-NN model shaped like ML-100k's (num_factors 64 + 1, k = 737); returns the resolver."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, dim)).astype(np.float32)
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, np.arange(1, n_items + 1, dtype=np.float32)))
    hp = {"feature_dim": str(dim), "k": str(k), "sample_size": str(n_items)}
    trained = run_training_job(_knn_request(hp), s3=s3, log=lambda _: None)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    return {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__, rng


def test_a_response_over_the_container_limit_fails_the_job_like_aws(s3):
    # One object of 5,000 users, as repackage wrote them before sizing: with MaxPayloadInMB 1 the
    # first mini-batch is 3,640 records of 288 bytes, whose ~11 KB verbose lines are ~40 MB.
    resolver, rng = _big_knn(s3)
    users = rng.normal(size=(5000, 65)).astype(np.float32)
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    request = _transform_request(top={"MaxPayloadInMB": 1, "BatchStrategy": "MultiRecord"})
    result = run_transform_job(request, s3=s3, model_resolver=resolver, log=lambda _: None)
    assert result["TransformJobStatus"] == "Failed"
    reason = result["FailureReason"]
    assert reason.startswith("ClientError: s3://jobs/knn/queries/users-00000.rec: mini-batch 1 of 2 ")
    assert "(records 1-3640, 1048320 bytes of payload, MaxPayloadInMB 1)" in reason
    assert "over the container's 6553500-byte limit" in reason
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="transform/")  # nothing uploaded


def test_parts_sized_by_repackage_arithmetic_pass_with_a_newline_after_each(s3):
    from pipeline_steps.common import sizing
    from pipeline_steps.repackage import core
    from pipeline_steps.repackage.config import RepackageConfig

    resolver, rng = _big_knn(s3)
    users = rng.normal(size=(500, 65)).astype(np.float32)
    size = core.part_size(RepackageConfig(max_payload_mb=1), k=737, feature_dim=65, where="test")
    assert size.users == sizing.DEFAULT_RESPONSE_BUDGET // sizing.response_bytes_per_query(737) == 202
    bounds = core.part_bounds(500, size.users)
    for i, (start, stop) in enumerate(bounds):
        _put(s3, f"knn/queries/users-{i:05d}.rec", recordio.encode_dense(users[start:stop]))
    request = _transform_request(top={"MaxPayloadInMB": 1, "BatchStrategy": "MultiRecord"})
    result = run_transform_job(request, s3=s3, model_resolver=resolver, log=lambda _: None)
    assert result["TransformJobStatus"] == "Completed", result.get("FailureReason")
    for i, (start, stop) in enumerate(bounds):
        out = _get(s3, f"transform/users-{i:05d}.rec.out")
        assert out.endswith(b"}\n\n") and out.count(b"\n\n") == 1  # one request per part
        assert len(out) - 1 <= sizing.DEFAULT_RESPONSE_BUDGET
        assert knn_output.read_results(out, "INNER_PRODUCT")[0].shape == (stop - start, 737)


def test_fm_max_runtime_stops_the_job(s3):
    _upload_fm(s3)
    request = _fm_request({"epochs": "50"})
    request["StoppingCondition"] = {"MaxRuntimeInSeconds": 0}
    lines: list[str] = []
    result = run_training_job(request, s3=s3, log=lines.append)
    assert result["TrainingJobStatus"] == "Failed"
    assert result["FailureReason"].startswith("MaxRuntimeExceeded")
    assert sum("[fm] epoch" in line for line in lines) == 1  # stopped after the first epoch


def test_transform_cuts_small_objects_into_overlapping_batches():
    from pipeline_steps.local_algorithms import transform

    assert transform._batch_size(943) == transform.MIN_QUERY_BATCH  # 4 batches: search overlaps writing
    assert transform._batch_size(8000) == 2000
    assert transform._batch_size(10**6) == transform.QUERY_BATCH
    assert transform._batch_size(10) == transform.MIN_QUERY_BATCH


# ------------------------------------------------------------------------------------------- security

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
VPC = {"Subnets": ["subnet-0a1b", "subnet-0c2d"], "SecurityGroupIds": ["sg-0e3f"]}


def _secured(request: dict) -> dict:
    request = json.loads(json.dumps(request))
    request.update(EnableNetworkIsolation=True, EnableInterContainerTrafficEncryption=True, VpcConfig=VPC)
    request["OutputDataConfig"]["KmsKeyId"] = KEY
    request.setdefault("ResourceConfig", {})["VolumeKmsKeyId"] = KEY
    return request


def test_security_fields_are_accepted_reported_and_outputs_use_the_key(s3):
    _upload_fm(s3)
    lines: list[str] = []
    result = run_training_job(_secured(_fm_request()), s3=s3, log=lines.append)
    assert result["TrainingJobStatus"] == "Completed", result.get("FailureReason")
    assert result["EnableNetworkIsolation"] is True and result["VpcConfig"] == VPC
    assert result["EnableInterContainerTrafficEncryption"] is True
    assert "network isolation: on" in lines and "inter-container traffic encryption: on" in lines
    assert "VPC: subnets subnet-0a1b, subnet-0c2d; security groups sg-0e3f" in lines
    assert f"output KMS key: {KEY}" in lines and f"volume KMS key: {KEY}" in lines
    for leaf in ("model.tar.gz", "metrics.json"):
        head = s3.head_object(Bucket=BUCKET, Key=f"fm/model/run1-fm/output/{leaf}")
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KEY)
    plain: list[str] = []
    run_training_job(_fm_request(name="run2-fm"), s3=s3, log=plain.append)
    assert "network isolation: off" in plain
    assert "ServerSideEncryption" not in s3.head_object(
        Bucket=BUCKET, Key="fm/model/run2-fm/output/model.tar.gz"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"VpcConfig": {"Subnets": [], "SecurityGroupIds": ["sg-1"]}}, "VpcConfig.Subnets must list 1 to 16"),
        ({"VpcConfig": {"Subnets": ["subnet-1"]}}, "VpcConfig needs exactly Subnets and SecurityGroupIds"),
        (
            {"VpcConfig": {"Subnets": ["subnet 1"], "SecurityGroupIds": ["sg-1"]}},
            "invalid id(s) ['subnet 1']",
        ),
        ({"EnableNetworkIsolation": "yes"}, "EnableNetworkIsolation must be true or false"),
        (
            {"OutputDataConfig": {"S3OutputPath": "s3://jobs/x", "KmsKeyId": "key id"}},
            "OutputDataConfig.KmsKeyId",
        ),
    ],
)
def test_malformed_security_fields_are_rejected_like_the_api(s3, change, message):
    request = {**_fm_request(), **change}
    with pytest.raises(ValueError) as err:
        run_training_job(request, s3=s3, log=lambda _: None)
    assert message in str(err.value)


def test_transform_writes_its_output_under_the_key(s3):
    items, labels, users = _knn_data()
    _put(s3, "knn/train/items.rec", recordio.encode_dense(items, labels))
    _put(s3, "knn/queries/users-00000.rec", recordio.encode_dense(users))
    trained = run_training_job(_secured(_knn_request()), s3=s3, log=lambda _: None)
    assert trained["TrainingJobStatus"] == "Completed", trained.get("FailureReason")
    request = _transform_request()
    request["TransformOutput"]["KmsKeyId"] = KEY
    request["TransformResources"]["VolumeKmsKeyId"] = KEY
    lines: list[str] = []
    resolver = {"run1-knn": trained["ModelArtifacts"]["S3ModelArtifacts"]}.__getitem__
    result = run_transform_job(request, s3=s3, model_resolver=resolver, log=lines.append)
    assert result["TransformJobStatus"] == "Completed", result.get("FailureReason")
    head = s3.head_object(Bucket=BUCKET, Key="transform/users-00000.rec.out")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KEY)
    assert f"output KMS key: {KEY}" in lines and not any(line.startswith("network") for line in lines)


def test_mini_batches_pack_whole_records_up_to_max_payload():
    from pipeline_steps.local_algorithms.hyperparameters import ClientError
    from pipeline_steps.local_algorithms.transform import Batching

    mib = 2**20
    sizes = np.array([mib // 2, mib // 2, 1, mib, 3], np.int64)
    assert Batching(max_payload_mb=1).mini_batches(sizes, "o").tolist() == [2, 3, 4, 5]
    assert Batching(max_payload_mb=2).mini_batches(sizes, "o").tolist() == [3, 5]
    assert Batching(multi_record=False).mini_batches(sizes, "o").tolist() == [1, 2, 3, 4, 5]
    assert Batching(split=False, max_payload_mb=3).mini_batches(sizes, "o").tolist() == [5]
    assert Batching().mini_batches(np.zeros(0, np.int64), "o").tolist() == []
    with pytest.raises(ClientError, match=r"o: record 2 is 1048577 bytes, more than MaxPayloadInMB 1"):
        Batching(max_payload_mb=1).mini_batches(np.array([1, mib + 1]), "o")
    with pytest.raises(ClientError, match=r"o: without SplitType the whole object \(2097156 bytes\)"):
        Batching(split=False, max_payload_mb=2).mini_batches(sizes, "o")
    request = _transform_request(top={"MaxPayloadInMB": 2, "BatchStrategy": "SingleRecord"})
    assert Batching.from_request(request) == Batching(max_payload_mb=2, multi_record=False)
    for top, message in (
        ({"MaxPayloadInMB": 0}, "MaxPayloadInMB 0 (HTTP chunked encoding) is not supported"),
        ({"MaxPayloadInMB": 101}, "MaxPayloadInMB must be an integer in 0..100"),
        ({"BatchStrategy": "Auto"}, "BatchStrategy 'Auto' is not one of"),
    ):
        with pytest.raises(ClientError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Batching.from_request(_transform_request(top=top))
