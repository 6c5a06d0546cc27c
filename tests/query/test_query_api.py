"""The read API's Lambda: routes, every bad input -> 4xx JSON (never 500), caching headers (moto)."""

from __future__ import annotations

import json

import pytest

from pipeline_steps.query import clear_pointer_cache
from pipeline_steps.query import handler as api_handler
from pipeline_steps.query.api import ITEMS_ROUTE, USERS_ROUTE, ApiSettings, handle
from tests.conftest import TABLE
from tests.published_run import write_run
from tests.query.helpers import put_items, set_run_x

SETTINGS = ApiSettings(table_name=TABLE, pointer_ttl=20.0)


def event(path, query=None, *, method="GET", headers=None, route=None):
    """An HTTP API payload 2.0 event as API Gateway sends it (route matched, path parameter decoded)."""
    out = {
        "version": "2.0",
        "rawPath": path,
        "requestContext": {"http": {"method": method, "path": path}},
        "headers": headers or {},
    }
    if query is not None:
        out["queryStringParameters"] = query
    if route:
        out["routeKey"], out["pathParameters"] = route
    return out


class Counting:
    def __init__(self, client):
        self.client, self.keys = client, []

    def get_item(self, **kwargs):
        self.keys.append(kwargs["Key"]["pk"]["S"])
        return self.client.get_item(**kwargs)


@pytest.fixture
def table(dynamodb):
    clear_pointer_cache()
    write_run(dynamodb, "r1", {"u 1": [(f"i{n}", float(10 - n)) for n in range(6)]})
    set_run_x(dynamodb, "r1", 4)
    put_items(dynamodb, "i#i0", "r1", [("i1", 0.5), ("i2", 0.25)])
    yield Counting(dynamodb)
    clear_pointer_cache()


def call(table, *args, **kwargs):
    response = handle(event(*args, **kwargs), settings=SETTINGS, dynamodb=table)
    body = json.loads(response["body"]) if response["body"] else None
    return response["statusCode"], response["headers"], body


def test_user_route_one_getitem_per_warm_request_and_caching_headers(table):
    status, headers, body = call(table, "/users/u%201/recommendations", {"x": "2", "exclude": "i0"})
    assert status == 200
    assert [i["item_id"] for i in body["items"]] == ["i1", "i2"]
    assert (body["run_id"], body["x"], body["fallback"]) == ("r1", 2, False)
    assert headers["Cache-Control"] == "private, max-age=20"
    assert headers["ETag"].startswith('"r1:') and headers["Content-Type"] == "application/json"
    assert headers["Server-Timing"].startswith("handler;dur=")
    assert table.keys == ["pointer", "u#u 1"]
    status, _, body = call(table, "/users/u 1/recommendations", route=(USERS_ROUTE, {"id": "u 1"}))
    assert (status, body["x"], len(body["items"])) == (200, 4, 4)
    assert table.keys == ["pointer", "u#u 1", "u#u 1"]  # warm: the pointer is cached


def test_if_none_match_gives_304_without_reading_the_user(table):
    _, headers, _ = call(table, "/users/u%201/recommendations")
    other = call(table, "/users/u%201/recommendations", {"x": "1"})[1]["ETag"]
    assert other != headers["ETag"]  # another selection, another entity
    reads = len(table.keys)
    status, again, body = call(
        table, "/users/u%201/recommendations", headers={"if-none-match": headers["ETag"]}
    )
    assert (status, body, again["ETag"]) == (304, None, headers["ETag"])
    assert len(table.keys) == reads


def test_the_decoded_path_parameter_is_used_as_given(table):
    """API Gateway hands over `{id}` decoded: a '%' or '/' in it is part of the id, never re-decoded."""
    for user_id in ("50%25 off", "a/b"):
        status, _, body = call(table, "/ignored", route=(USERS_ROUTE, {"id": user_id}))
        assert (status, body["user_id"], body["fallback"]) == (200, user_id, True)


def test_unknown_user_gets_the_fallback_flagged(table):
    status, _, body = call(table, "/users/stranger/recommendations")
    assert status == 200 and body["fallback"] is True
    assert [i["item_id"] for i in body["items"]] == ["pop1", "pop2"]


def test_related_route_and_unknown_item_404(table):
    status, headers, body = call(table, "/items/i0/related", route=(ITEMS_ROUTE, {"id": "i0"}))
    assert status == 200 and [i["item_id"] for i in body["items"]] == ["i1", "i2"]
    status, headers, body = call(table, "/items/nope/related")
    assert status == 404 and body["error"]["code"] == "NotFound" and "nope" in body["error"]["message"]
    assert headers["Cache-Control"] == "no-store"


BAD = [
    ("/users/u/recommendations", {"x": "abc"}, 400, "x: expected a positive integer"),
    ("/users/u/recommendations", {"x": "0"}, 400, "x: must be in 1..1000"),
    ("/users/u/recommendations", {"x": "-3"}, 400, "x: expected a positive integer"),
    ("/users/u/recommendations", {"x": "1.5"}, 400, "x: expected a positive integer"),
    ("/users/u/recommendations", {"x": "9" * 400}, 400, "x: expected a positive integer"),
    ("/users/u%201/recommendations", {"x": "7"}, 400, "more than the 6 items stored"),
    ("/users/u/recommendations", {"x": "1001"}, 400, "x: must be in 1..1000"),
    ("/users/u/recommendations", {"exclude": ",".join(map(str, range(101)))}, 400, "at most 100"),
    ("/users/u/recommendations", {"exclude": "e" * 2047}, 400, "2048-byte"),
    ("/users/u/recommendations", {"limit": "3"}, 400, "unknown query parameter"),
    ("/users/" + "é" * 1100 + "/recommendations", None, 400, "2048-byte"),
    ("/items/" + "a" * 2047 + "/related", None, 400, "2048-byte"),
    ("/users//recommendations", None, 404, "no route"),
    ("/users/u", None, 404, "no route"),
    ("/", None, 404, "no route"),
]


@pytest.mark.parametrize(("path", "query", "status", "message"), BAD)
def test_bad_input_is_a_clear_4xx_json_error(table, path, query, status, message):
    got, headers, body = call(table, path, query)
    assert got == status, body
    assert message in body["error"]["message"]
    assert headers["Cache-Control"] == "no-store"


def test_bad_input_costs_no_dynamodb_call(table):
    call(table, "/users/u/recommendations", {"x": "abc"})
    call(table, "/users/" + "é" * 1100 + "/recommendations")
    assert table.keys == []


def test_other_methods_405_and_nothing_published_503(dynamodb):
    clear_pointer_cache()
    status, _, body = call(dynamodb, "/users/u/recommendations", method="POST")
    assert status == 405 and body["error"]["code"] == "MethodNotAllowed"
    status, _, body = call(dynamodb, "/users/u/recommendations")
    assert status == 503 and "nothing is published" in body["error"]["message"]


def test_an_unexpected_failure_is_a_logged_500_not_a_crash(caplog):
    class Broken:
        def get_item(self, **kwargs):
            raise RuntimeError("boom")

    clear_pointer_cache()
    status, _, body = call(Broken(), "/users/u/recommendations")
    assert (status, body["error"]["code"]) == (500, "InternalError")
    assert "boom" in caplog.text


def test_lambda_handler_reads_its_environment(table, monkeypatch):
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("POINTER_TTL_SECONDS", "5")
    response = api_handler.handler(event("/users/u%201/recommendations", {"x": "1"}), object())
    assert response["statusCode"] == 200 and response["headers"]["Cache-Control"] == "private, max-age=5"
    assert json.loads(response["body"])["items"] == [{"item_id": "i0", "score": 10.0}]
    assert api_handler.dynamodb_client() is api_handler.dynamodb_client()
