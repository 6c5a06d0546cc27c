"""The items attribute (common/items.py): encoded lists stay under DynamoDB's item limit."""

from __future__ import annotations

from pipeline_steps.common.items import decode_items, encode_items


def test_items_attribute_stays_under_the_item_limit():
    long_ids = [("é" * 2000) + str(i) for i in range(1000)]  # ~4 KB of UTF-8 per id
    text, kept = encode_items(long_ids, [1.0] * 1000)
    assert len(text.encode("utf-8")) <= 350_000
    assert 0 < kept < 1000
    assert [i["item_id"] for i in decode_items(text)] == long_ids[:kept]
    text, kept = encode_items([f"B00{i:07d}" for i in range(1000)], [0.5] * 1000)
    assert kept == 1000 and len(text) < 30_000
