"""Parallel BatchWriteItem with full 25-item batches, backoff + jitter retries and a deadline.

Each worker owns the items it took from the shared queue until DynamoDB confirms them, so an item is
never in two requests at once and never dropped: unprocessed items stay in the worker's next batch,
topped up with fresh items to 25 so retries do not cost extra half-empty requests.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.exceptions

BATCH_SIZE = 25  # DynamoDB's BatchWriteItem maximum
RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "InternalFailure",
        "LimitExceededException",
    }
)
_DONE = object()


class PublishTimeoutError(RuntimeError):
    """Writing did not finish within the configured time; re-running the step completes the run."""


class WriteFailedError(RuntimeError):
    """DynamoDB rejected a write with a non-retryable error."""


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        return code in RETRYABLE_CODES or status >= 500
    return isinstance(exc, botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError)


@dataclass(kw_only=True)
class WriterStats:
    requests: int = 0  # BatchWriteItem calls, failed ones included
    items_written: int = 0
    throttled_requests: int = 0  # calls that raised a retryable error
    unprocessed_items: int = 0  # items DynamoDB handed back (each is re-sent)
    backoff_seconds: float = 0.0


class BatchWriter:
    """`put(item)` from one producer thread; `close()` waits for every item and returns the stats."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        threads: int = 4,
        max_seconds: float = 600.0,
        base_delay: float = 0.05,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        self._client = client
        self._table = table_name
        self._max_seconds = max_seconds
        self._deadline = clock() + max_seconds
        self._base, self._max = base_delay, max_delay
        self._sleep, self._clock = sleep, clock
        self._rng = random.Random(seed)
        self._queue: queue.Queue = queue.Queue(maxsize=BATCH_SIZE * threads * 8)
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self.stats = WriterStats()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self._threads:
            t.start()

    def put(self, item: dict) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> WriterStats:
        for _ in self._threads:
            while self._threads_alive():
                with contextlib.suppress(queue.Full):
                    self._queue.put(_DONE, timeout=0.2)
                    break
        for t in self._threads:
            t.join()
        self._raise_if_failed()
        return self.stats

    def abort(self) -> None:
        """Stop the workers without waiting for queued items (the producer failed)."""
        self._abort.set()
        for t in self._threads:
            t.join()

    def _threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = exc
        self._abort.set()

    def _run(self) -> None:
        pending: list[dict] = []
        closing = False
        failures = 0
        try:
            while not self._abort.is_set():
                while not closing and len(pending) < BATCH_SIZE and not self._abort.is_set():
                    try:
                        item = self._queue.get(timeout=0.2)
                    except queue.Empty:
                        self._check_deadline(len(pending))
                        continue
                    if item is _DONE:
                        closing = True
                    else:
                        pending.append(item)
                if not pending:
                    if closing:
                        return
                    continue
                self._check_deadline(len(pending))
                batch, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
                unprocessed = self._send(batch)
                pending = unprocessed + pending
                if unprocessed:
                    failures += 1
                    delay = self._rng.uniform(0, min(self._max, self._base * 2**failures))
                    with self._lock:
                        self.stats.backoff_seconds += delay
                    self._sleep(delay)
                else:
                    failures = 0
        except BaseException as exc:
            self._fail(exc)

    def _check_deadline(self, pending: int) -> None:
        if self._clock() > self._deadline:
            raise PublishTimeoutError(
                f"DynamoDB writes to {self._table} did not finish within {self._max_seconds:.0f} s "
                f"({self.stats.items_written} items written, at least {pending} still pending); "
                "the previous run stays current, re-run the step to complete this run"
            )

    def _send(self, batch: list[dict]) -> list[dict]:
        request = {self._table: [{"PutRequest": {"Item": item}} for item in batch]}
        try:
            response = self._client.batch_write_item(RequestItems=request)
        except Exception as exc:
            with self._lock:
                self.stats.requests += 1
            if not is_retryable(exc):
                raise WriteFailedError(f"BatchWriteItem on {self._table} failed: {exc}") from exc
            with self._lock:
                self.stats.throttled_requests += 1
            return batch
        left = [r["PutRequest"]["Item"] for r in response.get("UnprocessedItems", {}).get(self._table, [])]
        with self._lock:
            self.stats.requests += 1
            self.stats.items_written += len(batch) - len(left)
            self.stats.unprocessed_items += len(left)
        return left
