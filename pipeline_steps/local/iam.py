"""IAM identity-policy evaluation, as AWS documents it, for the offline rehearsal.

moto 5.2.5 checks policies only by action for most services (every resource is "*") and treats a
statement whose condition does not match as an explicit deny, so a narrow least-privilege policy
would fail there for the wrong reasons and a missing grant would sometimes pass. This module is the
evaluation the embedded AWS uses instead (``pipeline_steps.local.access`` feeds it each call's
action, resource ARN and condition keys):

- an explicit ``Deny`` that matches wins; otherwise an ``Allow`` that matches permits; otherwise
  the request is implicitly denied (IAM User Guide, "Policy evaluation logic": identity-based
  policies only, no resource policies, boundaries or SCPs here);
- ``Action``/``NotAction`` match case-insensitively, ``Resource``/``NotResource`` case-sensitively,
  both with the ``*`` and ``?`` wildcards ("IAM JSON policy elements: Action / Resource");
- every ``Condition`` operator must match; a key missing from the request makes the condition
  false, except for the negated operators and the ``...IfExists`` variants, which are true then,
  and ``Null`` ("IAM JSON policy elements: Condition operators"). An operator this module does not
  know raises ``UnsupportedCondition`` rather than guessing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

ContextValue = str | Sequence[str]


class UnsupportedCondition(ValueError):
    """A policy uses a condition operator the local evaluation does not implement."""


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Authorization:
    """One permission a call needs: ``action`` on ``resource`` with these condition keys."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _glob(pattern: str, value: str, *, ignore_case: bool) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    # IAM wildcards are only * and ?; fnmatch's [...] classes must stay literal.
    regex = fnmatch.translate(pattern.replace("[", "[[]"))
    return re.match(regex, value, re.DOTALL) is not None


def _matches_any(patterns: Iterable[str], value: str, *, ignore_case: bool) -> bool:
    return any(_glob(p, value, ignore_case=ignore_case) for p in patterns)


def _element(statement: Mapping[str, Any], name: str, value: str, *, ignore_case: bool) -> bool:
    """Action/NotAction or Resource/NotResource; a statement without either matches everything."""
    if name in statement:
        return _matches_any(as_list(statement[name]), value, ignore_case=ignore_case)
    negated = "Not" + name
    if negated in statement:
        return not _matches_any(as_list(statement[negated]), value, ignore_case=ignore_case)
    return True


_STRING = {
    "StringEquals": lambda a, b: a == b,
    "StringNotEquals": lambda a, b: a == b,
    "StringEqualsIgnoreCase": lambda a, b: a.lower() == b.lower(),
    "StringNotEqualsIgnoreCase": lambda a, b: a.lower() == b.lower(),
    "StringLike": lambda a, b: _glob(b, a, ignore_case=False),
    "StringNotLike": lambda a, b: _glob(b, a, ignore_case=False),
    "ArnEquals": lambda a, b: a == b,
    "ArnNotEquals": lambda a, b: a == b,
    "ArnLike": lambda a, b: _glob(b, a, ignore_case=False),
    "ArnNotLike": lambda a, b: _glob(b, a, ignore_case=False),
    "Bool": lambda a, b: a.lower() == b.lower(),
}


def _number(text: str) -> float:
    return float(text)


_NUMERIC = {
    "NumericEquals": lambda a, b: a == b,
    "NumericNotEquals": lambda a, b: a == b,
    "NumericLessThan": lambda a, b: a < b,
    "NumericLessThanEquals": lambda a, b: a <= b,
    "NumericGreaterThan": lambda a, b: a > b,
    "NumericGreaterThanEquals": lambda a, b: a >= b,
}


def _condition(operator: str, key: str, expected: Any, context: Mapping[str, ContextValue]) -> bool:
    """One operator/key pair of a Condition block."""
    qualifier = ""
    if ":" in operator:
        qualifier, operator = operator.split(":", 1)
        if qualifier not in ("ForAnyValue", "ForAllValues"):
            raise UnsupportedCondition(f"condition set operator {qualifier!r}")
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    wanted = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(expected)]
    present = key in context or key.lower() in {k.lower() for k in context}
    actual_raw = context.get(key)
    if actual_raw is None:
        actual_raw = next((v for k, v in context.items() if k.lower() == key.lower()), None)
    actual = [str(v) for v in as_list(actual_raw)]
    if base == "Null":
        return (not present) == (wanted[0].lower() == "true")
    negated = "Not" in base
    if not present:
        if qualifier == "ForAllValues":
            return True
        return if_exists or negated
    if base in _STRING:
        test = _STRING[base]
    elif base in _NUMERIC:
        compare = _NUMERIC[base]

        def test(a: str, b: str) -> bool:
            return compare(_number(a), _number(b))

    else:
        raise UnsupportedCondition(f"condition operator {operator!r}")

    def value_matches(value: str) -> bool:
        hit = any(test(value, w) for w in wanted)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(value_matches(v) for v in actual)
    return any(value_matches(v) for v in actual)


def _conditions(block: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, ContextValue]) -> bool:
    for operator, pairs in (block or {}).items():
        for key, expected in pairs.items():
            if not _condition(operator, key, expected, context):
                return False
    return True


def statements(policy: Mapping[str, Any] | str) -> list[Mapping[str, Any]]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    return as_list(document.get("Statement"))


def evaluate(policies: Iterable[Mapping[str, Any] | str], request: Authorization) -> Decision:
    """The decision of these identity policies on one authorization request."""
    allowed = False
    for policy in policies:
        for statement in statements(policy):
            if not _element(statement, "Action", request.action, ignore_case=True):
                continue
            if not _element(statement, "Resource", request.resource, ignore_case=False):
                continue
            if not _conditions(statement.get("Condition"), request.context):
                continue
            if statement.get("Effect") == "Deny":
                return Decision.EXPLICIT_DENY
            if statement.get("Effect") == "Allow":
                allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def denial_message(principal_arn: str, request: Authorization, decision: Decision) -> str:
    """AWS's wording for an identity-policy denial (IAM User Guide, "Troubleshoot access denied")."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision is Decision.EXPLICIT_DENY
        else f"because no identity-based policy allows the {request.action} action"
    )
    return (
        f"User: {principal_arn} is not authorized to perform: {request.action} "
        f"on resource: {request.resource} {why}"
    )
