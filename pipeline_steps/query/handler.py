"""Lambda entry point of the read API (API Gateway HTTP API, payload format 2.0): `api.handle`.

Environment: `TABLE_NAME`, `POINTER_TTL_SECONDS` (how long the current pointer is kept in memory,
and the responses' max-age); with item metadata (`topx:api.item_metadata_key`): `ITEM_METADATA_BUCKET`,
`ITEM_METADATA_KEY`, `ITEM_FIELDS` (a JSON list), `ITEM_METADATA_MAX_BYTES`,
`ITEM_METADATA_CHECK_SECONDS`. The clients, the pointer cache and the item metadata live as long as
the execution environment, so a warm request is one GetItem and no S3 call (API Gateway developer
guide and Lambda developer guide, "Lambda execution environment": initialisation code outside the
handler is reused across invocations).
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any, cast

from pipeline_steps.query.api import ApiSettings, handle
from pipeline_steps.query.core import DEFAULT_POINTER_TTL_S
from pipeline_steps.query.metadata import DEFAULT_CHECK_SECONDS, MetadataSource

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_dynamodb import DynamoDBClient

_clients: dict[tuple[str, ...], Any] = {}
_sources: dict[tuple[str, ...], MetadataSource] = {}
_lock = threading.Lock()
_METADATA_ENV = (
    "ITEM_METADATA_BUCKET",
    "ITEM_METADATA_KEY",
    "ITEM_FIELDS",
    "ITEM_METADATA_MAX_BYTES",
    "ITEM_METADATA_CHECK_SECONDS",
)


def _credentials_key() -> tuple[str, ...]:
    return tuple(
        os.environ.get(name, "")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION")
    )


def client(service: str) -> Any:
    """One client per service, credentials and endpoint (on Lambda: one per execution environment)."""
    key = (service, *_credentials_key())
    with _lock:
        found = _clients.get(key)
        if found is None:
            import boto3

            found = _clients[key] = boto3.client(service)  # type: ignore[call-overload]
        return found


def dynamodb_client() -> DynamoDBClient:
    return cast("DynamoDBClient", client("dynamodb"))


def metadata_source() -> MetadataSource | None:
    """The configured item metadata object, one source (and cache) per configuration and credentials."""
    if not os.environ.get("ITEM_METADATA_KEY"):
        return None
    key = tuple(os.environ.get(name, "") for name in _METADATA_ENV) + _credentials_key()
    with _lock:
        source = _sources.get(key)
    if source is None:
        s3 = client("s3")
        with _lock:
            source = _sources.setdefault(
                key,
                MetadataSource(
                    bucket=os.environ["ITEM_METADATA_BUCKET"],
                    key=os.environ["ITEM_METADATA_KEY"],
                    fields=json.loads(os.environ["ITEM_FIELDS"]),
                    max_bytes=int(os.environ["ITEM_METADATA_MAX_BYTES"]),
                    check_seconds=float(os.environ.get("ITEM_METADATA_CHECK_SECONDS", DEFAULT_CHECK_SECONDS)),
                    s3=s3,
                ),
            )
    return source


def settings() -> ApiSettings:
    ttl = float(os.environ.get("POINTER_TTL_SECONDS", DEFAULT_POINTER_TTL_S))
    return ApiSettings(table_name=os.environ["TABLE_NAME"], pointer_ttl=ttl, item_metadata=metadata_source())


def handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    return handle(event, settings=settings(), dynamodb=dynamodb_client())
