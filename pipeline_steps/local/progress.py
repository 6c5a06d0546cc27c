"""Follow one Step Functions execution through its history: states as they start and end, timed."""

from __future__ import annotations

import json
import threading
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


class Watcher:
    """Reads the history incrementally; ``poll()`` may also be called from a local job's thread so
    its log lines print after the state that started it."""

    def __init__(self, sfn: Any, execution_arn: str, log: Callable[[str], None] = print) -> None:
        self.sfn, self.arn, self.log = sfn, execution_arn, log
        self.result = ExecutionResult(execution_arn=execution_arn, status="RUNNING")
        self._seen = 0
        self._entered: dict[str, Any] = {}
        self._started: Any = None
        self._state = ""
        self._lock = threading.Lock()
        self.desc: dict[str, Any] = {}

    def poll(self) -> int:
        """Process new events; returns how many. Status first, history second: once the status is
        final, the history read that follows holds every event."""
        with self._lock:
            self.desc = self.sfn.describe_execution(executionArn=self.arn)
            events = self.sfn.get_execution_history(executionArn=self.arn, maxResults=1000)["events"]
            new = events[self._seen :]
            self._seen = len(events)
            for event in new:
                self._handle(event)
            return len(new)

    def _handle(self, event: dict[str, Any]) -> None:
        kind, ts, result, log = event["type"], event["timestamp"], self.result, self.log
        self._started = self._started or ts
        offset = (ts - self._started).total_seconds()
        if kind.endswith("StateEntered"):
            self._state = event["stateEnteredEventDetails"]["name"]
            self._entered[self._state] = ts
            result.path.append(self._state)
            log(f"  [{offset:6.1f}s] > {self._state}")
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            seconds = (ts - self._entered.pop(name, ts)).total_seconds()
            result.stage_seconds[name] = round(result.stage_seconds.get(name, 0.0) + seconds, 3)
            log(f"  [{offset:6.1f}s] < {name}  {seconds:.1f}s")
        for key in _FAILED_DETAILS[:2]:
            if key in event:
                details = event[key]
                reason = _short_cause(details.get("cause"))
                result.failures.append(
                    {
                        "state": self._state,
                        "error": details.get("error", ""),
                        "reason": reason,
                        "cause": details.get("cause", ""),
                    }
                )
                log(f"  [{offset:6.1f}s] ! {self._state} failed: {details.get('error')}: {reason}")

    def finish(self) -> ExecutionResult:
        desc, result = self.desc, self.result
        result.status = desc["status"]
        result.error, result.cause = desc.get("error"), desc.get("cause")
        if desc.get("output"):
            result.output = json.loads(desc["output"])
        end = desc.get("stopDate") or desc["startDate"]
        result.total_seconds = round((end - desc["startDate"]).total_seconds(), 3)
        return result


def watch(
    sfn: Any,
    execution_arn: str,
    *,
    log: Callable[[str], None] = print,
    poll_seconds: float = 0.1,
    max_poll_seconds: float = 0.5,
    timeout_seconds: float = 3600.0,
    on_start: Callable[[Watcher | None], None] | None = None,
) -> ExecutionResult:
    """Poll ``GetExecutionHistory`` until the execution ends, logging each state's start and end.

    ``on_start`` receives the watcher (and ``None`` at the end), for callers that want to
    ``poll()`` from elsewhere (the local runner does, before printing a job's log line)."""
    watcher = Watcher(sfn, execution_arn, log)
    if on_start:
        on_start(watcher)
    deadline = time.monotonic() + timeout_seconds
    interval = poll_seconds
    try:
        while True:
            new = watcher.poll()
            if watcher.desc["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout_seconds:.0f}s")
            # Back off while nothing happens: each poll is two requests served by the same process
            # (and GIL) as a running local job. Timings come from event timestamps, not from polling.
            interval = poll_seconds if new else min(max_poll_seconds, interval * 1.5)
            time.sleep(interval)
    finally:
        if on_start:
            on_start(None)
    return watcher.finish()
