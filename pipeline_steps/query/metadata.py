"""Item metadata in read responses (`topx:api.item_metadata_key` + `item_fields`, decision 0013).

The metadata is one S3 object: UTF-8 CSV (or TSV) with a header holding `item_id` and other
columns, read with the batch filters' reader (`common/csvtext.py`). Only the configured fields are
kept, as `item id -> tuple of values`; `enrich` adds them to each returned item
(`{"item_id", "score", "title": ..., "genres": ...}`). Items the object does not list get no fields.

`MetadataSource` keeps the parsed object per process (on Lambda: per execution environment). It is
loaded lazily, by the first request, and re-checked at most every `check_seconds` with a
conditional GetObject (`If-None-Match: <ETag>`: S3 answers 304 Not Modified when the object is
unchanged; Amazon S3 API Reference, "GetObject", request header If-None-Match), so a warm request
makes no S3 call and an unchanged object is never downloaded twice. A failure (missing object,
over `max_bytes`, malformed) is an `ItemMetadataError` naming the object, the line and the column;
it is kept for `check_seconds` too, so a broken object is not downloaded on every request.

Memory: while parsing, the object's bytes and its decoded text (CPython stores a str at 1, 2 or 4
bytes per character: 1x the object for Latin-1 text, up to 4x), then only the kept fields, per item
about 130 bytes (dict slot, id str, tuple) + 57 per field (tuple slot, str) + the characters of the
id and the values (`bytes_per_item`; measured on 200,000 items with 2 fields of 37 characters in
all: 289 bytes per item, peak 2.4x the object). The peak is at most 6x the object
(`ITEM_METADATA_MEMORY_FACTOR`, common/limits.py): infra checks `memory_mb >= 128 + 6 x
item_metadata_max_mb`. The object's size (`ContentLength`) is checked against the cap before it is
read.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline_steps.common.csvtext import ITEM_ID_COLUMN, check_width, decode, header, rows
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.limits import ITEM_METADATA_DEFAULT_MAX_MB

log = logging.getLogger(__name__)

DEFAULT_MAX_MB = ITEM_METADATA_DEFAULT_MAX_MB
DEFAULT_CHECK_SECONDS = 300.0


class ItemMetadataError(RuntimeError):
    """The configured metadata object is missing, unreadable, too big or malformed (the API: 503)."""


def bytes_per_item(fields: Sequence[str], value_chars: int) -> int:
    """Memory per cached item (CPython, 64-bit, ASCII values): dict slot + id str + tuple + one str
    per field; `value_chars` = characters of the id and the kept values together."""
    return 130 + 57 * len(fields) + value_chars


@dataclass(frozen=True)
class ItemMetadata:
    fields: tuple[str, ...]
    values: dict[str, tuple[str, ...]] = field(repr=False)
    version: str = ""  # the object's ETag: part of the API's response ETags

    def enrich(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The items with the configured fields added; an item without metadata is left as it is."""
        out = []
        for item in items:
            found = self.values.get(item["item_id"])
            out.append(item if found is None else {**item, **dict(zip(self.fields, found, strict=True))})
        return out


def parse_item_metadata(data: bytes, where: str, fields: Sequence[str], *, version: str = "") -> ItemMetadata:
    """CSV/TSV bytes -> the `fields` of every listed item; ItemMetadataError naming line and column."""
    try:
        lines = rows(decode(data, where), where)
        _, names = header(lines, where, (ITEM_ID_COLUMN, *fields))
        id_at, at = names.index(ITEM_ID_COLUMN), [names.index(f) for f in fields]
        values: dict[str, tuple[str, ...]] = {}
        for lineno, row in lines:
            check_width(row, names, where, lineno)
            item_id = row[id_at]
            if item_id in values:
                raise InputError(f"{where} line {lineno}: item id {item_id[:80]!r} listed twice")
            values[item_id] = tuple(row[i] for i in at)
    except InputError as exc:
        raise ItemMetadataError(str(exc)) from None
    return ItemMetadata(fields=tuple(fields), values=values, version=version)


class MetadataSource:
    """One S3 object's item metadata, loaded on first use and re-checked every `check_seconds`."""

    def __init__(
        self,
        *,
        bucket: str,
        key: str,
        fields: Sequence[str],
        max_bytes: int = DEFAULT_MAX_MB * 1024 * 1024,
        check_seconds: float = DEFAULT_CHECK_SECONDS,
        s3: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket, self.key, self.fields = bucket, key, tuple(fields)
        self.max_bytes, self.check_seconds = max_bytes, check_seconds
        self._s3, self._clock = s3, clock
        self._lock = threading.Lock()
        self._loaded: ItemMetadata | None = None
        self._error: ItemMetadataError | None = None
        self._checked = -math.inf

    @property
    def where(self) -> str:
        return f"item metadata s3://{self.bucket}/{self.key}"

    def get(self) -> ItemMetadata:
        """The current metadata; ItemMetadataError when the object cannot be used."""
        with self._lock:
            now = self._clock()
            if now - self._checked >= self.check_seconds:
                self._checked = now
                try:
                    self._loaded, self._error = self._fetch(), None
                except ItemMetadataError as exc:
                    log.error("read API: %s", exc)
                    self._loaded, self._error = None, exc
            if self._error is not None:
                raise self._error
            assert self._loaded is not None
            return self._loaded

    def _client(self) -> Any:
        if self._s3 is None:
            import boto3  # lazily: only a configured API needs S3

            self._s3 = boto3.client("s3")
        return self._s3

    def _fetch(self) -> ItemMetadata:
        from botocore.exceptions import BotoCoreError, ClientError

        s3, condition = self._client(), {}
        if self._loaded is not None and self._loaded.version:
            condition["IfNoneMatch"] = self._loaded.version
        try:
            response = s3.get_object(Bucket=self.bucket, Key=self.key, **condition)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 304 and self._loaded:
                return self._loaded  # unchanged since the last download
            code = exc.response.get("Error", {}).get("Code", "?")
            raise ItemMetadataError(
                f"{self.where}: cannot be read ({code}: missing, or not readable by this function)"
            ) from None
        except BotoCoreError as exc:
            raise ItemMetadataError(f"{self.where}: cannot be read ({exc})") from None
        size = int(response.get("ContentLength") or 0)
        if size > self.max_bytes:
            response["Body"].close()
            raise ItemMetadataError(
                f"{self.where}: {size:,} bytes, over the {self.max_bytes:,}-byte cap "
                "(topx:api.item_metadata_max_mb); keep only the columns the API returns"
            )
        data = response["Body"].read()
        return parse_item_metadata(data, self.where, self.fields, version=str(response.get("ETag") or ""))
