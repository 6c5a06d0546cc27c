"""A small key/value storage interface so the core runs on a local directory or an S3 bucket."""

from __future__ import annotations

import builtins  # the storages have a method named `list`
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None  # S3 ETag (content fingerprint without reading); None for local files


class Storage(Protocol):
    """What prepare needs from a bucket: list, stream, read, write, delete."""

    def list(self, prefix: str) -> builtins.list[ObjectInfo]: ...

    def open(self, key: str) -> BinaryIO: ...

    def read_bytes(self, key: str) -> bytes | None: ...

    def write_bytes(self, key: str, data: bytes) -> None: ...

    def delete(self, keys: builtins.list[str]) -> None: ...

    def uri(self, key: str) -> str: ...


def _skipped(key: str) -> bool:
    # Folder markers and hidden/marker files (`.DS_Store`, `_SUCCESS`) are never interaction data.
    name = key.rsplit("/", 1)[-1]
    return not name or name.startswith((".", "_"))


class LocalStorage:
    """A directory playing the bucket: key `a/b.csv` is `<root>/a/b.csv`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        base = self._path(prefix) if prefix else self.root
        if prefix and base.is_file():
            return [ObjectInfo(prefix, base.stat().st_size, None)]
        out = []
        walk_root = base if base.is_dir() else base.parent
        if not walk_root.is_dir():
            return []
        for dirpath, _dirs, files in os.walk(walk_root):
            for name in files:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix) and not _skipped(key):
                    out.append(ObjectInfo(key, path.stat().st_size, None))
        return sorted(out, key=lambda o: o.key)

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def local_path(self, key: str) -> str:
        """The file itself, for readers that take a path (DuckDB)."""
        return str(self._path(key))

    def read_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader never sees half a file

    def delete(self, keys: builtins.list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self._path(key))


class S3Storage:
    """One S3 bucket; the boto3 client is passed in or created on first use (never at import)."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def list(self, prefix: str) -> builtins.list[ObjectInfo]:
        out = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if not _skipped(obj["Key"]):
                    out.append(ObjectInfo(obj["Key"], int(obj["Size"]), obj["ETag"].strip('"')))
        return sorted(out, key=lambda o: o.key)

    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def read_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"
