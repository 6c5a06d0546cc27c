#!/usr/bin/env python3
"""`make integ`: deploy the integ app with the pinned CDK CLI, check its assertions, always tear down.

This does what `integ-runner --force` does for one test (deploy every stack of the test case and its
assertion stack, read the assertion results from the assertion stack's outputs, destroy), with the
project's pinned CDK CLI. integ-runner itself is pinned too (`make integ-runner`), but its 2.197.x
releases read cloud assemblies up to schema 53 while aws-cdk-lib 2.275.0 writes schema 55, so it
stops before deploying (README, "Integration test on AWS").

Usage: .venv/bin/python integ/run.py [--region REGION] [--keep]
  --keep: leave the stacks deployed (for debugging; then `make integ-destroy`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"
APP_FILE = "integ/integ_pipeline.py"
OUTDIR = ROOT / "integ" / "cdk-integ.out.integ_pipeline.py.snapshot"  # ignored by git, like integ-runner's
PROJECT = "fm-knn-topx-integ"
ASSERTIONS_STACK = f"{PROJECT}-assertions"


def default_region() -> str:
    return json.loads((ROOT / "cdk.json").read_text())["context"]["topx:region"]


def cdk(*args: str, env: dict[str, str]) -> int:
    app = f"{sys.executable} {APP_FILE}"
    command = [str(CDK), *args, "--app", app, "--output", str(OUTDIR), "--no-notices"]
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def assertion_results(outputs_file: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """(assertion results by output name, other outputs) of the assertion stack."""
    if not outputs_file.exists():
        return {}, {}
    outputs = json.loads(outputs_file.read_text()).get(ASSERTIONS_STACK, {})
    results = {k: json.loads(v) for k, v in outputs.items() if k.startswith("AssertionResults")}
    other = {k: v for k, v in outputs.items() if not k.startswith("AssertionResults")}
    return results, other


def print_probe_report(execution_arn: str, region: str) -> None:
    """The k-NN probe's report, raw .out included: what a real transform writes, for the record."""
    import boto3

    sfn = boto3.client("stepfunctions", region_name=region)
    execution = sfn.describe_execution(executionArn=execution_arn)
    print(f"k-NN probe execution {execution_arn}: {execution['status']}")
    output = execution.get("output")
    if output:
        report = json.loads(output)
        for name, text in (report.get("raw") or {}).items():
            print(f"--- raw {name} ({len(text.encode())} bytes, repr) ---\n{text!r}\n--- end ---")
        print("report:", json.dumps({k: v for k, v in report.items() if k != "raw"}, indent=1))


def caller_account(region: str) -> str | None:
    """The account of the caller's credentials, or None (with the reason printed)."""
    import boto3
    import botocore.exceptions

    try:
        return boto3.client("sts", region_name=region).get_caller_identity()["Account"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        print(f"integ: no usable AWS credentials ({e}); see README 'Integration test on AWS'")
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", default=os.environ.get("INTEG_REGION") or default_region())
    parser.add_argument("--keep", action="store_true", help="do not destroy the stacks at the end")
    parser.add_argument("--destroy-only", action="store_true", help="only destroy a kept deployment")
    args = parser.parse_args()

    env = dict(os.environ, TOPX_INTEG_REGION=args.region, AWS_REGION=args.region)
    env["AWS_DEFAULT_REGION"] = args.region
    env.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
    env.setdefault("CDK_DISABLE_CLI_TELEMETRY", "true")
    env.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    account = caller_account(args.region)
    if account is None:
        return 2
    print(f"integ: account {account}, region {args.region}", flush=True)
    if args.destroy_only:
        return cdk("destroy", "--all", "--force", env=env)

    shutil.rmtree(OUTDIR, ignore_errors=True)
    outputs_file = OUTDIR.with_name(OUTDIR.name + ".outputs.json")
    outputs_file.unlink(missing_ok=True)
    started = time.monotonic()
    deploy_rc = 1
    failed: list[str] = []
    try:
        deploy_rc = cdk(
            "deploy",
            "--all",
            "--require-approval",
            "never",
            "--outputs-file",
            str(outputs_file),
            env=env,
        )
        results, other = assertion_results(outputs_file)
        for name, result in sorted(results.items()):
            status = result.get("status")
            print(f"assertion {name}: {status}")
            if status != "success":
                failed.append(name)
                print(result.get("message", ""))
        if other.get("ProbeExecutionArn"):
            try:
                print_probe_report(other["ProbeExecutionArn"], args.region)
            except Exception as e:  # the report is informative; the assertions decide
                print(f"could not read the probe report: {e}")
        if deploy_rc == 0 and not results:
            failed.append("no assertion results in the outputs")
    finally:
        minutes = (time.monotonic() - started) / 60
        if args.keep:
            print(f"--keep: stacks left deployed after {minutes:.1f} min; `make integ-destroy` removes them")
        else:
            destroy_rc = cdk("destroy", "--all", "--force", env=env)
            if destroy_rc != 0:
                print("destroy failed: see README 'Integration test on AWS' for the manual cleanup")
                failed.append("destroy")
    ok = deploy_rc == 0 and not failed
    total = (time.monotonic() - started) / 60
    print(
        f"integ: {'PASSED' if ok else 'FAILED'} in {total:.1f} min"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
