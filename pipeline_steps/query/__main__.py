"""`python -m pipeline_steps.query USER_ID [--x N] [--exclude a,b] [--table T] [--endpoint-url URL]
[--run RUN_ID] [--item-metadata s3://BUCKET/KEY --item-fields a,b]` -> JSON; `--related ITEM_ID`
instead of USER_ID for an item's related items. With `--item-metadata`, the items carry those
columns of that CSV/TSV (query/metadata.py); a missing or malformed object exits 2 with its message."""

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
from pipeline_steps.query.metadata import DEFAULT_MAX_MB, ItemMetadataError, MetadataSource


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
    parser.add_argument("--item-metadata", default="", help="s3://BUCKET/KEY of an item metadata CSV/TSV")
    parser.add_argument("--item-fields", default="", help="comma-separated columns to add to each item")
    parser.add_argument("--item-metadata-max-mb", type=int, default=DEFAULT_MAX_MB)
    args = parser.parse_args(argv)
    if bool(args.item_metadata) != bool(args.item_fields):
        parser.error("--item-metadata and --item-fields go together")
    if args.item_metadata and not args.item_metadata.startswith("s3://"):
        parser.error("--item-metadata: expected s3://BUCKET/KEY")
    if not args.table:
        parser.error("--table is required (or set TABLE_NAME)")
    if (args.user_id is None) == (args.related is None):
        parser.error("give either USER_ID or --related ITEM_ID")
    import boto3

    dynamodb = boto3.client("dynamodb", endpoint_url=args.endpoint_url)
    exclude = [e for e in args.exclude.split(",") if e]
    options = {"table_name": args.table, "dynamodb": dynamodb, "run_id": args.run, "x": args.x}
    try:
        if args.item_metadata:
            bucket, _, key = args.item_metadata[len("s3://") :].partition("/")
            source = MetadataSource(
                bucket=bucket,
                key=key,
                fields=[f for f in args.item_fields.split(",") if f],
                max_bytes=args.item_metadata_max_mb * 1024 * 1024,
                s3=boto3.client("s3", endpoint_url=args.endpoint_url),
            )
            options["item_metadata"] = source.get()
        if args.related is not None:
            result = get_related(args.related, exclude=exclude, **options)
        else:
            result = get_recommendations(args.user_id, exclude=exclude, **options)
    except (NoPublishedRunError, QueryInputError, UnknownItemError, ItemMetadataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
