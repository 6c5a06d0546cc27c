"""A published run written straight to the table (no transform output): what the read path serves."""

from __future__ import annotations

from pipeline_steps.common.items import encode_items
from pipeline_steps.publish import versioning
from tests.conftest import TABLE

NOW = 1_800_000_000.0
EXPIRES = int(NOW + 30 * 86_400)


def write_run(dynamodb, run_id: str, recs: dict[str, list[tuple[str, float]]], *, flip: bool = True, parts=1):
    versioning.begin_run(dynamodb, TABLE, run_id, n_parts=parts, expires_at=EXPIRES, now=NOW)
    for user, pairs in recs.items():
        text, _ = encode_items([p[0] for p in pairs], [p[1] for p in pairs])
        dynamodb.put_item(
            TableName=TABLE,
            Item={
                "pk": {"S": f"u#{user}"},
                "sk": {"S": run_id},
                "items": {"S": text},
                "expires_at": {"N": "1"},
            },
        )
    text, _ = encode_items(["pop1", "pop2"], [50.0, 40.0])
    dynamodb.put_item(
        TableName=TABLE, Item={"pk": {"S": "fallback"}, "sk": {"S": run_id}, "items": {"S": text}}
    )
    versioning.mark_part_done(dynamodb, TABLE, run_id, part=0, users=len(recs))
    if flip:
        return versioning.flip_pointer(dynamodb, TABLE, run_id, metrics={"ndcg": 0.25}, now=NOW)
    return None
