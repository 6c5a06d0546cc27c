"""One key scheme for the writer (publish) and the readers (query, evaluate)."""

from __future__ import annotations

import numpy as np

from pipeline_steps.common import table
from pipeline_steps.prepare.query import MAX_ID_BYTES
from pipeline_steps.publish.core import user_item


def test_keys_match_the_contract() -> None:
    assert table.POINTER_KEY == {"pk": {"S": "pointer"}, "sk": {"S": "current"}}
    assert table.run_key("r1") == {"pk": {"S": "run"}, "sk": {"S": "r1"}}
    assert table.user_key("42", "r1") == {"pk": {"S": "u#42"}, "sk": {"S": "r1"}}
    assert table.fallback_key("r1") == {"pk": {"S": "fallback"}, "sk": {"S": "r1"}}


def test_an_id_prepare_accepts_fits_the_partition_key() -> None:
    assert MAX_ID_BYTES + len(table.USER_PK_PREFIX) <= table.MAX_KEY_BYTES


def test_the_writer_uses_the_key_the_reader_asks_for() -> None:
    item, kept = user_item("42", "r1", ["a", "b"], np.array([2.0, 1.0]), 99)
    assert {k: item[k] for k in ("pk", "sk")} == table.user_key("42", "r1")
    assert kept == 2


def test_plain_reads_the_attribute_types_of_the_table() -> None:
    item = {"n": {"N": "3"}, "f": {"N": "0.5"}, "m": {"M": {"s": {"S": "x"}}}, "b": {"BOOL": True}}
    assert table.plain(item) == {"n": 3, "f": 0.5, "m": {"s": "x"}, "b": True}
    assert table.plain(None) is None


def test_related_items_have_their_own_partition_per_item_and_run() -> None:
    from pipeline_steps.common import table as t

    assert t.related_key("movie 1", "r9") == {"pk": {"S": "i#movie 1"}, "sk": {"S": "r9"}}
    assert t.related_pk("x") != t.user_pk("x")  # an item id equal to a user id never collides
