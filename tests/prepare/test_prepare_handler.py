"""Lambda handler on moto S3, and the CLI on local paths."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from pipeline_steps.formats import recordio
from pipeline_steps.prepare import handler as prepare_handler
from pipeline_steps.prepare.__main__ import main
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.core import prepare
from pipeline_steps.prepare.storage import S3Storage

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "prep-bucket"


def _ratings(n_users=30, n_items=40, per_user=15, seed=0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(n_users):
        for k, i in enumerate(rng.choice(n_items, per_user, replace=False)):
            lines.append(f"U{u:03d}\tASIN{i:05d}\t{rng.integers(1, 6)}\t{1_000_000 + 100 * u + k}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        monkeypatch.setenv("BUCKET_NAME", BUCKET)
        yield client


def test_handler_writes_the_contract_layout_and_payload(s3, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key="input/ratings.tsv.gz", Body=gzip.compress(_ratings().encode()))
    s3.put_object(Bucket=BUCKET, Key="input/_SUCCESS", Body=b"")
    monkeypatch.setenv(
        "STEP_CONFIG", json.dumps({"negative_ratio": 2, "negative_draws": 2, "shard_rows": 500})
    )
    out = prepare_handler.handler({"run_id": "exec-1"}, None)
    prefix = "runs/exec-1/prepared/"
    assert out == {
        "run_id": "exec-1",
        "manifest_key": prefix + "manifest.json",
        "train_s3_uri": f"s3://{BUCKET}/{prefix}train/",
        "test_s3_uri": f"s3://{BUCKET}/{prefix}test/",
        "feature_dim": "70",
        "n_users": 30,
        "n_items": 40,
        "train_rows": 30 * 5 * 2 * 3,  # 5 training rows per user x 2 draws x (1 + 2 negatives)
        "test_rows": 30 * 10 * 3,
    }
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    for leaf in ("manifest.json", "users.json", "items.json", "seen.npz", "holdout.npz", "popularity.npy"):
        assert prefix + leaf in keys
    assert prefix + "report.json" in keys
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["bucket"] == BUCKET and manifest["feature_dim"] == 70
    assert manifest["train_shards"] == [f"{prefix}train/part-0000{k}.rec" for k in range(2)]
    assert [o["key"] for o in manifest["input"]["objects"]] == ["input/ratings.tsv.gz"]
    shard = s3.get_object(Bucket=BUCKET, Key=manifest["train_shards"][0])["Body"].read()
    data, _, _, shape, labels = recordio.read_sparse(shard)
    # 900 rows at <= 500 a shard: two shards, the rows spread evenly
    assert shape == (450, 70) and data.dtype == np.float32 and labels.dtype == np.float32
    users = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + "users.json")["Body"].read())
    assert users == [f"U{u:03d}" for u in range(30)]

    # A retry (same input and config) returns the same payload and rewrites nothing.
    etags = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]}
    assert prepare_handler.handler({"run_id": "exec-1"}, None) == out
    assert {
        o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    } == etags


def test_handler_rejects_bad_events_and_config(s3, monkeypatch):
    with pytest.raises(ValueError, match="run_id"):
        prepare_handler.handler({"run_id": "../x"}, None)
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"label_mode": "stars"}))
    with pytest.raises(
        ValueError, match=r"STEP_CONFIG\.label_mode: 'stars' is not one of 'binary', 'regression', 'implicit'"
    ):
        prepare_handler.handler({"run_id": "r"}, None)


def test_handler_explicit_test_prefix(s3, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key="input/base.tsv", Body=_ratings(seed=1).encode())
    s3.put_object(
        Bucket=BUCKET, Key="input-test/test.tsv", Body=b"U000\tASIN00001\t5\t1\nU001\tASIN00002\t4\t1\n"
    )
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"test_prefix": "input-test/", "label_mode": "binary"}))
    out = prepare_handler.handler({"run_id": "r2"}, None)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
    assert (
        manifest["counts"]["holdout_pairs"]
        + json.loads(s3.get_object(Bucket=BUCKET, Key=manifest["files"]["report"])["Body"].read())["test"][
            "in_train"
        ]
        == 2
    )


def test_cli_local_paths(tmp_path, capsys):
    src = tmp_path / "u.data"
    src.write_text(_ratings(seed=2))
    assert (
        main(["--input", str(src), "--out", str(tmp_path / "out"), "--set", "label_mode=binary", "-q"]) == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload["feature_dim"] == "70" and payload["run_id"] == "local"
    assert (tmp_path / "out/runs/local/prepared/manifest.json").is_file()
    assert main(["--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    assert "no input files" in capsys.readouterr().err


def test_cli_help_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline_steps.prepare", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--input" in proc.stdout and "--test" in proc.stdout


def test_cli_refuses_output_inside_input(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/u.data").write_text(_ratings(seed=3))
    assert main(["--input", str(tmp_path / "data"), "--out", str(tmp_path / "data/out")]) == 2
    assert "--out must not be inside" in capsys.readouterr().err


def test_cli_refuses_output_inside_the_test_directory(tmp_path, capsys):
    # A second run would read the first run's .rec/.npz outputs as test files.
    (tmp_path / "train").mkdir()
    (tmp_path / "train/u.data").write_text(_ratings(seed=3))
    (tmp_path / "test").mkdir()
    (tmp_path / "test/t.data").write_text(_ratings(seed=4))
    argv = ["--input", str(tmp_path / "train"), "--test", str(tmp_path / "test")]
    assert main([*argv, "--out", str(tmp_path / "test/out")]) == 2
    assert "--out must not be inside the --test directory" in capsys.readouterr().err


def test_cli_with_s3_uris(s3, capsys):
    s3.put_object(Bucket=BUCKET, Key="raw/ratings.tsv", Body=_ratings(seed=4).encode())
    code = main(["--input", f"s3://{BUCKET}/raw/", "--out", f"s3://{BUCKET}/work", "--run-id", "cli1", "-q"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["train_s3_uri"] == f"s3://{BUCKET}/work/runs/cli1/prepared/train/"
    keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="work/runs/cli1/prepared/")["Contents"]
    }
    assert "work/runs/cli1/prepared/manifest.json" in keys


def test_an_input_prefix_covering_the_outputs_is_refused(s3, monkeypatch):
    # input_prefix "" lists the whole bucket: runs/<id>/prepared/ outputs (this run's on a retry,
    # other runs' .rec/.npz) would be parsed as interaction files.
    s3.put_object(Bucket=BUCKET, Key="ratings.tsv", Body=_ratings().encode())
    s3.put_object(Bucket=BUCKET, Key="runs/old/prepared/seen.npz", Body=b"PK\x03\x04\xd6binary")
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"input_prefix": ""}))
    from pipeline_steps.prepare.layout import PrepareInputError

    with pytest.raises(PrepareInputError, match="input_prefix '' includes the output prefix"):
        prepare_handler.handler({"run_id": "exec-1"}, None)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert sorted(keys) == ["ratings.tsv", "runs/old/prepared/seen.npz"]


def test_handler_reads_side_feature_metadata_from_the_bucket(s3, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key="input/ratings.tsv", Body=_ratings().encode())
    items = "asin,category\n" + "".join(f"ASIN{i:05d},c{i % 3}\n" for i in range(40))
    s3.put_object(Bucket=BUCKET, Key="metadata/items/items.csv.gz", Body=gzip.compress(items.encode()))
    config = {"item_features": "metadata/items/", "item_feature_columns": "category:categorical"}
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"negative_ratio": 2, "negative_draws": 1, **config}))
    out = prepare_handler.handler({"run_id": "exec-f"}, None)
    assert out["feature_dim"] == "73"  # 30 users + 40 items + 3 categories
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=out["manifest_key"])["Body"].read())
    assert manifest["features"]["item"] == {"with_metadata": 40, "without_metadata": 0, "metadata_only": 0}
    channels = [o["channel"] for o in manifest["input"]["objects"]]
    assert channels == ["train", "item_features"]
    key = manifest["train_shards"][0]
    _, indices, indptr, shape, _ = recordio.read_sparse(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert shape[1] == 73 and set(np.diff(indptr)) == {3}  # user, item, the item's category
    assert indices[2::3].min() >= 70


def test_with_the_spark_engine_the_lambda_returns_the_jobs_run_and_never_prepares(s3, monkeypatch):
    """engine=spark: the processing job before the Lambda writes the run (decision 0016)."""
    s3.put_object(Bucket=BUCKET, Key="input/ratings.tsv", Body=_ratings().encode())
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"engine": "spark", "negative_draws": 1}))
    with pytest.raises(RuntimeError, match="Spark processing job did not complete"):
        prepare_handler.handler({"run_id": "exec-2"}, None)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")
    # The job's run (here: the same core on the same store and config) is returned as it is.
    config = {"engine": "spark", "negative_draws": 1}
    store = S3Storage(BUCKET, s3)
    manifest = prepare(
        PrepareConfig.from_dict(config),
        source=store,
        sink=store,
        run_id="exec-2",
        out_prefix="runs/exec-2/prepared/",
    )
    monkeypatch.setenv("STEP_CONFIG", json.dumps(config))
    written = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]}
    out = prepare_handler.handler({"run_id": "exec-2"}, None)
    assert out["n_users"] == manifest["n_users"] and out["train_rows"] == manifest["counts"]["train_rows"]
    assert {
        o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/")["Contents"]
    } == written
