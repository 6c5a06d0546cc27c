"""Synthesize the CDK app twice per session: defaults in-process, every option on through the pinned CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
ACCOUNT = "123456789012"
REGION = "us-east-1"

# Every optional feature on, given the way a user would: `-c` strings, dotted keys included.
OPTIONS = {
    "topx:kms": "true",
    "topx:schedule": "off",
    "topx:notification_email": "ops@example.com",
    "topx:spot.enabled": "true",
    "topx:publish.fan_out_above_users": "0",
    "topx:alarms.namespace": "TopX",
    "topx:fm.hyperparameters.epochs": "7",
    "topx:fm.instance_count": "2",
    "topx:vpc.subnet_ids": '["subnet-0a1b2c3d", "subnet-0e4f5a6b"]',
    "topx:vpc.security_group_ids": '["sg-0c7d8e9f"]',
    "topx:api.auth": "jwt",
    "topx:api.jwt_issuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
    "topx:api.jwt_audience": '["example-client-id"]',
    "topx:api.throttle_rate": "25",
    "topx:publish.filter_exclude_items_key": "filters/unavailable.txt",
    "topx:publish.filter_user_exclusions_key": "filters/bought.csv",
    "topx:prepare.engine": "spark",
    "topx:prepare.spark_instance_count": "2",
}

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@dataclass
class Synth:
    outdir: Path
    app: Any = None  # the in-process cdk.App (default synth only)
    cli_output: str = ""  # stdout + stderr of the CLI synth

    def template(self, stack: str) -> dict[str, Any]:
        return json.loads((self.outdir / f"fm-knn-topx-{stack}.template.json").read_text())

    def validation_report(self) -> dict[str, Any]:
        return json.loads((self.outdir / "validation-report.json").read_text())


@pytest.fixture(scope="session")
def _cli_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.Popen, Path]:
    """Start `cdk synth` (pinned CLI, every option on) in the background: it overlaps the in-process synth.

    Docker is made unusable (CDK_DOCKER), so only the local bundling can succeed.
    """
    outdir = tmp_path_factory.mktemp("cdk-options")
    env = dict(os.environ, CDK_DOCKER="/nonexistent/docker", CDK_DISABLE_VERSION_CHECK="1")
    env["CDK_DISABLE_CLI_TELEMETRY"] = "true"
    command = [str(CDK), "synth", "--no-notices", "--quiet", "--output", str(outdir)]
    for key, value in OPTIONS.items():
        command += ["-c", f"{key}={value}"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    yield proc, outdir
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory, _cli_synth: tuple) -> Synth:
    from app import build_app

    outdir = tmp_path_factory.mktemp("cdk-default")
    app = build_app(outdir=str(outdir))
    app.synth()
    return Synth(outdir=outdir, app=app)


@pytest.fixture(scope="session")
def options_synth(_cli_synth: tuple[subprocess.Popen, Path]) -> Synth:
    proc, outdir = _cli_synth
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"cdk synth failed:\n{output[-8000:]}"
    return Synth(outdir=outdir, cli_output=output)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def render_asl(template: dict[str, Any]) -> dict[str, Any]:
    """The state machine definition with CloudFormation tokens replaced by plausible ARNs."""
    types = {k: v["Type"] for k, v in template["Resources"].items()}
    pseudo = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::URLSuffix": "amazonaws.com",
    }

    def arn(logical: str) -> str:
        kind = types.get(logical, "")
        if kind == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{logical}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical}"
        raise AssertionError(f"unexpected reference to {logical} ({kind}) in the definition")

    def render(value: Any) -> str:
        if isinstance(value, str):
            return value
        (fn, arg), *_ = value.items()
        if fn == "Fn::Join":
            return arg[0].join(render(part) for part in arg[1])
        if fn == "Ref":
            return pseudo.get(arg) or arn(arg)
        if fn == "Fn::GetAtt":
            assert arg[1] == "Arn", arg
            return arn(arg[0])
        if fn == "Fn::ImportValue":
            return f"imported-{arg}"
        if fn == "Fn::Sub" and isinstance(arg, str):  # asset URIs (the Spark prepare's code)
            return re.sub(r"\$\{([^}]+)\}", lambda m: pseudo[m.group(1)], arg)
        raise AssertionError(f"unexpected intrinsic {fn} in the definition")

    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    return json.loads(render(machine["Properties"]["DefinitionString"]))


def all_states(asl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state, including those inside Map item processors."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in asl["States"].items():
        found[name] = state
        inner = state.get("ItemProcessor") or state.get("Iterator")
        if inner:
            found |= all_states(inner)
    return found
