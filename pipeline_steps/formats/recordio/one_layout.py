"""Acceleration of the writer for rows with one layout (decision 0010): optional, same bytes.

A chunk whose rows all have the same number m >= 1 of non-zeros, float values and float (or no)
labels, such as prepare's one-hot (user, item) rows. Such a record's bytes depend on its data
only through the byte lengths of its m key varints (its "pattern"). Per pattern one template
record is built, and the rows of that pattern are a fixed-width byte matrix: the template, then
value, key and label bytes written column-wise. No mask compaction, unlike the general writer.

``encode_chunk`` returns None for any other chunk (the general writer runs). Its output equals
``reference.encode_sparse`` of the same rows (tests/formats/test_recordio_oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .wire import (
    ENTRY_VALUE_TAG,
    FEATURES_TAG,
    FLOAT_WIRE_DTYPE,
    HEADER_BYTES,
    KEYS_TAG,
    LABEL_TAG,
    LENGTH_MASK,
    MAP_KEY_BYTES,
    TENSOR_TAG,
    U64,
    VALUES_TAG,
    float_bytes,
    header,
    padding,
    shape_field,
    varint_bytes,
    varint_length,
    varint_lengths,
)

MAX_NNZ = 12  # a row pattern is coded as m decimal digits (key varint lengths 1..10)
MAX_PATTERNS = 16  # key-length patterns per chunk; more: the general writer


def _items(a: np.ndarray) -> np.ndarray:
    """An (n, w) byte matrix (rows contiguous) as n opaque w-byte items: fast row copies."""
    return a.view(np.dtype((np.void, a.shape[1])))[:, 0]


def _length_delimited_head(tag: int, length: int) -> bytes:
    return bytes([tag]) + varint_bytes(length)


def _entry_head(record_tag: int, kind: str, tensor: int) -> bytes:
    """A map entry "values" -> Value -> tensor, up to the tensor's content."""
    value = 1 + varint_length(tensor) + tensor
    entry = len(MAP_KEY_BYTES) + 1 + varint_length(value) + value
    return (
        _length_delimited_head(record_tag, entry)
        + MAP_KEY_BYTES
        + _length_delimited_head(ENTRY_VALUE_TAG, value)
        + _length_delimited_head(TENSOR_TAG[kind], tensor)
    )


class _Layout:
    """The template record of one key-length pattern and where its variable bytes go."""

    def __init__(
        self,
        pattern: int,
        key_widths: list[int],
        kind: str,
        value_bytes: int,
        shape: bytes,
        label_head: bytes,
        label_bytes: int,
    ) -> None:
        self.pattern = pattern
        self.key_widths = key_widths
        key_bytes = sum(key_widths)
        values_field = _length_delimited_head(VALUES_TAG, value_bytes)
        keys_field = _length_delimited_head(KEYS_TAG, key_bytes)
        tensor = len(values_field) + value_bytes + len(keys_field) + key_bytes + len(shape)
        head = _entry_head(FEATURES_TAG, kind, tensor) + values_field
        self.payload = (
            len(head) + value_bytes + len(keys_field) + key_bytes + len(shape) + len(label_head) + label_bytes
        )
        self.value_offset = HEADER_BYTES + len(head)
        self.key_offset = self.value_offset + value_bytes + len(keys_field)
        self.label_offset = HEADER_BYTES + self.payload - label_bytes
        template = (
            header(self.payload)
            + head
            + bytes(value_bytes)
            + keys_field
            + bytes(key_bytes)
            + shape
            + label_head
            + bytes(label_bytes)
            + bytes(padding(self.payload))
        )
        self.template = np.frombuffer(template, np.uint8)

    @property
    def size(self) -> int:
        return self.template.size


def encode_chunk(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    n_cols: int,
    labels: np.ndarray | None,
    kind: str,
    label_kind: str | None,
) -> np.ndarray | None:
    """The records of CSR rows ``indptr`` (a slice of a larger matrix) as bytes, or None if the
    rows are not of one layout. ``kind``/``label_kind`` as ``resolve_type`` gives them."""
    m = _nnz_per_row(indptr, kind, label_kind)
    if m is None:
        return None
    n, lo = indptr.size - 1, int(indptr[0])
    keys = indices[lo : lo + n * m].reshape(n, m).astype(U64)
    found = _key_patterns(keys, m)
    if found is None:
        return None
    code, patterns, counts = found
    value_bytes = m * FLOAT_WIRE_DTYPE[kind].itemsize
    shape = shape_field(n_cols)
    label_head, label_bytes, label_items = b"", 0, None
    if labels is not None and label_kind is not None:
        label_bytes = FLOAT_WIRE_DTYPE[label_kind].itemsize
        label_items = _items(float_bytes(labels, label_kind).reshape(n, label_bytes))
        label_head = _entry_head(LABEL_TAG, label_kind, 1 + varint_length(label_bytes) + label_bytes)
        label_head += _length_delimited_head(VALUES_TAG, label_bytes)
    layouts = []
    for pattern in patterns.tolist():
        widths = [int(c) + 1 for c in str(pattern).zfill(m)]
        layout = _Layout(pattern, widths, kind, value_bytes, shape, label_head, label_bytes)
        if layout.payload > LENGTH_MASK:
            return None
        layouts.append(layout)
    filler = _Filler(
        keys=keys.astype(np.uint32) if n_cols <= 1 << 32 else keys,
        values=_items(float_bytes(data[lo : lo + n * m], kind).reshape(n, value_bytes)),
        labels=label_items,
    )
    order = np.argsort(-counts, kind="stable")  # the most common pattern first
    if len({layout.size for layout in layouts}) == 1:
        return _write_one_size(filler, code, [layouts[i] for i in order.tolist()])
    return _write_mixed_sizes(filler, code, layouts)


def _nnz_per_row(indptr: np.ndarray, kind: str, label_kind: str | None) -> int | None:
    """The common number of entries per row (1..MAX_NNZ) with float wire types; None otherwise."""
    n = indptr.size - 1
    if (
        n == 0
        or kind not in FLOAT_WIRE_DTYPE
        or (label_kind is not None and label_kind not in FLOAT_WIRE_DTYPE)
    ):
        return None
    lo = int(indptr[0])
    m = (int(indptr[-1]) - lo) // n
    if m == 0 or m > MAX_NNZ or not np.array_equal(indptr, lo + m * np.arange(n + 1)):
        return None
    return m


def _key_patterns(keys: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per row, its key varint lengths as m decimal digits (code); the distinct codes and counts.

    None when there are more than MAX_PATTERNS distinct patterns (the general writer is faster).
    """
    key_lengths = varint_lengths(keys)
    code = key_lengths[:, 0] - 1
    for j in range(1, m):
        code = code * 10 + (key_lengths[:, j] - 1)
    if int(code.max()) < 1 << 16:
        counts = np.bincount(code)
        patterns = np.flatnonzero(counts)
        counts = counts[patterns]
    else:
        patterns, counts = np.unique(code, return_counts=True)
    if patterns.size > MAX_PATTERNS:
        return None
    return code, patterns, counts


@dataclass(frozen=True)
class _Filler:
    """The per-row parts of a chunk: keys (n, m), value bytes and label bytes as row items."""

    keys: np.ndarray
    values: np.ndarray
    labels: np.ndarray | None

    def fill(self, rows: np.ndarray, layout: _Layout, sel: np.ndarray | None) -> None:
        """Write the records of the rows ``sel`` (None: all) of one pattern into ``rows``."""
        _items(rows)[:] = _items(layout.template[None, :])[0]
        v = layout.value_offset
        width = self.values.dtype.itemsize
        _items(rows[:, v : v + width])[:] = self.values if sel is None else self.values[sel]
        col = layout.key_offset
        for j, key_width in enumerate(layout.key_widths):
            key = self.keys[:, j] if sel is None else self.keys[sel, j]
            for b in range(key_width):
                byte = (key >> key.dtype.type(7 * b)) if b else key
                rows[:, col] = byte.astype(np.uint8) | np.uint8(0x80 if b < key_width - 1 else 0)
                col += 1
        if self.labels is not None:
            a, label_bytes = layout.label_offset, self.labels.dtype.itemsize
            _items(rows[:, a : a + label_bytes])[:] = self.labels if sel is None else self.labels[sel]


def _write_one_size(filler: _Filler, code: np.ndarray, layouts: list[_Layout]) -> np.ndarray:
    """All patterns pad to one record size (e.g. 53- and 54-byte payloads both pad to 56): an
    (n, size) matrix. The first (most common) pattern is written for every row, the rows of the
    others are then overwritten."""
    out = np.empty((code.size, layouts[0].size), np.uint8)
    filler.fill(out, layouts[0], None)
    for layout in layouts[1:]:
        sel = np.flatnonzero(code == layout.pattern)
        rows = np.empty((sel.size, out.shape[1]), np.uint8)
        filler.fill(rows, layout, sel)
        _items(out)[sel] = _items(rows)
    return out.reshape(-1)


def _write_mixed_sizes(filler: _Filler, code: np.ndarray, layouts: list[_Layout]) -> np.ndarray:
    """Records of several sizes: each pattern's rows are written at their offsets (4-byte words)."""
    record_size = np.zeros(code.size, np.int64)
    for layout in layouts:
        record_size[code == layout.pattern] = layout.size
    ends = np.cumsum(record_size)
    flat = np.empty(int(ends[-1]), np.uint8)
    words = flat.view("<u4")
    first_word = (ends - record_size) // 4
    for layout in layouts:
        sel = np.flatnonzero(code == layout.pattern)
        rows = np.empty((sel.size, layout.size), np.uint8)
        filler.fill(rows, layout, sel)
        words[first_word[sel][:, None] + np.arange(layout.size // 4)] = rows.view("<u4")
    return flat
