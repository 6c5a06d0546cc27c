"""cdk-nag AwsSolutions: zero unacknowledged findings, every acknowledgement scoped and reasoned."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

from infra.nag import add_checks
from tests.infra.conftest import Synth


def _findings(report: dict) -> list[str]:
    """AwsSolutions violations in CDK's validation report (the plugin only appears when it has some)."""
    return [
        f"{v['ruleName']} at {c['constructPath']}"
        for p in report["pluginReports"]
        if p["pluginName"] == "AwsSolutions"
        for v in p["violations"]
        for c in v["violatingConstructs"]
    ]


def test_the_report_would_show_findings(tmp_path) -> None:
    """Control: the same plugin on a bare bucket fails the synth, and `_findings` reads them."""
    app = cdk.App(outdir=str(tmp_path))
    s3.Bucket(cdk.Stack(app, "Control"), "Bare")
    add_checks(app)
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert sorted(_findings(report)) == [
        "AwsSolutions-S1 at Control/Bare/Resource",
        "AwsSolutions-S10 at Control/Bare/Resource",
    ]


def test_default_app_runs_the_checks_and_has_zero_findings(default_synth: Synth) -> None:
    plugins = [p.name for p in default_synth.app.policy_validation_beta1]  # Validations.of(app).plugins
    assert plugins == ["AwsSolutions"]
    assert _findings(default_synth.validation_report()) == []


def test_app_with_every_option_has_zero_findings(options_synth: Synth) -> None:
    assert _findings(options_synth.validation_report()) == []
    assert "AwsSolutions-" not in options_synth.cli_output


def _acknowledgements(root: IConstruct) -> list[tuple[str, dict]]:
    key = cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found = []
    for construct in root.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:
                for rule in entry.data if isinstance(entry.data, list) else [entry.data]:
                    found.append((construct.node.path, rule))
    return found


def test_acknowledgements_are_scoped_reasoned_and_specific(default_synth: Synth) -> None:
    acks = _acknowledgements(default_synth.app)
    assert len(acks) >= 10
    stacks = {s.node.path for s in default_synth.app.node.children if isinstance(s, cdk.Stack)}
    for path, rule in acks:
        text = str(rule)
        assert path not in stacks and path != "", f"acknowledgement on a whole stack: {path} {text}"
        assert len(text) > 60, f"no real reason at {path}: {text}"
        if "IAM5" in text:
            # a wildcard acknowledgement names the exact finding, never the whole rule
            assert "IAM5[" in text, f"unscoped IAM5 acknowledgement at {path}: {text}"
