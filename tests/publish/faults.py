"""A DynamoDB client wrapper that throttles or partially rejects a share of BatchWriteItem calls.

Used by the fault tests and bench/publish.py. It records every item DynamoDB really accepted, so a
test can check that each one landed exactly once.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from botocore.exceptions import ClientError

THROTTLE_ERRORS = (
    ("ProvisionedThroughputExceededException", 400),
    ("ThrottlingException", 400),
    ("RequestLimitExceeded", 400),
    ("InternalServerError", 500),
)


class FaultyDynamoDB:
    def __init__(self, client: Any, *, fault_rate: float = 0.3, throttle_share: float = 0.5, seed: int = 0):
        self._client = client
        self._rate, self._throttle_share = fault_rate, throttle_share
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.calls = 0
        self.throttled = 0
        self.partial = 0
        self.accepted: Counter = Counter()  # (pk, sk) -> times DynamoDB accepted the put

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, *, RequestItems: dict, **kwargs: Any) -> dict:
        with self._lock:
            self.calls += 1
            r = self._rng.random()
            fault = r < self._rate
            throttle = r < self._rate * self._throttle_share
            code, status = self._rng.choice(THROTTLE_ERRORS)
            split_seed = self._rng.random()
        if throttle:
            with self._lock:
                self.throttled += 1
            raise ClientError(
                {
                    "Error": {"Code": code, "Message": "injected"},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                "BatchWriteItem",
            )
        ((table, requests),) = RequestItems.items()
        held: list = []
        if fault and len(requests) > 1:
            # Keep a random non-empty subset back, as DynamoDB does when a partition is hot.
            rng = random.Random(split_seed)
            n_held = rng.randint(1, len(requests) - 1)
            order = list(range(len(requests)))
            rng.shuffle(order)
            held = [requests[i] for i in sorted(order[:n_held])]
            requests = [requests[i] for i in sorted(order[n_held:])]
            with self._lock:
                self.partial += 1
        response = self._client.batch_write_item(RequestItems={table: requests}, **kwargs)
        real_left = response.get("UnprocessedItems", {}).get(table, [])
        left_keys = {_key(r) for r in real_left}
        with self._lock:
            for r in requests:
                if _key(r) not in left_keys:
                    self.accepted[_key(r)] += 1
        unprocessed = held + real_left
        return {**response, "UnprocessedItems": {table: unprocessed} if unprocessed else {}}


def _key(request: dict) -> tuple[str, str]:
    item = request["PutRequest"]["Item"]
    return item["pk"]["S"], item["sk"]["S"]


class CrashAfter:
    """Simulates the Lambda dying mid-publish: every BatchWriteItem after `items` puts raises."""

    def __init__(self, client: Any, *, items: int):
        self._client = client
        self._budget = items
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, *, RequestItems: dict, **kwargs: Any) -> dict:
        (n,) = (len(v) for v in RequestItems.values())
        with self._lock:
            if self._budget < n:
                raise RuntimeError("simulated crash: the function was killed mid-publish")
            self._budget -= n
        return self._client.batch_write_item(RequestItems=RequestItems, **kwargs)
