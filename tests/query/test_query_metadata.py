"""Item metadata in read responses: parsing (only the configured fields, missing items, errors
naming line and column), the per-environment cache (lazy, one download, conditional re-check),
the API's 503 on a bad object (never a 500), the handler's environment and the CLI (moto)."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline_steps.query import clear_pointer_cache, get_recommendations, get_related
from pipeline_steps.query import handler as api_handler
from pipeline_steps.query.__main__ import main as query_cli
from pipeline_steps.query.api import ApiSettings, handle
from pipeline_steps.query.metadata import (
    ItemMetadata,
    ItemMetadataError,
    MetadataSource,
    bytes_per_item,
    parse_item_metadata,
)
from tests.conftest import BUCKET, TABLE
from tests.published_run import write_run
from tests.query.helpers import put_items
from tests.query.test_query_api import Counting, event

KEY = "catalog/items.csv"
CSV = (
    b"item_id,title,genres,price\n"
    b"i0,Toy Story (1995),Animation Comedy,3\n"
    b'i1,"Heat, the movie",Action,4\n'
    b"i9,Unused,Drama,5\n"
)


def test_only_the_configured_fields_are_added_and_unknown_items_are_left_as_they_are():
    metadata = parse_item_metadata(CSV, "m", ["title", "genres"], version='"v1"')
    items = [{"item_id": "i1", "score": 2.0}, {"item_id": "nope", "score": 1.0}]
    assert metadata.enrich(items) == [
        {"item_id": "i1", "score": 2.0, "title": "Heat, the movie", "genres": "Action"},
        {"item_id": "nope", "score": 1.0},
    ]
    assert metadata.values["i0"] == ("Toy Story (1995)", "Animation Comedy")  # no price kept
    tsv = b"title\titem_id\nT\ti0\n"
    assert parse_item_metadata(tsv, "m", ["title"]).values == {"i0": ("T",)}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"id,title\n1,a\n", "m line 1: header ['id', 'title'] has no column 'item_id'"),
        (b"item_id,name\n1,a\n", "m line 1: header ['item_id', 'name'] has no column 'title'"),
        (b"item_id,title\n1,a\n2,\xff\n", "m line 3: not valid UTF-8"),
        (b"item_id,title\n1,a\n2\n", "m line 3: 1 fields, the header has 2"),
        (b"item_id,title\n1,a\n1,b\n", "m line 3: item id '1' listed twice"),
        (b"", "m: empty file, expected a header with 'item_id', 'title'"),
    ],
)
def test_a_malformed_object_names_the_line_and_column(data, message):
    with pytest.raises(ItemMetadataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_item_metadata(data, "m", ["title"])


def test_bytes_per_item_matches_the_documented_measurement():
    # 2 fields, 37 characters of id and values: measured 289 bytes per item (query/metadata.py).
    assert abs(bytes_per_item(["title", "genres"], 37) - 289) <= 10


def test_get_recommendations_and_get_related_take_the_metadata(dynamodb):
    clear_pointer_cache()
    write_run(dynamodb, "r1", {"u": [("i0", 2.0), ("i5", 1.0)]})
    put_items(dynamodb, "i#i0", "r1", [("i1", 0.5)])
    metadata = ItemMetadata(fields=("title",), values={"i0": ("Toy",), "i1": ("Heat",)})
    got = get_recommendations("u", table_name=TABLE, dynamodb=dynamodb, item_metadata=metadata)
    assert got["items"] == [{"item_id": "i0", "score": 2.0, "title": "Toy"}, {"item_id": "i5", "score": 1.0}]
    related = get_related("i0", table_name=TABLE, dynamodb=dynamodb, item_metadata=metadata)
    assert related["items"] == [{"item_id": "i1", "score": 0.5, "title": "Heat"}]
    plain = get_recommendations("u", table_name=TABLE, dynamodb=dynamodb)
    assert plain["items"][0] == {"item_id": "i0", "score": 2.0}
    clear_pointer_cache()


class CountingS3:
    def __init__(self, client):
        self.client, self.calls = client, []

    def get_object(self, **kwargs):
        self.calls.append(kwargs)
        return self.client.get_object(**kwargs)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_source_loads_lazily_once_and_rechecks_with_a_conditional_get(s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CSV)
    counting, clock = CountingS3(s3), Clock()
    source = MetadataSource(
        bucket=BUCKET, key=KEY, fields=["title"], check_seconds=60, s3=counting, clock=clock
    )
    assert counting.calls == []  # nothing until a request needs it
    first = source.get()
    assert first.values["i0"] == ("Toy Story (1995)",) and first.version
    clock.now = 59
    assert source.get() is first and len(counting.calls) == 1
    clock.now = 61  # re-check: unchanged -> 304, the parsed object is kept
    assert source.get() is first
    assert counting.calls[-1]["IfNoneMatch"] == first.version and len(counting.calls) == 2
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"item_id,title\ni0,New\n")
    clock.now = 200
    assert source.get().values == {"i0": ("New",)}


def test_missing_too_big_and_broken_objects_are_errors_kept_for_the_check_period(s3, caplog):
    clock = Clock()
    counting = CountingS3(s3)
    source = MetadataSource(bucket=BUCKET, key=KEY, fields=["title"], s3=counting, clock=clock)
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(ItemMetadataError, match=f"s3://{BUCKET}/{KEY}: cannot"),
    ):
        source.get()
    assert f"s3://{BUCKET}/{KEY}" in caplog.text  # logged
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CSV)
    with pytest.raises(ItemMetadataError, match="cannot be read"):
        source.get()  # still the kept error: no download before the check period ends
    assert len(counting.calls) == 1
    clock.now = 1000
    assert source.get().values["i1"] == ("Heat, the movie",)
    small = MetadataSource(bucket=BUCKET, key=KEY, fields=["title"], max_bytes=10, s3=s3)
    with pytest.raises(ItemMetadataError, match=r"over the 10-byte cap \(topx:api.item_metadata_max_mb\)"):
        small.get()


SETTINGS = ApiSettings(table_name=TABLE, pointer_ttl=20.0)


@pytest.fixture
def table(dynamodb, s3):
    clear_pointer_cache()
    write_run(dynamodb, "r1", {"u 1": [("i0", 3.0), ("i7", 2.0), ("i1", 1.0)]})
    put_items(dynamodb, "i#i0", "r1", [("i1", 0.5)])
    yield Counting(dynamodb)
    clear_pointer_cache()


def answer(table, settings, path, headers=None):
    response = handle(event(path, headers=headers), settings=settings, dynamodb=table)
    body = json.loads(response["body"]) if response["body"] else None
    return response["statusCode"], response["headers"], body


def test_the_api_adds_fields_with_one_getitem_per_warm_request_and_one_s3_read(table, s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CSV)
    counting = CountingS3(s3)
    source = MetadataSource(bucket=BUCKET, key=KEY, fields=["title", "genres"], s3=counting)
    settings = ApiSettings(table_name=TABLE, pointer_ttl=20.0, item_metadata=source)
    status, headers, body = answer(table, settings, "/users/u%201/recommendations")
    assert status == 200
    assert body["items"] == [
        {"item_id": "i0", "score": 3.0, "title": "Toy Story (1995)", "genres": "Animation Comedy"},
        {"item_id": "i7", "score": 2.0},
        {"item_id": "i1", "score": 1.0, "title": "Heat, the movie", "genres": "Action"},
    ]
    table.keys.clear()
    for _ in range(3):
        assert answer(table, settings, "/users/u%201/recommendations")[0] == 200
    status, _, related = answer(table, settings, "/items/i0/related")
    assert related["items"] == [
        {"item_id": "i1", "score": 0.5, "title": "Heat, the movie", "genres": "Action"}
    ]
    assert table.keys == ["u#u 1"] * 3 + ["i#i0"]  # one GetItem per warm request
    assert len(counting.calls) == 1  # the object was read once
    # The ETag names the metadata version: without metadata the same request has another ETag.
    plain_tag = answer(table, SETTINGS, "/users/u%201/recommendations")[1]["ETag"]
    assert headers["ETag"] != plain_tag and headers["ETag"].startswith('"r1:')


def test_a_malformed_object_is_a_503_naming_it_never_a_500(table, s3, caplog):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"item_id,name\ni0,x\n")
    source = MetadataSource(bucket=BUCKET, key=KEY, fields=["title"], s3=s3)
    settings = ApiSettings(table_name=TABLE, pointer_ttl=20.0, item_metadata=source)
    with caplog.at_level(logging.ERROR):
        status, headers, body = answer(table, settings, "/users/u%201/recommendations")
    assert status == 503 and headers["Cache-Control"] == "no-store"
    assert body["error"]["code"] == "ItemMetadataUnavailable"
    assert body["error"]["message"] == (
        f"item metadata s3://{BUCKET}/{KEY} line 1: header ['item_id', 'name'] has no column 'title'"
    )
    assert "has no column 'title'" in caplog.text
    bad_utf8 = MetadataSource(bucket=BUCKET, key="bad.csv", fields=["title"], s3=s3)
    s3.put_object(Bucket=BUCKET, Key="bad.csv", Body=b"item_id,title\ni0,\xc3\n")
    settings = ApiSettings(table_name=TABLE, pointer_ttl=20.0, item_metadata=bad_utf8)
    status, _, body = answer(table, settings, "/items/i0/related")
    assert status == 503 and "bad.csv line 2: not valid UTF-8" in body["error"]["message"]


def test_the_handler_builds_one_source_from_its_environment(monkeypatch, table, s3):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CSV)
    monkeypatch.setenv("TABLE_NAME", TABLE)
    assert api_handler.settings().item_metadata is None  # not configured
    monkeypatch.setenv("ITEM_METADATA_BUCKET", BUCKET)
    monkeypatch.setenv("ITEM_METADATA_KEY", KEY)
    monkeypatch.setenv("ITEM_FIELDS", json.dumps(["genres"]))
    monkeypatch.setenv("ITEM_METADATA_MAX_BYTES", "1000")
    monkeypatch.setenv("ITEM_METADATA_CHECK_SECONDS", "120")
    source = api_handler.settings().item_metadata
    assert source is api_handler.settings().item_metadata  # kept for the execution environment
    assert (source.fields, source.max_bytes, source.check_seconds) == (("genres",), 1000, 120.0)
    response = api_handler.handler(event("/users/u%201/recommendations"), None)
    assert json.loads(response["body"])["items"][0]["genres"] == "Animation Comedy"


def test_the_cli_adds_fields_and_exits_2_on_a_bad_object(table, s3, capsys):
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=CSV)
    metadata = ["--item-metadata", f"s3://{BUCKET}/{KEY}", "--item-fields", "title"]
    assert query_cli(["u 1", "--table", TABLE, *metadata]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["title"] == "Toy Story (1995)"
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"item_id\ni0\n")
    assert query_cli(["u 1", "--table", TABLE, *metadata]) == 2
    assert "line 1: header ['item_id'] has no column 'title'" in capsys.readouterr().err


def test_line_endings_and_quoted_newlines_read_as_the_filters_always_did():
    data = b'item_id,title\r\ni0,"two\r\nlines"\ri1,Old Mac\ni2,Unix\n'
    metadata = parse_item_metadata(data, "m", ["title"])
    assert metadata.values == {"i0": ("two\r\nlines",), "i1": ("Old Mac",), "i2": ("Unix",)}
    with pytest.raises(ItemMetadataError, match="m line 4: 1 fields"):
        parse_item_metadata(b'item_id,title\r\ni0,"a\r\nb"\ri1\n', "m", ["title"])
