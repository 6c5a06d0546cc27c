"""Lambda entry point of the read API (API Gateway HTTP API, payload format 2.0): `api.handle`.

Environment: `TABLE_NAME`, `POINTER_TTL_SECONDS` (how long the current pointer is kept in memory,
and the responses' max-age). The DynamoDB client and the pointer cache live as long as the
execution environment, so a warm request is one GetItem (API Gateway developer guide and Lambda
developer guide, "Lambda execution environment": initialisation code outside the handler is
reused across invocations).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pipeline_steps.query.api import ApiSettings, handle
from pipeline_steps.query.core import DEFAULT_POINTER_TTL_S

_clients: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()


def dynamodb_client() -> Any:
    """One client per credentials and endpoint (on Lambda: one per execution environment)."""
    key = tuple(
        os.environ.get(name, "")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION")
    )
    with _lock:
        client = _clients.get(key)
        if client is None:
            import boto3

            client = _clients[key] = boto3.client("dynamodb")
        return client


def settings() -> ApiSettings:
    ttl = float(os.environ.get("POINTER_TTL_SECONDS", DEFAULT_POINTER_TTL_S))
    return ApiSettings(table_name=os.environ["TABLE_NAME"], pointer_ttl=ttl)


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return handle(event, settings=settings(), dynamodb=dynamodb_client())
