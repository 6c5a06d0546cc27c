"""The few S3 operations the local jobs need, on a boto3 client passed in (moto in tests)."""

from __future__ import annotations

from typing import IO, Any
from urllib.parse import urlparse


def split_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def join_uri(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def list_objects(s3: Any, uri: str) -> list[tuple[str, int]]:
    """(key, size) of every object under an S3Prefix URI, in key order, "folder" markers skipped."""
    bucket, prefix = split_uri(uri)
    out: list[tuple[str, int]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend((o["Key"], o["Size"]) for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return sorted(out)


def get_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _sse(kms_key_id: str | None) -> dict[str, str]:
    """SSE-KMS with the job's output key, as SageMaker writes with `KmsKeyId` (none = bucket default)."""
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}


def put_bytes(
    s3: Any,
    uri: str,
    body: bytes,
    content_type: str = "application/octet-stream",
    *,
    kms_key_id: str | None = None,
) -> None:
    bucket, key = split_uri(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **_sse(kms_key_id))


def put_file(s3: Any, uri: str, fileobj: IO[bytes], *, kms_key_id: str | None = None) -> None:
    """Upload a (possibly large, spooled) file; boto3 switches to multipart above its threshold."""
    bucket, key = split_uri(uri)
    fileobj.seek(0)
    extra = _sse(kms_key_id)
    if extra:  # without a key the call is the plain one (any client with upload_fileobj works)
        s3.upload_fileobj(fileobj, bucket, key, ExtraArgs=extra)
    else:
        s3.upload_fileobj(fileobj, bucket, key)
