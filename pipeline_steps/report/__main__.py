"""`python -m pipeline_steps.report --run RUN_ID`: render the report of a deployed run.

Reads the run's artefacts from S3 and the run records from DynamoDB with your credentials, writes
`runs/<id>/report/index.html` (and report.json) back to S3 unless `--no-upload`, and the page to
`--out FILE` when given. The FM job and the execution are found from the run's S3 layout and the
state machine's executions; pass them explicitly when they cannot be listed.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import boto3

from pipeline_steps.common.errors import InputError
from pipeline_steps.common.events import ReportEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.runio import list_keys, s3_uri
from pipeline_steps.report.build import Clients, run_event, run_report
from pipeline_steps.report.config import ReportConfig

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client

MODEL = "/output/model.tar.gz"


def fm_model_key(s3: Any, bucket: str, run_id: str) -> str:
    """The FM job's model under `runs/<id>/fm/<job name>/output/model.tar.gz` ("" when absent)."""
    keys = [k for k in list_keys(s3, bucket, RunLayout(run_id).fm) if k.endswith(MODEL)]
    return sorted(keys)[-1] if keys else ""


def report_event(s3: Any, bucket: str, run_id: str, *, execution_arn: str) -> ReportEvent:
    base = run_event(bucket, run_id)
    model = fm_model_key(s3, bucket, run_id)
    job = posixpath.basename(model[: -len(MODEL)]) if model else ""
    return ReportEvent(
        **base.to_json(),
        fm_job_name=job,
        fm_model_s3_uri=s3_uri(bucket, model) if model else "",
        execution_arn=execution_arn,
    )


def execution_for(stepfunctions: Any, state_machine_arn: str, run_id: str) -> str:
    """The execution named `run_id` (the run id is the execution name), "" when not found."""
    arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{run_id}"
    try:
        stepfunctions.describe_execution(executionArn=arn)
    except Exception:
        return ""
    return arn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_steps.report", description=__doc__)
    parser.add_argument("--run", required=True, help="run id (= the execution name)")
    parser.add_argument("--bucket", default=os.environ.get("BUCKET_NAME"), help="env BUCKET_NAME")
    parser.add_argument("--table", default=os.environ.get("TABLE_NAME"), help="env TABLE_NAME (history)")
    parser.add_argument(
        "--state-machine-arn", default=os.environ.get("STATE_MACHINE_ARN"), help="for the stage times"
    )
    parser.add_argument("--out", type=Path, help="also write the page to this file")
    parser.add_argument("--no-upload", action="store_true", help="do not write the report to S3")
    parser.add_argument("--x", type=int, default=ReportConfig.x, help="top x (topx:x)")
    parser.add_argument("--history-runs", type=int, default=ReportConfig.history_runs)
    parser.add_argument("--endpoint-url", default=None, help="e.g. the local moto server")
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error("--bucket is required (or set BUCKET_NAME)")
    session = {"endpoint_url": args.endpoint_url}
    s3 = boto3.client("s3", **session)
    sfn = boto3.client("stepfunctions", **session) if args.state_machine_arn else None
    config = ReportConfig(x=args.x, history_runs=args.history_runs)
    config.validate("report")
    clients = Clients(
        # a proxy with the client's interface (its reads are the client's own)
        s3=cast("S3Client", _NoUpload(s3)) if args.no_upload else s3,
        dynamodb=boto3.client("dynamodb", **session) if args.table else None,
        sagemaker=boto3.client("sagemaker", **session),
        stepfunctions=sfn,
    )
    execution = execution_for(sfn, args.state_machine_arn, args.run) if sfn else ""
    try:
        event = report_event(s3, args.bucket, args.run, execution_arn=execution)
        result, html = run_report(
            clients=clients, bucket=args.bucket, table_name=args.table, event=event, config=config
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_upload:
        print(f"report: s3://{args.bucket}/{result.report_key}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(html, encoding="utf-8")
        print(f"report: {args.out} ({len(html):,} bytes)")
    return 0


class _NoUpload:
    """An S3 client whose writes are dropped (--no-upload); reads go to the real client."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


if __name__ == "__main__":
    sys.exit(main())
