"""`python -m pipeline_steps.publish rollback [--to RUN_ID]` / `status`: operate the current-run pointer."""

from __future__ import annotations

import argparse
import json
import os
import sys

import boto3

from pipeline_steps.publish import versioning


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_steps.publish")
    parser.add_argument(
        "--table", default=os.environ.get("TABLE_NAME"), help="DynamoDB table (env TABLE_NAME)"
    )
    parser.add_argument("--endpoint-url", default=None, help="e.g. the local moto server")
    sub = parser.add_subparsers(dest="command", required=True)
    rb = sub.add_parser("rollback", help="point readers back at a previous complete run")
    rb.add_argument(
        "--to", dest="to_run_id", default=None, help="run id (default: the pointer's previous run)"
    )
    sub.add_parser("status", help="print the pointer and the run records")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("--table is required (or set TABLE_NAME)")
    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    try:
        if args.command == "rollback":
            result = versioning.rollback(dynamodb, args.table, to_run_id=args.to_run_id)
        else:
            result = {
                "pointer": versioning.read_pointer(dynamodb, args.table),
                "runs": versioning.list_runs(dynamodb, args.table),
            }
    except versioning.PublishStateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1, sort_keys=True, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
