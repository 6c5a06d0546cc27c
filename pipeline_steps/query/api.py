"""The read API's routes, on API Gateway HTTP API events (payload format 2.0), as plain functions.

    GET /users/{id}/recommendations?x=&exclude=   -> get_recommendations
    GET /items/{id}/related?x=&exclude=           -> get_related

Event and response shapes: API Gateway developer guide, "Create AWS Lambda proxy integrations for
HTTP APIs" (payload format version 2.0: `routeKey`, `rawPath`, `pathParameters`,
`queryStringParameters` with repeated parameters joined by commas, lower-case `headers`; the
response `{"statusCode", "headers", "body"}`).

Every answer is JSON. Bad input is a 4xx with `{"error": {"code", "message"}}`, never a 500:
malformed ids (empty, over DynamoDB's 2048-byte key limit), `x` not an integer or out of range,
`x` above the stored list, more than `MAX_EXCLUDE` excluded ids, unknown parameters (400); an item
without related items, an unknown path (404); another method than GET (405); nothing published
yet, or the configured item metadata object missing, over its size cap or malformed (503, the
message naming the object, line and column; logged). Only an unexpected exception is a 500,
logged with its stack.

Item metadata (`ApiSettings.item_metadata`, query/metadata.py): the configured fields are added to
every returned item; the object's ETag is part of the response ETag, so a new object changes it.

Caching (RFC 9111 `Cache-Control`, RFC 9110 `ETag`/`If-None-Match`): a 200 is
`Cache-Control: private, max-age=<pointer TTL>` (the same staleness the pointer cache already
allows; `private`: the answer is per caller) and `ETag: "<run_id>:<digest of route, id, x,
exclude>"`. A request whose `If-None-Match` holds the current ETag gets a 304 without reading the
user's item. Errors are `Cache-Control: no-store`. `Server-Timing: handler;dur=<ms>` (W3C Server
Timing) carries the handler's own time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline_steps.common.table import RELATED_PK_PREFIX, USER_PK_PREFIX
from pipeline_steps.query.core import (
    NoPublishedRunError,
    QueryInputError,
    UnknownItemError,
    check_exclude,
    check_id,
    check_x,
    current_run,
    enrich,
    read_related,
    read_user,
)
from pipeline_steps.query.metadata import ItemMetadataError, MetadataSource

log = logging.getLogger(__name__)

USERS_ROUTE = "GET /users/{id}/recommendations"
ITEMS_ROUTE = "GET /items/{id}/related"
_PATHS = {
    USERS_ROUTE: re.compile(r"^/users/([^/]+)/recommendations/?$"),
    ITEMS_ROUTE: re.compile(r"^/items/([^/]+)/related/?$"),
}
PARAMETERS = frozenset({"x", "exclude"})
MAX_X_DIGITS = 7  # "x" longer than this is not a number we could serve; refused before int()


@dataclass(frozen=True)
class ApiSettings:
    table_name: str
    pointer_ttl: float  # seconds the pointer is cached; also the responses' max-age
    item_metadata: MetadataSource | None = None  # fields added to the items; None = item_id, score


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _route(event: dict[str, Any]) -> tuple[str, str]:
    """(route key, id) of the request; ApiError 404/405 for anything else.

    From API Gateway, the matched `routeKey` and the decoded `{id}` in `pathParameters` are used as
    they are (the id is never decoded twice, and may hold any character); an event without them
    (a direct invocation) is routed on `rawPath`, percent-decoded here.
    """
    http = (event.get("requestContext") or {}).get("http") or {}
    method = str(http.get("method") or "GET").upper()
    route_key = event.get("routeKey")
    given = (event.get("pathParameters") or {}).get("id")
    if route_key in _PATHS and isinstance(given, str) and method == "GET":
        return str(route_key), given
    path = str(event.get("rawPath") or http.get("path") or "")
    for route, pattern in _PATHS.items():
        match = pattern.match(path)
        if match is None:
            continue
        if method != "GET":
            raise ApiError(405, "MethodNotAllowed", f"{method} {path}: only GET is supported")
        return route, urllib.parse.unquote(match.group(1))
    raise ApiError(
        404, "NotFound", f"no route {method} {path}; routes: {USERS_ROUTE}, {ITEMS_ROUTE} (x=, exclude=)"
    )


def _parameters(event: dict[str, Any]) -> tuple[int | None, list[str]]:
    query = event.get("queryStringParameters") or {}
    unknown = sorted(set(query) - PARAMETERS)
    if unknown:
        raise ApiError(400, "InvalidParameter", f"unknown query parameter(s) {unknown}; allowed: x, exclude")
    x: int | None = None
    raw_x = query.get("x")
    if raw_x is not None:
        if not re.fullmatch(rf"[0-9]{{1,{MAX_X_DIGITS}}}", raw_x):
            raise ApiError(400, "InvalidParameter", f"x: expected a positive integer, got {raw_x[:40]!r}")
        x = int(raw_x)
    raw_exclude = query.get("exclude")
    exclude = [e for e in raw_exclude.split(",") if e] if raw_exclude else []
    return x, exclude


def etag(
    run_id: str, route: str, entity_id: str, x: int | None, exclude: list[str], metadata_version: str = ""
) -> str:
    """Strong validator: the run id (what changes the answer) + a digest of what selects it (and of
    the item metadata object's version when the items carry its fields)."""
    selected: list[Any] = [route, entity_id, x, sorted(set(exclude))]
    if metadata_version:
        selected.append(metadata_version)
    digest = hashlib.sha256(json.dumps(selected, ensure_ascii=False).encode("utf-8")).hexdigest()[:24]
    return f'"{run_id}:{digest}"'


def _json(status: int, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")),
    }


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return _json(status, {"error": {"code": code, "message": message}}, {"Cache-Control": "no-store"})


def _answer(event: dict[str, Any], settings: ApiSettings, dynamodb: Any) -> dict[str, Any]:
    route, entity_id = _route(event)
    x, exclude = _parameters(event)
    # Inputs first: a malformed request costs no DynamoDB call.
    check_id("id", entity_id, USER_PK_PREFIX if route == USERS_ROUTE else RELATED_PK_PREFIX)
    wanted, excluded = check_x(x), check_exclude(exclude)
    run = current_run(dynamodb, settings.table_name, settings.pointer_ttl)
    # Loaded by the first request, then kept (query/metadata.py): no S3 call on a warm request.
    metadata = settings.item_metadata.get() if settings.item_metadata else None
    tag = etag(run["run_id"], route, entity_id, x, exclude, metadata.version if metadata else "")
    headers = {"Cache-Control": f"private, max-age={int(settings.pointer_ttl)}", "ETag": tag}
    if_none_match = (event.get("headers") or {}).get("if-none-match", "")
    if tag in [t.strip() for t in if_none_match.split(",")]:
        return _json(304, None, headers)
    read: Callable[..., dict[str, Any]] = read_user if route == USERS_ROUTE else read_related
    # The run the ETag names: one GetItem for the entity.
    result = read(dynamodb, settings.table_name, run, entity_id, wanted, excluded)
    return _json(200, enrich(result, metadata), headers)


def handle(event: dict[str, Any], *, settings: ApiSettings, dynamodb: Any) -> dict[str, Any]:
    """One API request -> its HTTP API proxy response (never raises)."""
    started = time.perf_counter()
    try:
        response = _answer(event, settings, dynamodb)
    except ApiError as exc:
        response = _error(exc.status, exc.code, exc.message)
    except QueryInputError as exc:
        response = _error(400, "InvalidParameter", str(exc))
    except UnknownItemError as exc:
        response = _error(404, "NotFound", str(exc))
    except NoPublishedRunError as exc:
        response = _error(503, "NoPublishedRun", str(exc))
    except ItemMetadataError as exc:  # logged by MetadataSource when it happened
        response = _error(503, "ItemMetadataUnavailable", str(exc))
    except Exception:
        log.exception("read API: unexpected error")
        response = _error(500, "InternalError", "internal error (logged)")
    elapsed_ms = (time.perf_counter() - started) * 1000
    response["headers"]["Server-Timing"] = f"handler;dur={elapsed_ms:.3f}"
    return response
