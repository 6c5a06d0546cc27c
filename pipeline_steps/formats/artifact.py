"""SageMaker model artifact containers: ``model.tar.gz`` (gzip of ustar) and the stored ZIP inside.

Writers reproduce SageMaker's bytes (docs/formats.md §2): POSIX ustar with space-terminated octal
fields, mode 0100644, uid/gid 0, empty user/group names, archive padded to 10 240 bytes; gzip
with no name, MTIME 0, OS 255, level 6; stored ZIP as Python's ``zipfile`` writes it (Unix
create_system, -rw-r--r--, one shared DOS timestamp). Readers give clear errors naming the part.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "ArtifactError",
    "Member",
    "gzip_bytes",
    "model_tar_gz",
    "read_model_tar_gz",
    "read_zip",
    "stored_zip",
    "ustar",
]

_BLOCK = 512
_RECORD = 20 * _BLOCK


class ArtifactError(ValueError):
    """A model artifact that cannot be read; the message names the container part or member."""


@dataclass(frozen=True)
class Member:
    """One file of a tar archive."""

    name: str
    data: bytes
    mtime: int = 0


def _octal(value: int, width: int) -> bytes:
    """Zero-padded octal terminated by a space, as SageMaker's tar writer does."""
    text = b"%0*o " % (width - 1, value)
    if len(text) != width:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return text


def _header(name: str, size: int, mtime: int) -> bytes:
    raw_name = name.encode("utf-8")
    if not raw_name or len(raw_name) > 100:
        raise ValueError(f"tar member name must be 1-100 bytes: {name!r}")
    head = b"".join(
        [
            raw_name.ljust(100, b"\0"),
            _octal(0o100644, 8),  # mode, including S_IFREG
            _octal(0, 8),  # uid
            _octal(0, 8),  # gid
            _octal(size, 12),
            _octal(int(mtime), 12),
            b" " * 8,  # checksum placeholder
            b"0",  # regular file
            b"\0" * 100,  # linkname
            b"ustar\x0000",
            b"\0" * 64,  # uname, gname
            _octal(0, 8),  # devmajor
            _octal(0, 8),  # devminor
            b"\0" * 155,  # prefix
        ]
    ).ljust(_BLOCK, b"\0")
    checksum = b"%06o\0 " % sum(head)
    return head[:148] + checksum + head[156:]


def ustar(members: Iterable[Member]) -> bytes:
    """An uncompressed ustar archive of the members, in the given order."""
    out = bytearray()
    for m in members:
        out += _header(m.name, len(m.data), m.mtime)
        out += m.data
        out += b"\0" * (-len(m.data) % _BLOCK)
    out += b"\0" * (2 * _BLOCK)
    out += b"\0" * (-len(out) % _RECORD)
    return bytes(out)


def gzip_bytes(data: bytes) -> bytes:
    """gzip as SageMaker writes model.tar.gz: no file name, MTIME 0, OS 255, deflate level 6."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        gz.write(data)
    return buf.getvalue()


def model_tar_gz(members: Sequence[Member]) -> bytes:
    """``model.tar.gz`` bytes: gzip(ustar(members))."""
    return gzip_bytes(ustar(members))


def stored_zip(files: Iterable[tuple[str, bytes]], date_time: tuple[int, ...] | None = None) -> bytes:
    """An uncompressed ZIP (like ``model_algo-1``); every member gets the same DOS timestamp."""
    stamp = max(tuple(date_time or time.localtime()[:6]), (1980, 1, 1, 0, 0, 0))  # DOS dates start in 1980
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=stamp)  # type: ignore[arg-type]
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o100644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def read_model_tar_gz(data: bytes) -> list[Member]:
    """Members (regular files) of a ``model.tar.gz`` (or of a plain tar), in archive order."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ArtifactError(f"model.tar.gz: corrupt or truncated gzip stream ({e})") from None
    members: list[Member] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                f = tf.extractfile(info)
                body = f.read() if f is not None else b""
                if len(body) != info.size:
                    raise ArtifactError(f"model.tar.gz: member {info.name} is truncated")
                members.append(Member(info.name, body, int(info.mtime)))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArtifactError(f"model.tar.gz: corrupt or truncated tar archive ({e})") from None
    if not members:
        raise ArtifactError("model.tar.gz: no files in the archive")
    return members


def read_zip(data: bytes, what: str = "zip archive") -> dict[str, bytes]:
    """All members of a ZIP archive by name, CRC-checked."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return {info.filename: zf.read(info) for info in zf.infolist() if not info.is_dir()}
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        OSError,
        zlib.error,
        NotImplementedError,
    ) as e:
        raise ArtifactError(f"{what}: corrupt or truncated ZIP archive ({e})") from None
