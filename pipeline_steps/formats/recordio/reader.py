"""The vectorised reader: all records of a stream parsed at once with numpy.

One cursor per record walks the fields the SDK writes, in the order it writes them (features
entry "values" -> tensor with optional values, keys, shape; then an optional label entry).
Anything else, valid or not (dmlc multi-part records, unknown or unpacked fields, a flag bit in
a length word), is handed to ``reference``, whose results these functions equal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import reference
from .wire import (
    ALIGN,
    ENTRY_VALUE_TAG,
    FEATURES_TAG,
    FLOAT_WIRE_DTYPE,
    HEADER_BYTES,
    KEYS_TAG,
    KIND_OF_TAG,
    LABEL_TAG,
    LENGTH_MASK,
    MAGIC,
    MAP_KEY_BYTES,
    NUMPY_DTYPE,
    SHAPE_TAG,
    U64,
    VALUES_TAG,
    decode_varints,
)

Csr = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray | None]


class _Irregular(Exception):
    """The stream is not laid out like the SDK's output (it may still be valid): use the reference."""


def _to_array(source: Any) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source.view(np.uint8).reshape(-1)
    if isinstance(source, bytes | bytearray | memoryview):
        return np.frombuffer(source, np.uint8)
    return np.frombuffer(source.read(), np.uint8)


def _scan(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and payload lengths of all records, if the stream is simple (cflag 0, padded)."""
    if buf.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if buf.size % ALIGN:
        raise _Irregular
    words = buf.view("<u4")
    cand = np.flatnonzero(words == MAGIC)
    if cand.size == 0 or cand[0] != 0:
        raise _Irregular
    lw = words[np.minimum(cand + 1, words.size - 1)].astype(np.int64)
    nxt = cand + 2 + ((lw & LENGTH_MASK) + 3) // 4
    if np.array_equal(nxt[:-1], cand[1:]) and nxt[-1] == words.size and not np.any(lw & ~LENGTH_MASK):
        return cand * 4, lw & LENGTH_MASK
    # a magic word inside a payload: follow the chain from the first record
    starts, pos = [], 0
    while pos < words.size:
        if words[pos] != MAGIC or pos + 1 >= words.size or int(words[pos + 1]) & ~LENGTH_MASK:
            raise _Irregular
        starts.append(pos)
        pos += 2 + ((int(words[pos + 1]) & LENGTH_MASK) + 3) // 4
    if pos != words.size:
        raise _Irregular
    st = np.array(starts, np.int64)
    return st * 4, words[st + 1].astype(np.int64) & LENGTH_MASK


class _Cursor:
    """Parallel protobuf cursors, one per record."""

    def __init__(self, buf: np.ndarray, pos: np.ndarray) -> None:
        self.buf, self.pos = buf, pos
        self.limit = buf.size

    def byte(self, pos: np.ndarray) -> np.ndarray:
        return self.buf[np.minimum(pos, self.limit - 1)]

    def varint(self, sel: np.ndarray | None = None) -> np.ndarray:
        pos = self.pos if sel is None else self.pos[sel]
        if pos.size and int(pos.max()) >= self.limit:
            raise _Irregular
        b = self.buf[pos]
        val = (b & 0x7F).astype(U64)
        pos = pos + 1
        more = np.flatnonzero(b >= 0x80)
        shift = 7
        while more.size:
            if shift > 63 or int(pos[more].max()) >= self.limit:
                raise _Irregular
            b = self.buf[pos[more]]
            val[more] |= (b & 0x7F).astype(U64) << U64(shift)
            pos[more] += 1
            more = more[b >= 0x80]
            shift += 7
        if sel is None:
            self.pos = pos
        else:
            self.pos[sel] = pos
        return val.astype(np.int64)

    def expect(self, tag: int) -> None:
        if not np.all(self.byte(self.pos) == tag):
            raise _Irregular
        self.pos = self.pos + 1

    def expect_bytes(self, expected: bytes) -> None:
        idx = np.minimum(self.pos[:, None] + np.arange(len(expected)), self.limit - 1)
        if not np.all(self.buf[idx] == np.frombuffer(expected, np.uint8)):
            raise _Irregular
        self.pos = self.pos + len(expected)

    def optional(self, tag: int, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Optional length-delimited field: (start, length) per record (length 0 when absent)."""
        has = (self.pos < end) & (self.byte(self.pos) == tag)
        start = np.zeros(self.pos.size, np.int64)
        length = np.zeros(self.pos.size, np.int64)
        sel = np.flatnonzero(has)
        if sel.size:
            self.pos[sel] += 1
            length[sel] = self.varint(sel)
            start[sel] = self.pos[sel]
            self.pos[sel] += length[sel]
        return start, length

    def entry(self, record_tag: int) -> tuple[str, np.ndarray]:
        """A map entry "values" -> Value -> tensor of one kind in every record: (kind, tensor end)."""
        self.expect(record_tag)
        entry_end = self.varint() + self.pos
        self.expect_bytes(MAP_KEY_BYTES)
        self.expect(ENTRY_VALUE_TAG)
        value_end = self.varint() + self.pos
        tags = self.byte(self.pos)
        if (
            tags[0] not in KIND_OF_TAG
            or not np.all(tags == tags[0])
            or not np.array_equal(value_end, entry_end)
        ):
            raise _Irregular
        self.pos = self.pos + 1
        tensor_end = self.varint() + self.pos
        if not np.array_equal(tensor_end, value_end):
            raise _Irregular
        return KIND_OF_TAG[int(tags[0])], tensor_end


def _gather(buf: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    if start.size == 0:
        return np.zeros(0, np.uint8)
    if int(length.min()) == int(length.max()):
        return buf[start[:, None] + np.arange(int(length[0]))].reshape(-1)
    total = int(length.sum())
    csum = np.cumsum(length) - length
    return buf[np.repeat(start - csum, length) + np.arange(total)]


def _varint_counts(stream: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Number of varints in each record's segment of a concatenated varint stream."""
    ends = np.cumsum(length)
    nonempty = length > 0
    if stream.size and np.any(stream[ends[nonempty] - 1] >= 0x80):
        raise _Irregular
    term = np.concatenate(([0], np.cumsum(stream < 0x80)))
    return term[ends] - term[ends - length]


def _values(
    buf: np.ndarray, start: np.ndarray, length: np.ndarray, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    raw = _gather(buf, start, length)
    if kind == "Int32":
        counts = _varint_counts(raw, length)
        return decode_varints(raw).astype(np.uint32).view(np.int32), counts
    size = FLOAT_WIRE_DTYPE[kind].itemsize
    if np.any(length % size):
        raise _Irregular
    return raw.view(FLOAT_WIRE_DTYPE[kind]).astype(NUMPY_DTYPE[kind]), length // size


def _parse_all(buf: np.ndarray) -> dict[str, Any]:
    starts, lengths = _scan(buf)
    n = starts.size
    out: dict[str, Any] = {"n": n, "kind": None, "label_kind": None}
    if n == 0:
        return out
    end = starts + HEADER_BYTES + lengths
    cur = _Cursor(buf, starts + HEADER_BYTES)
    kind, tensor_end = cur.entry(FEATURES_TAG)
    v_start, v_len = cur.optional(VALUES_TAG, tensor_end)
    k_start, k_len = cur.optional(KEYS_TAG, tensor_end)
    s_start, s_len = cur.optional(SHAPE_TAG, tensor_end)
    if not np.array_equal(cur.pos, tensor_end):
        raise _Irregular
    out["kind"] = kind
    out["values"], out["counts"] = _values(buf, v_start, v_len, kind)
    kraw = _gather(buf, k_start, k_len)
    out["key_counts"] = _varint_counts(kraw, k_len)
    out["keys"] = decode_varints(kraw)
    sraw = _gather(buf, s_start, s_len)
    out["shape_counts"] = _varint_counts(sraw, s_len)
    out["shapes"] = decode_varints(sraw)
    has_label = (cur.pos < end) & (cur.byte(cur.pos) == LABEL_TAG)
    if np.any(has_label):
        if not np.all(has_label):
            raise _Irregular
        label_kind, label_end = cur.entry(LABEL_TAG)
        lv_start, lv_len = cur.optional(VALUES_TAG, label_end)
        if not np.array_equal(cur.pos, label_end):
            raise _Irregular
        lvalues, lcounts = _values(buf, lv_start, lv_len, label_kind)
        if not np.all(lcounts == 1):
            raise _Irregular
        out["label_kind"], out["labels"] = label_kind, lvalues
    if not np.array_equal(cur.pos, end):
        raise _Irregular
    return out


def read_sparse(source: Any) -> Csr:
    """All records as CSR: ``(data, indices, indptr, (n_records, n_cols), labels or None)``.

    Dtypes are kept (float32/float64/int32 data and labels). ``n_cols`` comes from the records'
    shape; dense records are read as rows with keys 0..len-1. Equals ``reference.read_sparse``.
    """
    buf = _to_array(source)
    try:
        p = _parse_all(buf)
        n = p["n"]
        if n and not (np.array_equal(p["counts"], p["key_counts"]) and np.all(p["shape_counts"] == 1)):
            raise _Irregular
        n_cols = int(p["shapes"].max()) if n else 0
        if n and not np.all(p["shapes"] == n_cols):
            raise _Irregular
        indptr = np.zeros(n + 1, np.int64)
        if n:
            np.cumsum(p["counts"], out=indptr[1:])
            data, keys = p["values"], p["keys"]
        else:
            data, keys = np.zeros(0, np.float32), np.zeros(0, U64)
        if keys.size and int(keys.max()) >= n_cols:
            raise _Irregular
    except _Irregular:
        return reference.read_sparse(buf.tobytes())
    return data, keys.astype(reference.index_dtype(n_cols)), indptr, (n, n_cols), p.get("labels")


def read_dense(source: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """All records as a 2-D array ``(n_records, n_features)`` and the labels (or None); dtypes
    kept. Equals ``reference.read_dense``."""
    buf = _to_array(source)
    try:
        p = _parse_all(buf)
        n = p["n"]
        if n == 0:
            return np.zeros((0, 0), np.float32), None
        width = int(p["counts"][0])
        if p["keys"].size or not np.all(p["counts"] == width):
            raise _Irregular
        return p["values"].reshape(n, width), p.get("labels")
    except _Irregular:
        return reference.read_dense(buf.tobytes())


def record_sizes(source: bytes | bytearray | memoryview) -> np.ndarray:
    """Bytes each logical record takes in the stream (headers and padding included), in order.

    What a batch transform with ``SplitType=RecordIO`` sends: whole records, so a mini-batch's
    payload is the sum of its records' sizes. Multi-part records count as one.
    """
    buf = _to_array(source)
    try:
        starts, _ = _scan(buf)
    except _Irregular:
        return reference.record_sizes(source)
    return np.diff(np.append(starts, buf.size)).astype(np.int64)
