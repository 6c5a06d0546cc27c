"""`python -m pipeline_steps.query USER_ID [--x N] [--exclude a,b] [--table T] [--endpoint-url URL]
[--run RUN_ID]` -> JSON; `--related ITEM_ID` instead of USER_ID for an item's related items."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline_steps.query.core import (
    NoPublishedRunError,
    QueryInputError,
    UnknownItemError,
    get_recommendations,
    get_related,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline_steps.query")
    parser.add_argument("user_id", nargs="?", help="the user whose top x to print")
    parser.add_argument("--related", metavar="ITEM_ID", help="print this item's related items instead")
    parser.add_argument(
        "--table", default=os.environ.get("TABLE_NAME"), help="DynamoDB table (env TABLE_NAME)"
    )
    parser.add_argument("--endpoint-url", default=None, help="e.g. http://127.0.0.1:5000 for the local mode")
    parser.add_argument("--run", default=None, help="read this run instead of the current one")
    parser.add_argument("--x", type=int, default=None, help="how many items (default: the run's x)")
    parser.add_argument("--exclude", default="", help="comma-separated item ids to leave out")
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("--table is required (or set TABLE_NAME)")
    if (args.user_id is None) == (args.related is None):
        parser.error("give either USER_ID or --related ITEM_ID")
    import boto3

    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    exclude = [e for e in args.exclude.split(",") if e]
    options = {"table_name": args.table, "dynamodb": dynamodb, "run_id": args.run, "x": args.x}
    try:
        if args.related is not None:
            result = get_related(args.related, exclude=exclude, **options)
        else:
            result = get_recommendations(args.user_id, exclude=exclude, **options)
    except (NoPublishedRunError, QueryInputError, UnknownItemError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
