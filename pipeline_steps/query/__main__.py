"""`python -m pipeline_steps.query USER_ID [--table T] [--endpoint-url URL] [--run RUN_ID]` -> JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline_steps.query.core import NoPublishedRunError, get_recommendations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_steps.query")
    parser.add_argument("user_id")
    parser.add_argument(
        "--table", default=os.environ.get("TABLE_NAME"), help="DynamoDB table (env TABLE_NAME)"
    )
    parser.add_argument("--endpoint-url", default=None, help="e.g. http://127.0.0.1:5000 for the local mode")
    parser.add_argument("--run", default=None, help="read this run instead of the current one")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("--table is required (or set TABLE_NAME)")
    import boto3

    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    try:
        result = get_recommendations(args.user_id, table_name=args.table, dynamodb=dynamodb, run_id=args.run)
    except NoPublishedRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
