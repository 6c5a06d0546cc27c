"""x and exclude on the read path, related items, bad input (moto)."""

from __future__ import annotations

import json

import pytest

from pipeline_steps.common.table import MAX_KEY_BYTES
from pipeline_steps.query import (
    QueryInputError,
    UnknownItemError,
    clear_pointer_cache,
    get_recommendations,
    get_related,
)
from pipeline_steps.query.__main__ import main as query_cli
from pipeline_steps.query.core import MAX_EXCLUDE
from tests.conftest import TABLE
from tests.published_run import write_run
from tests.query.helpers import put_items, set_run_x

LONG = [(f"i{n}", float(100 - n)) for n in range(8)]  # stored x + read_extra = 8


@pytest.fixture
def published(dynamodb):
    clear_pointer_cache()
    write_run(dynamodb, "r1", {"u": LONG})
    put_items(dynamodb, "i#i0", "r1", [("i3", 0.9), ("i1", 0.8), ("i2", 0.7)])
    yield dynamodb
    clear_pointer_cache()


def ids(result):
    return [i["item_id"] for i in result["items"]]


def test_default_x_is_the_stored_length_without_the_run_attribute(published):
    got = get_recommendations("u", table_name=TABLE, dynamodb=published)
    assert got["x"] == 8 and len(got["items"]) == 8


def test_default_x_is_the_runs_x_and_exclude_drops_then_takes_the_best(published):
    set_run_x(published, "r1", 3)
    got = get_recommendations("u", table_name=TABLE, dynamodb=published)
    assert (got["x"], ids(got)) == (3, ["i0", "i1", "i2"])
    got = get_recommendations("u", table_name=TABLE, dynamodb=published, exclude=["i1", "zz"])
    assert ids(got) == ["i0", "i2", "i3"]
    got = get_recommendations("u", table_name=TABLE, dynamodb=published, x=8, exclude=["i0"])
    assert ids(got) == [f"i{n}" for n in range(1, 8)]
    pinned = get_recommendations("u", table_name=TABLE, dynamodb=published, run_id="r1")
    assert pinned["x"] == 3  # the run record's x


def test_x_above_the_stored_length_and_bad_x_are_input_errors(published):
    with pytest.raises(QueryInputError, match="more than the 8 items stored"):
        get_recommendations("u", table_name=TABLE, dynamodb=published, x=9)
    for bad in (0, -1, 1001, "3", 2.0, True):
        with pytest.raises(QueryInputError, match="x:"):
            get_recommendations("u", table_name=TABLE, dynamodb=published, x=bad)


def test_malformed_ids_and_oversized_exclusions(published):
    with pytest.raises(QueryInputError, match="2048-byte"):
        get_recommendations("é" * (MAX_KEY_BYTES // 2), table_name=TABLE, dynamodb=published)
    ok = "a" * (MAX_KEY_BYTES - 2)  # u# + id = exactly the limit
    assert get_recommendations(ok, table_name=TABLE, dynamodb=published)["fallback"] is True
    with pytest.raises(QueryInputError, match="non-empty"):
        get_related("", table_name=TABLE, dynamodb=published)
    with pytest.raises(QueryInputError, match=f"at most {MAX_EXCLUDE}"):
        get_recommendations("u", table_name=TABLE, dynamodb=published, exclude=[str(n) for n in range(101)])
    with pytest.raises(QueryInputError, match="exclude"):
        get_recommendations("u", table_name=TABLE, dynamodb=published, exclude=["x" * 3000])


def test_related_items_and_unknown_item(published):
    got = get_related("i0", table_name=TABLE, dynamodb=published, x=2, exclude=["i3"])
    assert got == {
        "item_id": "i0",
        "items": [{"item_id": "i1", "score": 0.8}, {"item_id": "i2", "score": 0.7}],
        "run_id": "r1",
        "published_at": got["published_at"],
        "x": 2,
    }
    with pytest.raises(UnknownItemError, match="'nope' has no related items in run 'r1'"):
        get_related("nope", table_name=TABLE, dynamodb=published)


def test_cli_x_exclude_and_related(published, capsys):
    assert query_cli(["u", "--table", TABLE, "--x", "2", "--exclude", "i0,i1"]) == 0
    assert ids(json.loads(capsys.readouterr().out)) == ["i2", "i3"]
    assert query_cli(["--related", "i0", "--table", TABLE]) == 0
    assert ids(json.loads(capsys.readouterr().out)) == ["i3", "i1", "i2"]
    assert query_cli(["--related", "nope", "--table", TABLE]) == 2
    assert "no related items" in capsys.readouterr().err
    assert query_cli(["u", "--table", TABLE, "--x", "99"]) == 2
