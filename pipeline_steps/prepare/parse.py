"""Streaming parser: interaction files -> columnar numpy arrays, with bad rows counted by reason.

Fast path (no quote character in the chunk): the chunk is split with numpy (`arr == delimiter`,
`arr == newline`), so no Python object is created per row or field. A file switches to the `csv`
module from the first chunk that contains the quote character to its end (quoted fields may hold
delimiters, escaped quotes and newlines). Both paths hand (buffer, starts, lengths) per column to
the same vectorised converters in `fields.py`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import numpy as np

from pipeline_steps.prepare import fields
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.ids import IdRegistry
from pipeline_steps.prepare.layout import Layout, PrepareInputError, detect
from pipeline_steps.prepare.storage import ObjectInfo, Storage

CHUNK_BYTES = 8 << 20
CSV_BATCH_ROWS = 50_000
MAX_EXAMPLES_PER_REASON = 5
# A user id becomes part of a DynamoDB partition key (common/table.py: "u#" + id, at most
# MAX_KEY_BYTES) and every id travels in the published items: a longer id would fail every
# publish, so it is a bad row here.
MAX_ID_BYTES = 1024
REASONS = (
    "missing field",
    "extra field",
    "empty user id",
    "empty item id",
    "user id too long",
    "item id too long",
    "non-numeric rating",
    "bad timestamp",
)
_BOM = codecs.BOM_UTF8


@dataclass
class Interactions:
    """Parsed rows in file order (files sorted by key); ids as provisional registry codes."""

    users: list[np.ndarray] = field(default_factory=list)
    items: list[np.ndarray] = field(default_factory=list)
    ratings: list[np.ndarray] = field(default_factory=list)  # NaN where the file has no rating column
    timestamps: list[np.ndarray] = field(default_factory=list)  # 0 where the file has no timestamp

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

        return (
            cat(self.users, np.int32),
            cat(self.items, np.int32),
            cat(self.ratings, np.float32),
            cat(self.timestamps, np.int64),
        )


@dataclass
class ParseStats:
    rows_read: int = 0
    rows_valid: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)

    def add_bad(self, key: str, lines: np.ndarray, reason: str) -> None:
        if len(lines) == 0:
            return
        shown = sum(1 for e in self.examples if e.endswith(": " + reason))
        for line in lines[: max(MAX_EXAMPLES_PER_REASON - shown, 0)].tolist():
            self.examples.append(f"{key}:{line}: {reason}")
        self.bad[reason] += len(lines)

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())


class _Source:
    """Raw object stream that optionally hashes the bytes it hands out (local files have no ETag)."""

    def __init__(self, raw: BinaryIO, digest: hashlib._Hash | None) -> None:
        self.raw, self.digest, self.size = raw, digest, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n) if n is not None and n >= 0 else self.raw.read()
        self.size += len(data)
        if self.digest is not None:
            self.digest.update(data)
        return data


class _Prefixed:
    def __init__(self, head: bytes, rest: _Source) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        head, self.head = self.head, b""
        if n is None or n < 0:
            return head + self.rest.read()
        if len(head) >= n:
            self.head = head[n:]
            return head[:n]
        return head + self.rest.read(n - len(head))


def _line_chunks(stream, size: int) -> Iterator[bytes]:
    """Blocks of whole lines (each ends with b'\\n'; a missing final newline is added)."""
    rest = b""
    while True:
        block = stream.read(size)
        if not block:
            break
        if rest:
            block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:
            rest = block
            continue
        rest = block[cut:]
        yield block[:cut]
    if rest:
        yield rest + b"\n"


class FileParser:
    """Parses one object into `out` and `stats`, registering ids in the shared registries."""

    def __init__(
        self, config: PrepareConfig, users: IdRegistry, items: IdRegistry, stats: ParseStats
    ) -> None:
        self.config, self.users, self.items, self.stats = config, users, items, stats
        self.quote = config.quotechar.encode() if config.quotechar else b""

    def parse(
        self, storage: Storage, obj: ObjectInfo, out: Interactions, *, chunk_bytes: int | None = None
    ) -> str:
        """Returns the object's fingerprint (ETag, or sha256 of its bytes for local files)."""
        digest = hashlib.sha256() if obj.etag is None else None
        raw = storage.open(obj.key)
        try:
            src = _Source(raw, digest)
            head = src.read(2)
            stream = cast(BinaryIO, _Prefixed(head, src))  # read() is all GzipFile and the chunker use
            gz = head == b"\x1f\x8b"
            if gz:
                stream = cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
            try:
                chunks = _line_chunks(stream, chunk_bytes or CHUNK_BYTES)
                summary = self._parse_stream(obj.key, chunks, out)
            except (OSError, EOFError) as exc:
                if gz:
                    raise PrepareInputError(f"{obj.key}: corrupt gzip data ({exc})") from exc
                raise
            while src.read(1 << 20):  # hash any trailing bytes the gzip reader did not need
                pass
        finally:
            close = getattr(raw, "close", None)
            if close:
                close()
        self.stats.files.append({"key": obj.key, "gzip": gz, **summary})
        return obj.etag if obj.etag is not None else digest.hexdigest()  # type: ignore[union-attr]

    def _parse_stream(self, key: str, chunks: Iterator[bytes], out: Interactions) -> dict:
        first = next(chunks, b"")
        if first.startswith(_BOM):
            first = first[len(_BOM) :]
        if not first.strip():
            return {"rows_read": 0, "rows_valid": 0, "parser": "empty"}
        line_no = 0
        # Leading blank (empty or whitespace-only) lines are skipped before layout detection.
        while not first[: first.find(b"\n") + 1].strip():
            cut = first.index(b"\n") + 1
            first, line_no = first[cut:], line_no + 1
        lines = first.split(b"\n", 2)
        text = [self._decode(x, key, line_no + i + 1) for i, x in enumerate(lines[:2])]
        layout = detect(text[0], text[1] if len(lines) > 2 else None, self.config, key)
        if layout.header:
            cut = first.index(b"\n") + 1
            first, line_no = first[cut:], line_no + 1
        read0, valid0 = self.stats.rows_read, self.stats.rows_valid
        parser = "fast"
        all_chunks = itertools.chain([first], chunks)
        for raw in all_chunks:
            chunk = self._normalise(raw, key, line_no)
            if self.quote and self.quote in chunk:
                parser = "csv"
                self._parse_csv(key, layout, itertools.chain([raw], all_chunks), line_no, out)
                break
            line_no += self._parse_fast(key, layout, chunk, line_no, out)
        return {
            "rows_read": self.stats.rows_read - read0,
            "rows_valid": self.stats.rows_valid - valid0,
            "parser": parser,
            **layout.describe(),
        }

    def _decode(self, data: bytes, key: str, line0: int) -> str:
        try:
            return data.decode(self.config.encoding)
        except UnicodeDecodeError as exc:
            line = line0 + data.count(b"\n", 0, exc.start)
            col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise PrepareInputError(
                f"{key}:{line}: not valid {self.config.encoding} "
                f"(byte 0x{data[exc.start]:02x} at column {col}); "
                'set `encoding` in the prepare config (e.g. "latin-1") if the file uses another encoding'
            ) from None

    def _normalise(self, chunk: bytes, key: str, line_no: int) -> bytes:
        """Validated UTF-8 with LF line ends (line numbers are unchanged: CRLF -> LF)."""
        if not chunk.isascii():  # ASCII is valid in every supported (ASCII-compatible) codec
            text = self._decode(chunk, key, line_no + 1)
            if self.config.encoding.replace("-", "").replace("_", "").lower() != "utf8":
                chunk = text.encode("utf-8")
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        return chunk

    def _parse_fast(self, key: str, layout: Layout, chunk: bytes, line0: int, out: Interactions) -> int:
        """Parses one chunk of whole lines; returns its number of lines."""
        delim = layout.delimiter.encode()
        if len(delim) > 1:
            if b"\0" in chunk:
                raise PrepareInputError(f"{key}: NUL bytes in a file with a multi-character delimiter")
            chunk = chunk.replace(delim, b"\0")  # one byte per separator for the numpy split
            delim = b"\0"
        buf = fields.padded(chunk)
        arr = buf[:-8]
        nl = np.flatnonzero(arr == 10)
        n, k = len(nl), layout.ncol - 1
        ls = np.empty(n, dtype=np.int64)
        ls[:1] = 0
        ls[1:] = nl[:-1] + 1
        seps = np.flatnonzero(arr == delim[0])
        regular = len(seps) == n * k
        if regular and k:
            grid = seps.reshape(n, k)
            regular = bool((grid[:, 0] >= ls).all() and (grid[:, -1] < nl).all())
        lines = np.arange(line0 + 1, line0 + n + 1)
        if not regular:
            line_of = np.searchsorted(nl, seps)
            count = np.bincount(line_of, minlength=n)
            blank = (count == 0) & (nl == ls)
            for j in np.flatnonzero((count == 0) & ~blank).tolist():
                blank[j] = not chunk[ls[j] : nl[j]].strip()  # whitespace-only lines are blank too
            good = count == k
            self.stats.rows_read += int((~blank & ~good).sum())
            self.stats.add_bad(key, lines[~blank & (count < k)], "missing field")
            self.stats.add_bad(key, lines[count > k], "extra field")
            grid = seps[good[line_of]].reshape(-1, k)
            ls, nl, lines = ls[good], nl[good], lines[good]
        cols = {}
        for role in ("user", "item", "rating", "timestamp"):
            c = getattr(layout, role)
            if c is None:
                continue
            start = ls if c == 0 else grid[:, c - 1] + 1
            end = nl if c == k else grid[:, c]
            cols[role] = (start, end - start)
        self._consume(key, layout, chunk, buf, cols, lines, out)
        return n

    def _parse_csv(
        self, key: str, layout: Layout, chunks: Iterator[bytes], line0: int, out: Interactions
    ) -> None:
        if len(layout.delimiter) > 1:
            raise PrepareInputError(
                f"{key}: quoted fields need a one-character delimiter, not {layout.delimiter!r}"
            )

        def text_lines() -> Iterator[str]:
            line_no = line0
            for chunk in chunks:
                text = self._normalise(chunk, key, line_no).decode("utf-8")
                line_no += chunk.count(b"\n")
                parts = text.split("\n")
                for part in parts[:-1]:
                    yield part + "\n"

        reader = csv.reader(
            text_lines(), delimiter=layout.delimiter, quotechar=self.config.quotechar, strict=False
        )
        roles = [(r, getattr(layout, r)) for r in ("user", "item", "rating", "timestamp")]
        roles = [(r, c) for r, c in roles if c is not None]
        while True:
            batch: dict[str, list[bytes]] = {r: [] for r, _ in roles}
            lines: list[int] = []
            missing: list[int] = []
            extra: list[int] = []
            prev = reader.line_num
            for row in _guarded(reader, key, line0):
                line, prev = line0 + prev + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != layout.ncol:
                    (missing if len(row) < layout.ncol else extra).append(line)
                    continue
                lines.append(line)
                for r, c in roles:
                    batch[r].append(row[c].encode("utf-8"))
            self.stats.rows_read += len(missing) + len(extra)
            self.stats.add_bad(key, np.array(missing, dtype=np.int64), "missing field")
            self.stats.add_bad(key, np.array(extra, dtype=np.int64), "extra field")
            if not lines and not missing and not extra:
                return
            if lines:
                self._consume_lists(key, layout, batch, np.array(lines, dtype=np.int64), out)

    def _consume_lists(
        self, key: str, layout: Layout, batch: dict, lines: np.ndarray, out: Interactions
    ) -> None:
        data = b"".join(v for col in batch.values() for v in col)
        buf = fields.padded(data)
        cols, offset = {}, 0
        for role, values in batch.items():
            lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
            starts = np.empty_like(lens)
            if len(lens):
                starts[0] = offset
                np.cumsum(lens[:-1], out=starts[1:])
                starts[1:] += offset
            offset += int(lens.sum())
            cols[role] = (starts, lens)
        self._consume(key, layout, data, buf, cols, lines, out)

    def _consume(self, key, layout: Layout, data: bytes, buf, cols: dict, lines: np.ndarray, out) -> None:
        """Validate the fields of well-formed rows, then append the valid ones."""
        n = len(lines)
        self.stats.rows_read += n
        ok = np.ones(n, dtype=bool)
        for role in ("user", "item"):
            lens = cols[role][1]
            for bad, reason in (
                (lens == 0, f"empty {role} id"),
                (lens > MAX_ID_BYTES, f"{role} id too long"),
            ):
                self.stats.add_bad(key, lines[ok & bad], reason)
                ok &= ~bad
        rating = np.full(n, np.nan)
        if "rating" in cols:
            rating, good = fields.ratings(data, buf, *cols["rating"])
            self.stats.add_bad(key, lines[ok & ~good], "non-numeric rating")
            ok &= good
        ts = np.zeros(n, dtype=np.int64)
        if "timestamp" in cols:
            ts, good = fields.timestamps(data, buf, *cols["timestamp"])
            self.stats.add_bad(key, lines[ok & ~good], "bad timestamp")
            ok &= good
        keep = slice(None) if ok.all() else np.flatnonzero(ok)
        # int32 codes and float32 ratings: the parsed rows are the biggest arrays held.
        out.users.append(self.users.encode(data, buf, *(a[keep] for a in cols["user"])).astype(np.int32))
        out.items.append(self.items.encode(data, buf, *(a[keep] for a in cols["item"])).astype(np.int32))
        out.ratings.append(rating[keep].astype(np.float32))
        out.timestamps.append(ts[keep])
        self.stats.rows_valid += len(out.users[-1])


def _guarded(reader, key: str, line0: int) -> Iterator[list[str]]:
    """At most one batch of csv records; csv errors become input errors with the line."""
    it = itertools.islice(reader, CSV_BATCH_ROWS)
    while True:
        try:
            row = next(it)
        except StopIteration:
            return
        except csv.Error as exc:
            raise PrepareInputError(
                f"{key}:{line0 + reader.line_num}: malformed quoted field ({exc})"
            ) from None
        yield row
