"""The report of a small run from its S3 artefacts and run records (moto): page, data, metrics, CLI."""

from __future__ import annotations

import base64
import json
import re

import boto3
import numpy as np
import pytest

from pipeline_steps.common.events import ReportEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.runio import put_json
from pipeline_steps.report import __main__ as cli
from pipeline_steps.report import handler as report_handler
from pipeline_steps.report.build import Clients, run_report
from pipeline_steps.report.config import ReportConfig
from pipeline_steps.report.render import SECTIONS
from tests.conftest import BUCKET, TABLE
from tests.prepared_run import event, put_prepared, put_queries_manifest, put_transform_output

USERS = ["alice", "bob", "carol", "dave"]
ITEMS = ["i0", "i1", "i2", "i3", "i4", "i5"]
SEEN = [[0], [1, 2], [3], [0, 1, 2, 3]]
HOLDOUT = [[1], [0], [4], [5]]
PNG = b"\x89PNG\r\n\x1a\n"


def put_run(s3, dynamodb, run_id: str, scores: list[list[float]], *, started: str, ndcg: float) -> None:
    """A complete run: prepared files, one query part, a transform output, evaluation, run record."""
    put_prepared(s3, BUCKET, run_id, users=USERS, items=ITEMS, seen=SEEN, holdout=HOLDOUT)
    put_queries_manifest(s3, BUCKET, run_id, part_sizes=[4], k=6, n_items=6)
    labels = [list(range(1, 7)) for _ in USERS]  # item ordinals; INNER_PRODUCT: higher = better
    put_transform_output(s3, BUCKET, run_id, 0, np.array(labels), np.array(scores))
    metrics = {"precision": 0.25, "ndcg": ndcg, "recall": 0.5, "coverage": 0.5}
    put_json(
        s3,
        BUCKET,
        RunLayout(run_id).metrics,
        {"run_id": run_id, "x": 2, "n_eval_users": 4, "model": metrics, "baseline": {**metrics, "ndcg": 0.1}},
    )
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": "run"},
            "sk": {"S": run_id},
            "status": {"S": "complete"},
            "started_at": {"S": started},
            "published_at": {"S": started},
            "metrics": {"M": {k: {"N": str(v)} for k, v in metrics.items()}},
        },
    )


def report_event(run_id: str, fm_uri: str = "", job: str = "") -> ReportEvent:
    return ReportEvent(**event(BUCKET, run_id), fm_job_name=job, fm_model_s3_uri=fm_uri, execution_arn="")


@pytest.fixture
def two_runs(s3, dynamodb):
    # r1 ranks items 5, 4, 3... first; r2 ranks 0, 1, 2... first (seen items are dropped).
    put_run(s3, dynamodb, "r1", [[1, 2, 3, 4, 5, 6]] * 4, started="2026-01-01T00:00:00Z", ndcg=0.4)
    put_run(s3, dynamodb, "r2", [[6, 5, 4, 3, 2, 1]] * 4, started="2026-01-08T00:00:00Z", ndcg=0.3)
    fm_output = {"loss_name": "xent", "epoch_history": [{"epoch": e, "train_loss": 1 / e} for e in (1, 2, 3)]}
    put_json(s3, BUCKET, "runs/r2/fm/job-fm/output/metrics.json", fm_output)
    s3.put_object(Bucket=BUCKET, Key="runs/r2/fm/job-fm/output/model.tar.gz", Body=b"model")
    return s3, dynamodb


def full_event(run_id: str) -> dict:
    """What the state machine sends: every field set."""
    uri = f"s3://{BUCKET}/runs/{run_id}/fm/job-fm/output/model.tar.gz"
    arn = f"arn:aws:states:us-east-1:123456789012:execution:pipeline:{run_id}"
    return {**event(BUCKET, run_id), "fm_job_name": "job-fm", "fm_model_s3_uri": uri, "execution_arn": arn}


def images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_page_has_every_section_inline_pngs_and_no_url(two_runs) -> None:
    s3, dynamodb = two_runs
    cloudwatch = boto3.client("cloudwatch")
    config = ReportConfig(x=2, cloudwatch_namespace="topx/quality")
    result, html = run_report(
        clients=Clients(s3=s3, dynamodb=dynamodb, sagemaker=boto3.client("sagemaker"), cloudwatch=cloudwatch),
        bucket=BUCKET,
        table_name=TABLE,
        event=report_event("r2", f"s3://{BUCKET}/runs/r2/fm/job-fm/output/model.tar.gz", "job-fm"),
        config=config,
    )
    assert result.report_key == "runs/r2/report/index.html" and result.previous_run_id == "r1"
    stored = s3.get_object(Bucket=BUCKET, Key=result.report_key)
    assert stored["Body"].read().decode() == html and stored["ContentType"].startswith("text/html")
    for section, _ in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert "http://" not in html and "https://" not in html and "<script" not in html
    pngs = images(html)
    # metrics, history, activity, coverage, scores, training curve, drift (no execution history here)
    assert len(pngs) == 7 and all(p.startswith(PNG) for p in pngs)
    doc = json.loads(s3.get_object(Bucket=BUCKET, Key=RunLayout("r2").report_data)["Body"].read())
    assert doc["ratio_vs_previous"] == pytest.approx(0.3 / 0.4)
    assert [r["run_id"] for r in doc["history"]] == ["r1", "r2"]
    assert doc["training"]["epochs"] == [1, 2, 3]
    # r1: unseen items best-first from i5 down; r2 from i0 up: dave (only i4, i5 unseen) keeps both
    # in the other order, the three others have nothing in common with their r1 list
    drift = doc["drift"]
    assert drift["users_compared"] == 4 and drift["share_users_changed"] == 1.0
    assert drift["mean_overlap_at_x"] == 0.25 and drift["overlap_counts"] == [3, 0, 1]
    assert drift["entering_sample"] == ["i0", "i1", "i2", "i3"] and drift["leaving_sample"] == []
    assert doc["activity"][0]["min_activity"] == 1 and sum(g["users"] for g in doc["activity"]) == 4
    # the job is unknown to SageMaker here: its final metrics are missing, and the page says so
    assert [n.split(" (")[0] for n in doc["notes"]] == ["FM final metrics: not available"]
    stats = cloudwatch.list_metrics(Namespace="topx/quality")["Metrics"]
    assert {m["MetricName"] for m in stats} == {"ndcg_ratio_vs_previous", "drift_at_x", "share_users_changed"}


def test_first_run_has_no_drift_and_says_so(two_runs) -> None:
    s3, dynamodb = two_runs
    result, html = run_report(
        clients=Clients(s3=s3, dynamodb=dynamodb),
        bucket=BUCKET,
        table_name=TABLE,
        event=report_event("r1"),
        config=ReportConfig(x=2),
    )
    assert result.previous_run_id == ""
    assert "no earlier run to compare with" in html
    assert "final metrics only" in html  # no per-epoch values recorded for r1's FM


def test_previous_run_with_expired_files_still_renders(two_runs) -> None:
    s3, dynamodb = two_runs
    s3.delete_object(Bucket=BUCKET, Key="runs/r1/transform/users-00000.rec.out")
    _, html = run_report(
        clients=Clients(s3=s3, dynamodb=dynamodb), bucket=BUCKET, table_name=TABLE,
        event=report_event("r2"), config=ReportConfig(x=2),
    )  # fmt: skip
    assert "lists of the previous run r1: not available" in html


def test_handler_reads_env_and_writes_the_page(two_runs, monkeypatch) -> None:
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("STEP_CONFIG", json.dumps({"x": 2}))
    out = report_handler.handler(full_event("r2"))
    assert out["report_key"] == "runs/r2/report/index.html" and out["previous_run_id"] == "r1"


def test_handler_fails_on_a_run_without_outputs(s3, dynamodb, monkeypatch) -> None:
    # The state machine's Catch turns this into a notification; the published run stays current.
    monkeypatch.setenv("BUCKET_NAME", BUCKET)
    monkeypatch.setenv("STEP_CONFIG", "{}")
    with pytest.raises(Exception, match="does not exist"):
        report_handler.handler(full_event("missing"))


def test_cli_renders_a_deployed_run_to_a_file_and_s3(two_runs, tmp_path, capsys) -> None:
    s3, _ = two_runs
    out = tmp_path / "r2.html"
    code = cli.main(["--run", "r2", "--bucket", BUCKET, "--table", TABLE, "--x", "2", "--out", str(out)])
    assert code == 0
    html = out.read_text(encoding="utf-8")
    assert '<section id="drift">' in html and "training-job/job-fm" in html  # job found from S3
    assert s3.get_object(Bucket=BUCKET, Key="runs/r2/report/index.html")["Body"].read().decode() == html
    printed = capsys.readouterr().out
    assert f"s3://{BUCKET}/runs/r2/report/index.html" in printed and str(out) in printed


def test_cli_no_upload_leaves_s3_alone_and_reports_a_missing_run(two_runs, tmp_path, capsys) -> None:
    s3, _ = two_runs
    out = tmp_path / "r1.html"
    assert cli.main(["--run", "r1", "--bucket", BUCKET, "--no-upload", "--x", "2", "--out", str(out)]) == 0
    assert out.is_file() and "KeyCount" in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/report/")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/report/")["KeyCount"] == 0
    assert cli.main(["--run", "nope", "--bucket", BUCKET, "--no-upload"]) == 2
    assert "does not exist" in capsys.readouterr().err
