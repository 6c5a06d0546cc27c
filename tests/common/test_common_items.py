"""The items attribute (common/items.py): encoded lists stay under DynamoDB's item limit."""

from __future__ import annotations

from pipeline_steps.common.items import MAX_ITEMS_BYTES, decode_items, encode_items


def test_items_attribute_stays_under_the_item_limit():
    long_ids = [("é" * 2000) + str(i) for i in range(1000)]  # ~4 KB of UTF-8 per id
    text, kept = encode_items(long_ids, [1.0] * 1000)
    assert len(text.encode("utf-8")) <= 350_000
    assert 0 < kept < 1000
    assert [i["item_id"] for i in decode_items(text)] == long_ids[:kept]
    text, kept = encode_items([f"B00{i:07d}" for i in range(1000)], [0.5] * 1000)
    assert kept == 1000 and len(text) < 30_000


def test_cold_items_carry_a_third_element_and_warm_lists_are_unchanged() -> None:
    ids, scores = ["a", "b", "c"], [3.0, 2.0, 1.0]
    plain, _ = encode_items(ids, scores)
    assert plain == '[["a",3.0],["b",2.0],["c",1.0]]'
    assert encode_items(ids, scores, [False, False, False])[0] == plain
    text, kept = encode_items(ids, scores, [False, True, False])
    assert text == '[["a",3.0],["b",2.0,1],["c",1.0]]' and kept == 3
    assert decode_items(text) == [
        {"item_id": "a", "score": 3.0},
        {"item_id": "b", "score": 2.0, "cold": True},
        {"item_id": "c", "score": 1.0},
    ]


def test_the_byte_budget_counts_the_cold_marks() -> None:
    long_ids = [f"{k:05d}" + "x" * 400 for k in range(1000)]
    _, plain = encode_items(long_ids, [1.0] * 1000)
    text, marked = encode_items(long_ids, [1.0] * 1000, [True] * 1000)
    assert marked < plain and len(text.encode()) <= MAX_ITEMS_BYTES
