"""Items the batch side writes that `tests/published_run.py` does not: related items, the run's `x`."""

from __future__ import annotations

from pipeline_steps.common.items import encode_items
from tests.conftest import TABLE


def put_items(dynamodb, pk: str, run_id: str, pairs: list[tuple[str, float]]) -> None:
    text, _ = encode_items([p[0] for p in pairs], [p[1] for p in pairs])
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": run_id}, "items": {"S": text}})


def set_run_x(dynamodb, run_id: str, x: int) -> None:
    """Publish's run `x` as a number attribute on the run record and the pointer."""
    for key in ({"pk": {"S": "run"}, "sk": {"S": run_id}}, {"pk": {"S": "pointer"}, "sk": {"S": "current"}}):
        dynamodb.update_item(
            TableName=TABLE,
            Key=key,
            UpdateExpression="SET x = :x",
            ExpressionAttributeValues={":x": {"N": str(x)}},
        )
