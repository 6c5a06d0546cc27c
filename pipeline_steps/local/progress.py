"""Follow one Step Functions execution through its history: states as they start and end, timed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_FAILED_DETAILS = (
    "taskFailedEventDetails",
    "lambdaFunctionFailedEventDetails",
    "executionFailedEventDetails",
)


@dataclass
class ExecutionResult:
    """The outcome of one execution, with each state's wall time (summed if a state ran twice)."""

    execution_arn: str
    status: str
    error: str | None = None
    cause: str | None = None
    output: Any = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)  # each failed task: state, error, cause
    path: list[str] = field(default_factory=list)  # states entered, in order


def _short_cause(cause: str | None) -> str:
    """A failed SageMaker job's cause is its Describe JSON: show the FailureReason inside."""
    if not cause:
        return ""
    try:
        doc = json.loads(cause)
    except ValueError:
        return cause.splitlines()[0][:300]
    if isinstance(doc, dict):
        return str(doc.get("FailureReason") or doc.get("errorMessage") or cause)[:300]
    return cause[:300]


def watch(
    sfn: Any,
    execution_arn: str,
    *,
    log: Callable[[str], None] = print,
    poll_seconds: float = 0.1,
    max_poll_seconds: float = 0.5,
    timeout_seconds: float = 3600.0,
) -> ExecutionResult:
    """Poll ``GetExecutionHistory`` until the execution ends, logging each state's start and end."""
    seen = 0
    entered: dict[str, Any] = {}
    result = ExecutionResult(execution_arn=execution_arn, status="RUNNING")
    started = None
    current_state = ""
    deadline = time.monotonic() + timeout_seconds
    interval = poll_seconds
    while True:
        # Status first, history second: once the status is final, this history read holds every event.
        desc = sfn.describe_execution(executionArn=execution_arn)
        events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        for event in events[seen:]:
            kind, ts = event["type"], event["timestamp"]
            started = started or ts
            offset = (ts - started).total_seconds()
            if kind.endswith("StateEntered"):
                current_state = event["stateEnteredEventDetails"]["name"]
                entered[current_state] = ts
                result.path.append(current_state)
                log(f"  [{offset:6.1f}s] > {current_state}")
            elif kind.endswith("StateExited"):
                name = event["stateExitedEventDetails"]["name"]
                seconds = (ts - entered.pop(name, ts)).total_seconds()
                result.stage_seconds[name] = round(result.stage_seconds.get(name, 0.0) + seconds, 3)
                log(f"  [{offset:6.1f}s] < {name}  {seconds:.1f}s")
            for key in _FAILED_DETAILS[:2]:
                if key in event:
                    details = event[key]
                    result.failures.append(
                        {
                            "state": current_state,
                            "error": details.get("error", ""),
                            "reason": _short_cause(details.get("cause")),
                            "cause": details.get("cause", ""),
                        }
                    )
                    log(
                        f"  [{offset:6.1f}s] ! {current_state} failed: {details.get('error')}: "
                        f"{_short_cause(details.get('cause'))}"
                    )
        # Back off while nothing happens: each poll is two requests served by the same process
        # (and GIL) as a running local job. Timings come from event timestamps, not from polling.
        interval = poll_seconds if len(events) > seen else min(max_poll_seconds, interval * 1.5)
        seen = len(events)
        if desc["status"] != "RUNNING":
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {execution_arn} still running after {timeout_seconds:.0f}s")
        time.sleep(interval)
    result.status = desc["status"]
    result.error, result.cause = desc.get("error"), desc.get("cause")
    if desc.get("output"):
        result.output = json.loads(desc["output"])
    end = desc.get("stopDate") or desc["startDate"]
    result.total_seconds = round((end - desc["startDate"]).total_seconds(), 3)
    return result
