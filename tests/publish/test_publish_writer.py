"""BatchWriter: full batches, retries on throttling/unprocessed items, exactly-once, deadline."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from pipeline_steps.publish.writer import BatchWriter, PublishTimeoutError, WriteFailedError, is_retryable
from tests.conftest import TABLE
from tests.publish.faults import FaultyDynamoDB


def items(n: int, run: str = "r1") -> list[dict]:
    return [{"pk": {"S": f"u#{i}"}, "sk": {"S": run}, "items": {"S": f'[["i{i}",1.0]]'}} for i in range(n)]


def scan_keys(dynamodb) -> list[tuple[str, str]]:
    keys, kwargs = [], {"TableName": TABLE}
    while True:
        page = dynamodb.scan(**kwargs)
        keys += [(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return keys
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_fault_injection_every_item_lands_exactly_once(dynamodb):
    faulty = FaultyDynamoDB(dynamodb, fault_rate=0.3, seed=7)
    writer = BatchWriter(faulty, TABLE, threads=3, base_delay=0.0, max_delay=0.0, seed=1)
    expected = items(1000)
    for item in expected:
        writer.put(item)
    stats = writer.close()

    assert faulty.throttled > 0 and faulty.partial > 0
    want = {(i["pk"]["S"], i["sk"]["S"]) for i in expected}
    assert set(faulty.accepted) == want
    assert set(faulty.accepted.values()) == {1}
    assert sorted(scan_keys(dynamodb)) == sorted(want)
    assert stats.items_written == 1000
    assert stats.requests == faulty.calls
    assert stats.throttled_requests == faulty.throttled
    # Retries are merged into full batches: close to the 1/25 floor despite the faults.
    assert stats.requests / 1000 < 0.07


def test_batches_are_full(dynamodb):
    sizes = []

    class Spy:
        def batch_write_item(self, *, RequestItems):
            sizes.append(len(RequestItems[TABLE]))
            return dynamodb.batch_write_item(RequestItems=RequestItems)

    writer = BatchWriter(Spy(), TABLE, threads=2)
    for item in items(260):
        writer.put(item)
    writer.close()
    assert sum(sizes) == 260
    assert sum(s < 25 for s in sizes) <= 2  # only the two workers' last batches may be short


def test_non_retryable_error_fails_clearly(dynamodb):
    bad = {"pk": {"S": "u#x"}, "sk": {"S": "r1"}, "items": {"S": ""}, "n": {"N": "not-a-number"}}
    writer = BatchWriter(dynamodb, TABLE, threads=1)
    writer.put(bad)
    with pytest.raises(WriteFailedError, match="BatchWriteItem on"):
        writer.close()


def test_deadline_gives_clear_error():
    class AlwaysThrottled:
        def batch_write_item(self, *, RequestItems):
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}, "ResponseMetadata": {}},
                "BatchWriteItem",
            )

    writer = BatchWriter(
        AlwaysThrottled(), TABLE, threads=2, max_seconds=0.3, base_delay=0.01, max_delay=0.05
    )
    with pytest.raises(PublishTimeoutError, match="re-run the step"):
        for item in items(200):
            writer.put(item)
        writer.close()


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [
        ("ProvisionedThroughputExceededException", 400, True),
        ("ThrottlingException", 400, True),
        ("RequestLimitExceeded", 400, True),
        ("SomethingOdd", 503, True),
        ("ValidationException", 400, False),
        ("ResourceNotFoundException", 400, False),
    ],
)
def test_retryable_classification(code, status, retry):
    exc = ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "BatchWriteItem"
    )
    assert is_retryable(exc) is retry
