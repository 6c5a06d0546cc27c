"""cdk-nag (AwsSolutions) wiring and scoped acknowledgements.

cdk-nag 3.x runs as a CDK policy-validation plugin: a finding fails the synth. A finding is
acknowledged on the construct it names (never on a stack), and wildcard IAM findings one by one
(`AwsSolutions-IAM5[Resource::...]`), each with the reason it is acceptable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from aws_cdk import Acknowledgment, App, Stack, Validations
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct


def add_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))


def acknowledge(construct: IConstruct, rule: str, reason: str, *, applies_to: Iterable[str] = ()) -> None:
    """Acknowledge `rule` on `construct` only; with `applies_to`, only those findings (`Resource::...`)."""
    findings = list(applies_to)
    ids = [f"{rule}[{finding}]" for finding in findings] if findings else [rule]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def finding(scope: IConstruct, resource: str) -> str:
    """How cdk-nag names a wildcard resource in an IAM5 finding id: `Resource::<rendered ARN>`.

    Tokens render as cdk-nag prints them: `Ref` -> `<Id>`, `Fn::GetAtt` -> `<Id.Attr>`,
    `Fn::ImportValue` of a literal -> the export name; `Fn::Join` concatenates.
    """
    return "Resource::" + _render(Stack.of(scope).resolve(resource))


def _render(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Fn::ImportValue" and isinstance(arg, str):
            return arg
        if fn == "Fn::Join":
            separator: str = arg[0]
            return separator.join(_render(part) for part in arg[1])
    # Anything else (Fn::Select, Fn::Split, ...) appears as its compact JSON.
    return json.dumps(value, separators=(",", ":"))


def policy_wildcards(policy: iam.Policy) -> list[str]:
    """The IAM5 findings of every wildcard resource in a (CDK-generated) policy."""
    document = Stack.of(policy).resolve(policy.document)
    found = []
    for statement in document["Statement"]:
        resources = statement.get("Resource", [])
        for resource in resources if isinstance(resources, list) else [resources]:
            rendered = _render(resource)
            if "*" in rendered:
                found.append("Resource::" + rendered)
    return found
