"""`python -m pipeline_steps.publish rollback [--to RUN_ID]` / `status [--json]`: operate the pointer.

`status` prints the quality history: one line per run record (oldest first), its status, when it
was prepared and published, users written and the model's metrics; `*` marks the current run.
`--json` prints the pointer and the raw run records instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

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
    st = sub.add_parser("status", help="print the quality history of the runs (and the current one)")
    st.add_argument("--json", action="store_true", help="the pointer and the run records as JSON")
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
            if not args.json:
                print(history_table(result["runs"], (result["pointer"] or {}).get("run_id")))
                return 0
    except versioning.PublishStateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1, sort_keys=True, default=str, ensure_ascii=False))
    return 0


HISTORY_METRICS = ("precision", "recall", "ndcg", "map", "coverage")


def history_table(runs: list[dict[str, Any]], current: str | None) -> str:
    """The run records as a text table, oldest first (by when their data was prepared)."""
    head = f"  {'run':<34}{'status':<10}{'started':<22}{'published':<22}{'users':>8}"
    head += "".join(f"{m:>11}" for m in HISTORY_METRICS)
    lines = [head]
    for r in sorted(runs, key=lambda r: (str(r.get("started_at", "")), str(r.get("sk", "")))):
        metrics = r.get("metrics") or {}
        mark = "*" if r.get("sk") == current else " "
        line = f"{mark} {r.get('sk')!s:<34}{r.get('status', '')!s:<10}"
        line += f"{r.get('started_at', '')!s:<22}{r.get('published_at', '')!s:<22}"
        line += f"{r.get('users_written', '')!s:>8}"
        line += "".join(f"{metrics[m]:>11.4f}" if m in metrics else f"{'-':>11}" for m in HISTORY_METRICS)
        lines.append(line)
    if len(lines) == 1:
        lines.append("  (no run records)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
