"""RecordIO-protobuf (``application/x-recordio-protobuf``), numpy only.

Writers are byte-identical to sagemaker 2.257.7 ``write_spmatrix_to_sparse_tensor`` /
``write_numpy_to_dense_tensor`` (FORMATS.md §1). They are vectorised: every record of a chunk is
laid out as one row of a byte matrix with a fixed slot per field (a varint gets as many slots as
its longest value in the chunk); a boolean mask drops the unused slots, which concatenates the
records in order. No protobuf objects and no per-row Python loop. Rows with the same number of
non-zeros (one-hot rows) skip the mask: per key-length pattern one template record is filled in
column-wise (``_one_layout_chunk``).

Readers: ``iter_records`` is the general, tolerant parser (masks the low 29 bits of the length
word, reassembles dmlc multi-part records, accepts unpacked repeated fields and unknown fields).
``read_sparse`` / ``read_dense`` parse all records at once with numpy and fall back to
``iter_records`` when a file is not laid out the way the SDK writes it. ``read_sparse`` first
tries files whose records share one layout (same types and nnz, e.g. one-hot training data):
each record must equal a parsed template byte for byte outside its value/key/label bytes, so the
fields are read at fixed offsets (``_uniform_sparse``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "MAGIC",
    "Record",
    "RecordIOError",
    "Tensor",
    "encode_dense",
    "encode_sparse",
    "iter_dense_chunks",
    "iter_records",
    "iter_sparse_chunks",
    "parse_record",
    "read_dense",
    "read_sparse",
    "resolve_type",
    "write_dense",
    "write_sparse",
]

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_LENGTH_MASK = (1 << 29) - 1
_KEY = b"\x0a\x06values"  # MapEntry.key = "values"
_TAG = {"Float32": 0x12, "Float64": 0x1A, "Int32": 0x3A}
_KIND = {v: k for k, v in _TAG.items()}
_FLOAT = {"Float32": np.dtype("<f4"), "Float64": np.dtype("<f8")}
_NUMPY = {"Float32": np.dtype(np.float32), "Float64": np.dtype(np.float64), "Int32": np.dtype(np.int32)}
_U64 = np.uint64
_VARINT_LIMITS = [1 << (7 * i) for i in range(1, 10)]
DEFAULT_CHUNK_ROWS = 1 << 14  # ~1 MB of slots for one-hot rows: stays in cache
_SLOT_BUDGET = 1 << 25  # padded (rows x nnz) cells per chunk when rows have different nnz


class RecordIOError(ValueError):
    """A RecordIO-protobuf stream that cannot be decoded; ``offset`` is the byte offset in the stream."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"RecordIO-protobuf: {reason} (at byte offset {offset})")
        self.offset = offset
        self.reason = reason


def resolve_type(dtype: Any) -> str:
    """The SDK's ``_resolve_type``: int64 -> Int32, float64 -> Float64, float32 -> Float32, else error."""
    dtype = np.dtype(dtype)
    if dtype == np.dtype(int):
        return "Int32"
    if dtype == np.dtype(float):
        return "Float64"
    if dtype == np.dtype("float32"):
        return "Float32"
    raise ValueError(f"Unsupported dtype {dtype} on array")


# --------------------------------------------------------------------------------------------
# varints


def _varint_bytes(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _vlen(x: np.ndarray) -> np.ndarray:
    """Varint length in bytes of every element of a uint64 array."""
    n = np.ones(x.shape, np.int64)
    if x.size:
        top = int(x.max())
        for limit in _VARINT_LIMITS:
            if limit > top:
                break
            n += x >= _U64(limit)
    return n


def _vl(x: int | np.ndarray) -> int | np.ndarray:
    if np.ndim(x) == 0:
        return len(_varint_bytes(int(x)))
    return _vlen(x.astype(_U64, copy=False))  # type: ignore[union-attr]


def _const_or_array(x: np.ndarray) -> int | np.ndarray:
    """Collapse an all-equal length array to an int (lets the layout use constant bytes)."""
    if x.size and int(x.min()) == int(x.max()):
        return int(x.flat[0])
    return x


def _int32_as_u64(values: np.ndarray) -> np.ndarray:
    """int32 varint payload: negatives are 10-byte two's complement (protobuf int32)."""
    v = np.asarray(values).astype(np.int64, copy=False)
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < -(1 << 31) or hi >= (1 << 31):
            bad = lo if lo < -(1 << 31) else hi
            raise ValueError(f"Value out of range: {bad}")
    return v.view(_U64)


def _float_bytes(values: np.ndarray, kind: str) -> np.ndarray:
    """Little-endian bytes as protobuf writes them; float32 NaNs get their quiet bit like the SDK."""
    out = np.asarray(values).astype(_FLOAT[kind], copy=True)
    if kind == "Float32":
        nan = np.isnan(out)
        if nan.any():
            bits = out.view("<u4")
            bits[nan] |= np.uint32(0x00400000)
    return out.view(np.uint8)


# --------------------------------------------------------------------------------------------
# row layout


class _Rows:
    """Byte layout of ``n`` records: one matrix row per record, fields as column slots.

    A field is ``(width, data, mask)``: ``data`` is one row shared by all records (a 1-D
    constant) or ``(n, width)``; ``mask`` is None (every slot used), a 1-D or an ``(n, width)``
    boolean array. Constants go into a template row copied once; only per-record fields are
    written column-wise, and the mask compaction runs only if some slot can be unused.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._fields: list[tuple[int, np.ndarray, np.ndarray | None]] = []

    def const(self, b: bytes, present: bool | np.ndarray = True) -> None:
        if present is False or not b:
            return
        mask = None if present is True else np.broadcast_to(present[:, None], (self.n, len(b)))
        self._fields.append((len(b), np.frombuffer(b, np.uint8), mask))

    def varint(self, x: int | np.ndarray, present: bool | np.ndarray = True) -> None:
        if np.ndim(x) == 0:
            self.const(_varint_bytes(int(x)), present)
            return
        if present is False:
            return
        x = x.astype(_U64, copy=False)
        lens = _vlen(x)
        if present is not True:
            lens = np.where(present, lens, 0)
        self.varints(x[:, None], lens[:, None])

    def varints(self, x: np.ndarray, lens: np.ndarray) -> None:
        """``x`` (n, m) uint64 written as m varints per row; ``lens`` = their lengths, 0 = absent."""
        n, m = x.shape
        w = int(lens.max()) if lens.size else 0
        if w == 0:
            return
        if w == 1:
            data = x.astype(np.uint8)
        else:
            data = np.empty((n, m, w), np.uint8)
            for j in range(w):
                byte = (x >> _U64(7 * j)) if j else x
                data[..., j] = (byte & _U64(0x7F)).astype(np.uint8)
                if j < w - 1:
                    data[..., j] |= (lens > j + 1).view(np.uint8) << np.uint8(7)
            data = data.reshape(n, m * w)
        mask = None
        if int(lens.min()) != w:
            mask = np.empty((n, m, w), bool)
            for j in range(w):
                mask[..., j] = lens > j
            mask = mask.reshape(n, m * w)
        self._fields.append((m * w, data, mask))

    def block(self, data: np.ndarray, mask: np.ndarray | None = None) -> None:
        if data.shape[1]:
            self._fields.append((data.shape[1], data, mask))

    def padding(self, pad: int | np.ndarray) -> None:
        if np.ndim(pad) == 0:
            self.const(b"\0" * int(pad))
        else:
            self._fields.append((3, np.zeros(3, np.uint8), np.arange(3) < pad[:, None]))  # type: ignore[index]

    def build(self) -> np.ndarray:
        width = sum(f[0] for f in self._fields)
        out = np.empty((self.n, width), np.uint8)
        template = np.zeros(width, np.uint8)
        keep_template = np.ones(width, bool)
        per_row: list[tuple[int, int, np.ndarray]] = []
        row_masks: list[tuple[int, int, np.ndarray]] = []
        col = 0
        for w, data, mask in self._fields:
            if data.ndim == 1:
                template[col : col + w] = data
            else:
                per_row.append((col, w, data))
            if mask is not None:
                row_masks.append((col, w, mask))
            col += w
        if len(per_row) < len(self._fields):
            out[:] = template
        for col, w, data in per_row:
            out[:, col : col + w] = data
        if not row_masks:
            return out.reshape(-1)
        keep = np.empty((self.n, width), bool)
        keep[:] = keep_template
        for col, w, mask in row_masks:
            keep[:, col : col + w] = mask
        return out[keep]


def _label_length(labels: np.ndarray | None, kind: str | None) -> tuple[int | np.ndarray, Any]:
    """Bytes the label map entry adds to a record, and what ``_write_label`` needs."""
    if labels is None or kind is None:
        return 0, None
    if kind == "Int32":
        x = _int32_as_u64(labels)
        ld: int | np.ndarray = _const_or_array(_vlen(x))
        data: Any = x
    else:
        ld = _FLOAT[kind].itemsize
        data = _float_bytes(labels, kind).reshape(len(labels), ld)
    lt = 1 + _vl(ld) + ld
    lv = 1 + _vl(lt) + lt
    le = 9 + _vl(lv) + lv
    return 1 + _vl(le) + le, (kind, data, ld, lt, lv, le)


def _write_label(rows: _Rows, info: Any) -> None:
    if info is None:
        return
    kind, data, ld, lt, lv, le = info
    rows.const(b"\x12")
    rows.varint(le)
    rows.const(_KEY + b"\x12")
    rows.varint(lv)
    rows.const(bytes([_TAG[kind]]))
    rows.varint(lt)
    rows.const(b"\x0a")
    rows.varint(ld)
    if kind == "Int32":
        rows.varint(data)
    else:
        rows.block(data)


def _frame(rows: _Rows, payload: int | np.ndarray) -> int | np.ndarray:
    """Record header; returns the padding each record needs."""
    top = payload if isinstance(payload, int) else (int(payload.max()) if payload.size else 0)
    if top > _LENGTH_MASK:
        raise ValueError(f"a record of {top} bytes does not fit RecordIO's 29-bit length")
    rows.const(_MAGIC_BYTES)
    if isinstance(payload, int):
        rows.const(struct.pack("<I", payload))
    else:
        rows.block(payload.astype("<u4").view(np.uint8).reshape(rows.n, 4))
    return (-payload) % 4


def _tensor_header(
    rows: _Rows, kind: str, tensor_len: int | np.ndarray, entry_len: Any, value_len: Any
) -> None:
    rows.const(b"\x0a")
    rows.varint(entry_len)
    rows.const(_KEY + b"\x12")
    rows.varint(value_len)
    rows.const(bytes([_TAG[kind]]))
    rows.varint(tensor_len)


def _feature_values(values: np.ndarray, kind: str, valid: np.ndarray | None) -> tuple[Any, Any]:
    """(n, m) values -> (byte length per row, writer callback)."""
    n, m = values.shape
    if kind == "Int32":
        x = _int32_as_u64(values)
        lens = _vlen(x)
        if valid is not None:
            lens = np.where(valid, lens, 0)
        return _const_or_array(lens.sum(axis=1)), lambda rows: rows.varints(x, lens)
    size = _FLOAT[kind].itemsize
    data = _float_bytes(values, kind).reshape(n, m * size)
    if valid is None:
        return m * size, lambda rows: rows.block(data)
    mask = np.repeat(valid, size, axis=1)
    return valid.sum(axis=1) * size, lambda rows: rows.block(data, mask)


# --------------------------------------------------------------------------------------------
# writers


def _as_csr(csr: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    if hasattr(csr, "tocsr"):  # any scipy sparse matrix/array; scipy itself is not imported
        m = csr.tocsr()
        return np.asarray(m.data), np.asarray(m.indices), np.asarray(m.indptr), tuple(m.shape)
    if isinstance(csr, tuple | list) and len(csr) == 4:
        data, indices, indptr, shape = csr
        data, indices, indptr = np.asarray(data), np.asarray(indices), np.asarray(indptr)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2:
            raise ValueError("Array must be a Matrix")
        if indptr.ndim != 1 or indptr.size != shape[0] + 1:
            raise ValueError(f"indptr must have n_rows + 1 = {shape[0] + 1} entries, got {indptr.size}")
        if indptr.size and (
            np.any(np.diff(indptr) < 0) or indptr[0] < 0 or indptr[-1] > min(data.size, indices.size)
        ):
            raise ValueError("indptr must be non-decreasing and within data/indices")
        lo, hi = int(indptr[0]), int(indptr[-1])
        if hi > lo and (int(indices[lo:hi].min()) < 0 or int(indices[lo:hi].max()) >= shape[1]):
            raise ValueError(f"column indices must be in [0, {shape[1]})")
        return data, indices, indptr, shape  # type: ignore[return-value]
    raise TypeError("Array must be sparse: a scipy sparse matrix or a (data, indices, indptr, shape) tuple")


def _check_labels(labels: Any, n_rows: int) -> tuple[np.ndarray | None, str | None]:
    if labels is None:
        return None, None
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("Labels must be a Vector")
    if labels.shape[0] != n_rows:
        # The SDK also accepts len(labels) == n_cols and then fails or silently drops labels.
        raise ValueError(f"Label shape {labels.shape} not compatible with {n_rows} rows")
    return labels, resolve_type(labels.dtype)


_ONE_LAYOUT_MAX_PATTERNS = 16


def _records(a: np.ndarray) -> np.ndarray:
    """An (n, w) byte matrix (rows contiguous) as n opaque w-byte items: fast row copies."""
    return a.view(np.dtype((np.void, a.shape[1])))[:, 0]


def _one_layout_chunk(data, indices, indptr, n_cols, labels, kind, lkind) -> np.ndarray | None:
    """Rows with the same number m >= 1 of non-zeros, float values and float (or no) labels.

    Such a record's bytes depend on its data only through the byte lengths of its m key varints
    (its "pattern"). Per pattern, one template record is built and the rows of that pattern are
    a fixed-width byte matrix: template, then value, key and label bytes written column-wise. No
    mask compaction. Returns None when the chunk is not of that kind (the general path runs).
    """
    n = indptr.size - 1
    if n == 0 or kind == "Int32" or lkind == "Int32":
        return None
    lo = int(indptr[0])
    m = (int(indptr[-1]) - lo) // n
    if m == 0 or m > 12 or not np.array_equal(indptr, lo + m * np.arange(n + 1)):
        return None
    keys = indices[lo : lo + n * m].reshape(n, m).astype(_U64)
    klens = _vlen(keys)
    code = klens[:, 0] - 1
    for j in range(1, m):
        code = code * 10 + (klens[:, j] - 1)
    if int(code.max()) < 1 << 16:
        counts = np.bincount(code)
        patterns = np.flatnonzero(counts)
        counts = counts[patterns]
    else:
        patterns, counts = np.unique(code, return_counts=True)
    if patterns.size > _ONE_LAYOUT_MAX_PATTERNS:
        return None
    size = _FLOAT[kind].itemsize
    vl = m * size
    values = _float_bytes(data[lo : lo + n * m], kind).reshape(n, vl)
    shape_field = b"\x1a" + _varint_bytes(len(_varint_bytes(n_cols))) + _varint_bytes(n_cols)
    label_head, lsize = b"", 0
    if labels is not None:
        lsize = _FLOAT[lkind].itemsize
        lbytes = _float_bytes(labels, lkind).reshape(n, lsize)
        lt = 1 + _vl(lsize) + lsize
        lv = 1 + _vl(lt) + lt
        le = 9 + _vl(lv) + lv
        label_head = (
            b"\x12" + _varint_bytes(le) + _KEY + b"\x12" + _varint_bytes(lv)
            + bytes([_TAG[lkind]]) + _varint_bytes(lt) + b"\x0a" + _varint_bytes(lsize)
        )  # fmt: skip
    layouts = []
    for pattern in patterns.tolist():
        widths = [int(c) + 1 for c in str(pattern).zfill(m)]
        kl = sum(widths)
        tensor = 1 + _vl(vl) + vl + 1 + _vl(kl) + kl + len(shape_field)
        value = 1 + _vl(tensor) + tensor
        entry = 9 + _vl(value) + value
        head = (
            b"\x0a" + _varint_bytes(entry) + _KEY + b"\x12" + _varint_bytes(value)
            + bytes([_TAG[kind]]) + _varint_bytes(tensor) + b"\x0a" + _varint_bytes(vl)
        )  # fmt: skip
        keys_head = b"\x12" + _varint_bytes(kl)
        payload = len(head) + vl + len(keys_head) + kl + len(shape_field) + len(label_head) + lsize
        if payload > _LENGTH_MASK:
            return None
        voff = 8 + len(head)
        koff = voff + vl + len(keys_head)
        template = (
            _MAGIC_BYTES + struct.pack("<I", payload) + head + bytes(vl) + keys_head + bytes(kl)
            + shape_field + label_head + bytes(lsize) + bytes((-payload) % 4)
        )  # fmt: skip
        layouts.append((pattern, widths, np.frombuffer(template, np.uint8), voff, koff, 8 + payload - lsize))

    def fill(rows, layout, sel) -> None:
        """Write the records of the rows ``sel`` (None: all) of one pattern into ``rows``."""
        _, widths, template, voff, koff, loff = layout
        _records(rows)[:] = _records(template[None, :])[0]
        _records(rows[:, voff : voff + vl])[:] = vrec if sel is None else vrec[sel]
        col = koff
        for j, width in enumerate(widths):
            key = keys32[:, j] if sel is None else keys32[sel, j]
            for b in range(width):
                byte = (key >> np.uint32(7 * b)) if b else key
                rows[:, col] = byte.astype(np.uint8) | np.uint8(0x80 if b < width - 1 else 0)
                col += 1
        if lsize:
            _records(rows[:, loff : loff + lsize])[:] = lrec if sel is None else lrec[sel]

    keys32 = keys.astype(np.uint32) if n_cols <= 1 << 32 else keys
    vrec = _records(values)
    lrec = _records(lbytes) if lsize else None
    order = np.argsort(-counts, kind="stable")  # the most common pattern first
    record_sizes = {t[2].size for t in layouts}
    if len(record_sizes) == 1:
        # e.g. 53- and 54-byte payloads both pad to 56: an (n, size) matrix. The most common
        # pattern is written for every row, the rows of the others are then overwritten.
        out = np.empty((n, record_sizes.pop()), np.uint8)
        for rank, i in enumerate(order.tolist()):
            if rank == 0:
                fill(out, layouts[i], None)
            else:
                sel = np.flatnonzero(code == layouts[i][0])
                rows = np.empty((sel.size, out.shape[1]), np.uint8)
                fill(rows, layouts[i], sel)
                _records(out)[sel] = _records(rows)
        return out.reshape(-1)
    size_of = {layout[0]: layout[2].size for layout in layouts}
    sizes = np.zeros(n, np.int64)
    for pattern, record_size in size_of.items():
        sizes[code == pattern] = record_size
    ends = np.cumsum(sizes)
    out = np.empty(int(ends[-1]), np.uint8)
    words = out.view("<u4")
    first_word = (ends - sizes) // 4
    for layout in layouts:
        sel = np.flatnonzero(code == layout[0])
        rows = np.empty((sel.size, layout[2].size), np.uint8)
        fill(rows, layout, sel)
        words[first_word[sel][:, None] + np.arange(layout[2].size // 4)] = rows.view("<u4")
    return out


def _sparse_chunk(data, indices, indptr, n_cols, labels, kind, lkind) -> np.ndarray:
    n = indptr.size - 1
    fast = _one_layout_chunk(data, indices, indptr, n_cols, labels, kind, lkind)
    if fast is not None:
        return fast
    counts = np.diff(indptr)
    m = int(counts.max()) if n else 0
    rows = _Rows(n)
    valid = None
    if m == 0:
        values2d = np.zeros((n, 0), data.dtype)
        keys2d = np.zeros((n, 0), _U64)
        present: bool | np.ndarray = False
    elif int(counts.min()) == m:
        lo = int(indptr[0])
        values2d = data[lo : lo + n * m].reshape(n, m)
        keys2d = indices[lo : lo + n * m].reshape(n, m).astype(_U64)
        present = True
    else:
        pos = indptr[:-1, None] + np.arange(m)
        valid = np.arange(m) < counts[:, None]
        pos = np.where(valid, pos, indptr[0])
        values2d = data[pos]
        keys2d = indices[pos].astype(_U64)
        present = counts > 0
    vl, write_values = _feature_values(values2d, kind, valid)
    klens = _vlen(keys2d)
    if valid is not None:
        klens = np.where(valid, klens, 0)
    kl = _const_or_array(klens.sum(axis=1))
    shape_field = b"\x1a" + _varint_bytes(len(_varint_bytes(n_cols))) + _varint_bytes(n_cols)
    body = 1 + _vl(vl) + vl + 1 + _vl(kl) + kl
    if present is not True:
        body = body * present if present is not False else 0
    tensor = (
        _const_or_array(body + len(shape_field)) if not isinstance(body, int) else body + len(shape_field)
    )
    value = 1 + _vl(tensor) + tensor
    entry = 9 + _vl(value) + value
    label_len, label_info = _label_length(labels, lkind)
    payload = 1 + _vl(entry) + entry + label_len
    pad = _frame(rows, payload)
    _tensor_header(rows, kind, tensor, entry, value)
    rows.const(b"\x0a", present)
    rows.varint(vl, present)
    write_values(rows)
    rows.const(b"\x12", present)
    rows.varint(kl, present)
    rows.varints(keys2d, klens)
    rows.const(shape_field)
    _write_label(rows, label_info)
    rows.padding(pad)
    return rows.build()


def _chunk_bounds(counts: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Row ranges of at most ``chunk_rows`` rows whose padded (rows x max nnz) stays in budget."""
    n, start = counts.size, 0
    while start < n:
        stop = min(n, start + chunk_rows)
        seg = counts[start:stop]
        if seg.size and int(seg.max()) * seg.size > _SLOT_BUDGET and int(seg.min()) != int(seg.max()):
            width = np.maximum.accumulate(seg) * np.arange(1, seg.size + 1)
            stop = start + max(1, int(np.searchsorted(width, _SLOT_BUDGET, side="right")))
        yield start, stop
        start = stop


def iter_sparse_chunks(
    csr: Any, labels: Any = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[memoryview]:
    """Encode a CSR matrix chunk by chunk (each chunk is whole records); see ``encode_sparse``."""
    data, indices, indptr, (n_rows, n_cols) = _as_csr(csr)
    labels, lkind = _check_labels(labels, n_rows)
    kind = resolve_type(data.dtype)
    indptr = indptr.astype(np.int64, copy=False)
    for start, stop in _chunk_bounds(np.diff(indptr), max(1, int(chunk_rows))):
        lab = None if labels is None else labels[start:stop]
        out = _sparse_chunk(data, indices, indptr[start : stop + 1], n_cols, lab, kind, lkind)
        yield memoryview(out)


def iter_dense_chunks(
    array: Any, labels: Any = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[memoryview]:
    """Encode a 2-D array chunk by chunk (each chunk is whole records); see ``encode_dense``."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    labels, lkind = _check_labels(labels, array.shape[0])
    kind = resolve_type(array.dtype)
    n_rows, n_cols = array.shape
    step = max(1, int(chunk_rows))
    for start in range(0, n_rows, step):
        chunk = array[start : start + step]
        rows = _Rows(chunk.shape[0])
        vl, write_values = _feature_values(chunk, kind, None)
        tensor = 1 + _vl(vl) + vl if n_cols else 0
        value = 1 + _vl(tensor) + tensor
        entry = 9 + _vl(value) + value
        label_len, label_info = _label_length(None if labels is None else labels[start : start + step], lkind)
        pad = _frame(rows, 1 + _vl(entry) + entry + label_len)
        _tensor_header(rows, kind, tensor, entry, value)
        if n_cols:
            rows.const(b"\x0a")
            rows.varint(vl)
            write_values(rows)
        _write_label(rows, label_info)
        rows.padding(pad)
        yield memoryview(rows.build())


def encode_sparse(csr: Any, labels: Any = None) -> bytes:
    """Like the SDK's ``write_spmatrix_to_sparse_tensor``: one sparse record per CSR row.

    ``csr`` is a scipy sparse matrix/array (converted with ``tocsr()``) or a plain
    ``(data, indices, indptr, shape)`` tuple of numpy arrays. Features and labels are typed
    independently by ``resolve_type`` (float32 -> Float32, float64 -> Float64, int64 -> Int32).
    Stored entries are written as stored (explicit zeros, order, duplicates).
    """
    return b"".join(iter_sparse_chunks(csr, labels))


def encode_dense(array: Any, labels: Any = None) -> bytes:
    """Like the SDK's ``write_numpy_to_dense_tensor``: one dense record per row."""
    return b"".join(iter_dense_chunks(array, labels))


def write_sparse(
    fileobj: BinaryIO, csr: Any, labels: Any = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> int:
    """Stream ``encode_sparse`` output to ``fileobj``; returns the number of bytes written."""
    return _write_chunks(fileobj, iter_sparse_chunks(csr, labels, chunk_rows))


def write_dense(
    fileobj: BinaryIO, array: Any, labels: Any = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> int:
    """Stream ``encode_dense`` output to ``fileobj``; returns the number of bytes written."""
    return _write_chunks(fileobj, iter_dense_chunks(array, labels, chunk_rows))


def _write_chunks(fileobj: BinaryIO, chunks: Any) -> int:
    total = 0
    for chunk in chunks:
        fileobj.write(chunk)
        total += chunk.nbytes
    return total


# --------------------------------------------------------------------------------------------
# general reader


@dataclass(frozen=True, slots=True)
class Tensor:
    """One ``Value`` of a record map. ``kind`` is Float32/Float64/Int32/Bytes ("" if unset)."""

    kind: str
    values: np.ndarray  # float32 / float64 / int32 as stored; object array of bytes for Bytes
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, _U64))  # empty = dense
    shape: tuple[int, ...] = ()
    content_type: str | None = None  # Bytes only


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded ``aialgs.data.Record``; ``offset`` is where its RecordIO header starts."""

    features: dict[str, Tensor]
    label: dict[str, Tensor]
    offset: int = 0
    uid: str | None = None
    metadata: str | None = None
    configuration: str | None = None

    @property
    def values(self) -> np.ndarray:
        t = self.features.get("values")
        return t.values if t is not None else np.zeros(0, np.float32)

    @property
    def keys(self) -> np.ndarray:
        t = self.features.get("values")
        return t.keys if t is not None else np.zeros(0, _U64)

    @property
    def shape(self) -> tuple[int, ...]:
        t = self.features.get("values")
        return t.shape if t is not None else ()

    @property
    def label_values(self) -> np.ndarray | None:
        t = self.label.get("values")
        return None if t is None else t.values


def _decode_varints(b: np.ndarray) -> np.ndarray:
    """Packed varints (uint8 array) -> uint64 array. Raises ValueError on a truncated varint."""
    if b.size == 0:
        return np.zeros(0, _U64)
    term = b < 0x80
    if not term[-1]:
        raise ValueError("truncated varint")
    ends = np.flatnonzero(term)
    if ends.size == b.size:
        return b.astype(_U64)
    counts = np.diff(ends, prepend=-1)
    if int(counts.max()) > 10:
        raise ValueError("varint longer than 10 bytes")
    starts = ends - counts + 1
    shift = ((np.arange(b.size) - np.repeat(starts, counts)) * 7).astype(_U64)
    return np.add.reduceat((b & 0x7F).astype(_U64) << shift, starts)


class _Msg:
    """Minimal protobuf wire reader over one message; errors carry the absolute offset."""

    def __init__(self, buf: bytes | memoryview, base: int) -> None:
        self.buf, self.base, self.pos = buf, base, 0

    def fail(self, reason: str) -> RecordIOError:
        return RecordIOError(self.base + self.pos, reason)

    def varint(self) -> int:
        result = shift = 0
        buf = self.buf
        while True:
            if self.pos >= len(buf):
                raise self.fail("truncated varint in protobuf payload")
            b = buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result & ((1 << 64) - 1)
            shift += 7
            if shift >= 70:
                raise self.fail("varint longer than 10 bytes")

    def fields(self) -> Iterator[tuple[int, int, Any, int]]:
        """Yields (field number, wire type, payload, absolute offset of the payload)."""
        while self.pos < len(self.buf):
            key = self.varint()
            num, wt = key >> 3, key & 7
            start = self.pos
            if wt == 0:
                yield num, wt, self.varint(), self.base + start
            elif wt == 1 or wt == 5:
                size = 8 if wt == 1 else 4
                if self.pos + size > len(self.buf):
                    raise self.fail("truncated fixed-width field")
                self.pos += size
                yield num, wt, self.buf[start : self.pos], self.base + start
            elif wt == 2:
                size = self.varint()
                start = self.pos
                if start + size > len(self.buf):
                    raise self.fail(f"field {num} of {size} bytes runs past the end of its message")
                self.pos += size
                yield num, wt, self.buf[start : self.pos], self.base + start
            else:
                raise self.fail(f"unsupported protobuf wire type {wt} (field {num})")


def _parse_tensor(buf, base: int, kind: str) -> Tensor:
    values: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    shape: list[np.ndarray] = []
    np_dtype = _FLOAT.get(kind)
    for num, wt, payload, off in _Msg(buf, base).fields():
        target = {1: values, 2: keys, 3: shape}.get(num)
        if target is None:
            continue
        raw = np.frombuffer(payload, np.uint8) if wt in (1, 2, 5) else None
        if num == 1 and np_dtype is not None:
            if wt == 0 or (wt == 2 and raw.size % np_dtype.itemsize):  # type: ignore[union-attr]
                raise RecordIOError(off, f"bad {kind} values field")
            target.append(raw.view(np_dtype).astype(np_dtype.newbyteorder("=")))  # type: ignore[union-attr]
        elif wt == 0:
            target.append(np.array([payload], _U64))
        elif wt == 2:
            try:
                target.append(_decode_varints(raw))  # type: ignore[arg-type]
            except ValueError as e:
                raise RecordIOError(off, f"{e} in packed field {num}") from None
        else:
            raise RecordIOError(off, f"unexpected wire type {wt} for field {num}")
    if np_dtype is not None:
        vals = np.concatenate(values) if values else np.zeros(0, _NUMPY[kind])
    else:
        ints = np.concatenate(values) if values else np.zeros(0, _U64)
        vals = ints.astype(np.uint32).view(np.int32)  # protobuf int32 keeps the low 32 bits
    k = np.concatenate(keys) if keys else np.zeros(0, _U64)
    s = tuple(int(v) for v in np.concatenate(shape)) if shape else ()
    return Tensor(kind, vals, k, s)


def _parse_value(buf, base: int) -> Tensor:
    tensor = Tensor("", np.zeros(0, np.float32))
    for num, wt, payload, off in _Msg(buf, base).fields():
        if wt != 2:
            continue
        if num in (2, 3, 7):
            tensor = _parse_tensor(payload, off, {2: "Float32", 3: "Float64", 7: "Int32"}[num])
        elif num == 9:
            items: list[bytes] = []
            content_type = None
            for n2, w2, p2, _ in _Msg(payload, off).fields():
                if n2 == 1 and w2 == 2:
                    items.append(bytes(p2))
                elif n2 == 2 and w2 == 2:
                    content_type = bytes(p2).decode("utf-8", "replace")
            arr = np.empty(len(items), object)
            arr[:] = items
            tensor = Tensor("Bytes", arr, content_type=content_type)
    return tensor


def _parse_entry(buf, base: int) -> tuple[str, Tensor]:
    key, value = "", Tensor("", np.zeros(0, np.float32))
    for num, wt, payload, off in _Msg(buf, base).fields():
        if num == 1 and wt == 2:
            key = bytes(payload).decode("utf-8", "replace")
        elif num == 2 and wt == 2:
            value = _parse_value(payload, off)
    return key, value


def parse_record(payload: bytes | memoryview, offset: int = 0, payload_offset: int | None = None) -> Record:
    """Decode one protobuf ``Record`` payload (no RecordIO framing)."""
    base = offset + 8 if payload_offset is None else payload_offset
    features: dict[str, Tensor] = {}
    label: dict[str, Tensor] = {}
    strings: dict[int, str] = {}
    for num, wt, data, off in _Msg(payload, base).fields():
        if wt != 2:
            continue
        if num in (1, 2):
            key, value = _parse_entry(data, off)
            (features if num == 1 else label)[key] = value
        elif num in (3, 4, 5):
            strings[num] = bytes(data).decode("utf-8", "replace")
    return Record(features, label, offset, strings.get(3), strings.get(4), strings.get(5))


def _iter_payloads(read: Any) -> Iterator[tuple[int, bytes | memoryview]]:
    """(offset, payload) of each logical record; reassembles dmlc multi-part records."""
    offset = 0
    parts: list[bytes | memoryview] = []
    first = 0
    while True:
        header = read(8)
        if not header:
            break
        if len(header) < 8:
            raise RecordIOError(offset, f"truncated record header ({len(header)} of 8 bytes)")
        magic, word = struct.unpack("<II", header)
        if magic != MAGIC:
            raise RecordIOError(offset, f"bad magic 0x{magic:08x} (expected 0x{MAGIC:08x})")
        cflag, length = word >> 29, word & _LENGTH_MASK
        payload = read(length)
        if len(payload) < length:
            raise RecordIOError(
                offset, f"truncated record: length {length} but only {len(payload)} bytes left"
            )
        pad = (-length) % 4
        if pad:
            read(pad)  # a missing final pad at end of stream is tolerated
        if cflag == 0:
            if parts:
                raise RecordIOError(
                    offset, "complete record (cflag 0) inside an unfinished multi-part record"
                )
            yield offset, payload
        elif cflag == 1:
            if parts:
                raise RecordIOError(
                    offset, "multi-part start (cflag 1) inside an unfinished multi-part record"
                )
            parts, first = [payload], offset
        elif cflag in (2, 3):
            if not parts:
                raise RecordIOError(offset, f"multi-part continuation (cflag {cflag}) without a start")
            parts += [_MAGIC_BYTES, payload]
            if cflag == 3:
                yield first, b"".join(parts)
                parts = []
        else:
            raise RecordIOError(offset, f"unsupported cflag {cflag}")
        offset += 8 + length + pad
    if parts:
        raise RecordIOError(offset, "stream ends inside a multi-part record (no cflag 3 part)")


def _stream_reader(stream: BinaryIO) -> Any:
    """``read(n)`` that returns n bytes unless at EOF (network streams may return short reads)."""

    def read(n: int) -> bytes:
        out = stream.read(n)
        got = len(out)
        if got == n or not out:
            return out
        parts = [out]
        while got < n:
            more = stream.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        return b"".join(parts)

    return read


def _view_reader(data: bytes | bytearray | memoryview) -> Any:
    view = memoryview(data).cast("B")
    pos = 0

    def read(n: int) -> memoryview:
        nonlocal pos
        out = view[pos : pos + n]
        pos += len(out)
        return out

    return read


def iter_records(source: bytes | bytearray | memoryview | BinaryIO) -> Iterator[Record]:
    """Decode every record of a RecordIO-protobuf stream (bytes or a binary file object)."""
    buffered = isinstance(source, bytes | bytearray | memoryview)
    reader = _view_reader(source) if buffered else _stream_reader(source)  # type: ignore[arg-type]
    for offset, payload in _iter_payloads(reader):
        yield parse_record(payload, offset)


def record_sizes(source: bytes | bytearray | memoryview) -> np.ndarray:
    """Bytes each logical record takes in the stream (headers and padding included), in order.

    What a batch transform with ``SplitType=RecordIO`` sends: whole records, so a mini-batch's
    payload is the sum of its records' sizes. Multi-part records count as one.
    """
    buf = _to_array(source)
    try:
        starts, _ = _scan(buf)
        return np.diff(np.append(starts, buf.size)).astype(np.int64)
    except _Irregular:
        offsets = [offset for offset, _ in _iter_payloads(_view_reader(source))]
        return np.diff(np.append(np.array(offsets, np.int64), buf.size)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# vectorised readers


class _Irregular(Exception):
    """The stream is valid but not laid out like the SDK's output: use the general parser."""


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
    if buf.size % 4:
        raise _Irregular
    words = buf.view("<u4")
    cand = np.flatnonzero(words == MAGIC)
    if cand.size == 0 or cand[0] != 0:
        raise _Irregular
    lw = words[np.minimum(cand + 1, words.size - 1)].astype(np.int64)
    nxt = cand + 2 + ((lw & _LENGTH_MASK) + 3) // 4
    if np.array_equal(nxt[:-1], cand[1:]) and nxt[-1] == words.size and not np.any(lw >> 29):
        return cand * 4, lw & _LENGTH_MASK
    # a magic word inside a payload: follow the chain from the first record
    starts, pos = [], 0
    while pos < words.size:
        if words[pos] != MAGIC or pos + 1 >= words.size or int(words[pos + 1]) >> 29:
            raise _Irregular
        starts.append(pos)
        pos += 2 + ((int(words[pos + 1]) & _LENGTH_MASK) + 3) // 4
    if pos != words.size:
        raise _Irregular
    st = np.array(starts, np.int64)
    return st * 4, words[st + 1].astype(np.int64) & _LENGTH_MASK


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
        val = (b & 0x7F).astype(_U64)
        pos = pos + 1
        more = np.flatnonzero(b >= 0x80)
        shift = 7
        while more.size:
            if shift > 63 or int(pos[more].max()) >= self.limit:
                raise _Irregular
            b = self.buf[pos[more]]
            val[more] |= (b & 0x7F).astype(_U64) << _U64(shift)
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

    def expect_key(self) -> None:
        idx = np.minimum(self.pos[:, None] + np.arange(len(_KEY)), self.limit - 1)
        if not np.all(self.buf[idx] == np.frombuffer(_KEY, np.uint8)):
            raise _Irregular
        self.pos = self.pos + len(_KEY)

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


def _values(buf, start, length, kind) -> tuple[np.ndarray, np.ndarray]:
    raw = _gather(buf, start, length)
    if kind == "Int32":
        counts = _varint_counts(raw, length)
        return _decode_varints(raw).astype(np.uint32).view(np.int32), counts
    size = _FLOAT[kind].itemsize
    if np.any(length % size):
        raise _Irregular
    return raw.view(_FLOAT[kind]).astype(_NUMPY[kind]), length // size


def _parse_all(buf: np.ndarray) -> dict[str, Any]:
    starts, lengths = _scan(buf)
    n = starts.size
    out: dict[str, Any] = {"n": n, "kind": None, "label_kind": None}
    if n == 0:
        return out
    end = starts + 8 + lengths
    cur = _Cursor(buf, starts + 8)
    cur.expect(0x0A)
    entry_end = cur.varint() + cur.pos
    cur.expect_key()
    cur.expect(0x12)
    value_end = cur.varint() + cur.pos
    tags = cur.byte(cur.pos)
    if tags[0] not in _KIND or not np.all(tags == tags[0]) or not np.array_equal(value_end, entry_end):
        raise _Irregular
    kind = _KIND[int(tags[0])]
    cur.pos = cur.pos + 1
    tensor_end = cur.varint() + cur.pos
    if not np.array_equal(tensor_end, value_end):
        raise _Irregular
    v_start, v_len = cur.optional(0x0A, tensor_end)
    k_start, k_len = cur.optional(0x12, tensor_end)
    s_start, s_len = cur.optional(0x1A, tensor_end)
    if not np.array_equal(cur.pos, tensor_end):
        raise _Irregular
    out["kind"] = kind
    out["values"], out["counts"] = _values(buf, v_start, v_len, kind)
    kraw = _gather(buf, k_start, k_len)
    out["key_counts"] = _varint_counts(kraw, k_len)
    out["keys"] = _decode_varints(kraw)
    sraw = _gather(buf, s_start, s_len)
    out["shape_counts"] = _varint_counts(sraw, s_len)
    out["shapes"] = _decode_varints(sraw)
    has_label = (cur.pos < end) & (cur.byte(cur.pos) == 0x12)
    if np.any(has_label):
        if not np.all(has_label):
            raise _Irregular
        cur.pos = cur.pos + 1
        label_end = cur.varint() + cur.pos
        cur.expect_key()
        cur.expect(0x12)
        lvalue_end = cur.varint() + cur.pos
        ltags = cur.byte(cur.pos)
        if (
            ltags[0] not in _KIND
            or not np.all(ltags == ltags[0])
            or not np.array_equal(lvalue_end, label_end)
        ):
            raise _Irregular
        lkind = _KIND[int(ltags[0])]
        cur.pos = cur.pos + 1
        lt_end = cur.varint() + cur.pos
        lv_start, lv_len = cur.optional(0x0A, lt_end)
        if not np.array_equal(cur.pos, lt_end) or not np.array_equal(lt_end, label_end):
            raise _Irregular
        lvalues, lcounts = _values(buf, lv_start, lv_len, lkind)
        if not np.all(lcounts == 1):
            raise _Irregular
        out["label_kind"], out["labels"] = lkind, lvalues
    if not np.array_equal(cur.pos, end):
        raise _Irregular
    return out


_UNIFORM_MAX_GROUPS = 64  # distinct record lengths the one-layout fast path handles
_UNIFORM_CHUNK = 1 << 16  # records gathered at a time when record lengths differ


def _template(p: bytes) -> dict[str, Any]:
    """Byte layout of one record payload written like the SDK's sparse records, else ``_Irregular``.

    Exactly: a "values" feature entry holding a Float32/Float64 tensor with packed values, keys
    and shape (in that order), then optionally a "values" label entry with one Float32/Float64
    value, and nothing else. Returns the payload offsets of the value, key and label bytes.
    """

    def varint(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            if pos >= len(p) or shift > 63:
                raise _Irregular
            b = p[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value, pos
            shift += 7

    def entry(pos: int, tag: int) -> tuple[str, int, int]:
        """(tensor kind, tensor content start, entry end) of a map entry "values" -> tensor."""
        if pos >= len(p) or p[pos] != tag:
            raise _Irregular
        size, pos = varint(pos + 1)
        end = pos + size
        if p[pos : pos + 9] != _KEY + b"\x12":
            raise _Irregular
        vsize, q = varint(pos + 9)
        if q + vsize != end or q >= end or p[q] not in (_TAG["Float32"], _TAG["Float64"]):
            raise _Irregular
        kind = _KIND[p[q]]
        tsize, t = varint(q + 1)
        if t + tsize != end:
            raise _Irregular
        return kind, t, end

    def fields(t: int, end: int, numbers: tuple[int, ...]) -> dict[int, tuple[int, int]]:
        out = {}
        for num in numbers:
            if t < end and p[t] == (num << 3 | 2):
                size, s = varint(t + 1)
                out[num], t = (s, size), s + size
        if t != end or set(out) != set(numbers):
            raise _Irregular
        return out

    kind, t, end = entry(0, 0x0A)
    f = fields(t, end, (1, 2, 3))
    size = _FLOAT[kind].itemsize
    (voff, vlen), (koff, klen), (soff, slen) = f[1], f[2], f[3]
    if vlen % size or vlen == 0:
        raise _Irregular
    try:
        shape = _decode_varints(np.frombuffer(p[soff : soff + slen], np.uint8))
    except ValueError:
        raise _Irregular from None
    out = {"kind": kind, "m": vlen // size, "voff": voff, "vlen": vlen, "koff": koff, "klen": klen}
    out["shape"], out["label"] = tuple(int(s) for s in shape), None
    if end < len(p):
        lkind, lt, lend = entry(end, 0x12)
        (loff, llen) = fields(lt, lend, (1,))[1]
        if lend != len(p) or llen != _FLOAT[lkind].itemsize:
            raise _Irregular
        out["label"] = (lkind, loff, llen)
    return out


def _fixed_varints(kb: np.ndarray, m: int) -> np.ndarray:
    """(r, width) bytes holding ``m`` varints per row -> (r, m) int64 values."""
    term = kb[0] < 0x80
    if not (term[-1] and int(term.sum()) == m and np.all((kb < 0x80) == term)):
        # varint lengths differ between rows (or the bytes are not m varints): the general decoder
        flat = np.ascontiguousarray(kb).reshape(-1)
        t = kb < 0x80
        if not (t[:, -1].all() and np.all(t.sum(axis=1) == m)):
            raise _Irregular
        return _decode_varints(flat).astype(np.int64).reshape(-1, m)
    out = np.empty((kb.shape[0], m), np.int64)
    v, cols = 0, []
    for j, last in enumerate(term.tolist()):
        cols.append(kb[:, j])
        if last:  # the bytes in cols are one varint
            value = cols[0].astype(np.int64)
            if len(cols) > 1:
                value &= 0x7F
                for i, col in enumerate(cols[1:], 1):
                    value |= (col & 0x7F).astype(np.int64) << (7 * i)
            out[:, v] = value
            v, cols = v + 1, []
    return out


def _uniform_sparse(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> dict[str, Any]:
    """Fast path of ``read_sparse`` for files whose records share one layout (same types, same
    number of non-zeros, as the SDK and ``encode_sparse`` write one-hot rows).

    Records are grouped by length; the first record of a group is parsed as the template, and
    every record of the group must equal it byte for byte outside its value, key and label bytes
    (so it parses the same way). The key bytes must hold exactly ``m`` varints. Anything else
    raises ``_Irregular`` and the general paths take over.
    """
    n = starts.size
    lo, hi = int(lengths.min()), int(lengths.max())
    if hi - lo > 4096:
        raise _Irregular
    present = np.flatnonzero(np.bincount(lengths - lo)) + lo
    if present.size > _UNIFORM_MAX_GROUPS:
        raise _Irregular
    words = buf.view("<u4")
    padded = present + (-present) % 4
    # all records padded to one size (e.g. 53- and 54-byte payloads): the file is an (n, size) matrix
    stride = int(padded[0]) + 8 if np.all(padded == padded[0]) else 0
    table = words.reshape(n, stride // 4) if stride else None
    first = None
    for length in present.tolist():
        sel = None if present.size == 1 else np.flatnonzero(lengths == length)
        i0 = 0 if sel is None else int(sel[0])
        s0 = int(starts[i0])
        t = _template(buf[s0 + 8 : s0 + 8 + length].tobytes())
        if first is None:
            first = t
            m, kind = t["m"], t["kind"]
            data = np.empty((n, m), _NUMPY[kind])
            if len(t["shape"]) != 1:
                raise _Irregular
            n_cols = t["shape"][0]
            keys = np.empty((n, m), np.int32 if n_cols <= np.iinfo(np.int32).max else np.int64)
            label = t["label"]
            labels = None if label is None else np.empty(n, _NUMPY[label[0]])
        elif (t["m"], t["kind"], t["shape"], t["label"] and t["label"][0]) != (
            m,
            kind,
            first["shape"],
            label and label[0],
        ):
            raise _Irregular
        size = 8 + length + (-length) % 4
        row = buf[s0 : s0 + size]
        data_mask = np.zeros(size, bool)
        voff, koff, klen = 8 + t["voff"], 8 + t["koff"], t["klen"]
        data_mask[voff : voff + t["vlen"]] = True
        data_mask[koff : koff + klen] = True
        if t["label"] is not None:
            loff, llen = 8 + t["label"][1], t["label"][2]
            data_mask[loff : loff + llen] = True
        structure = np.where(data_mask, 0, 0xFF).astype(np.uint8).view("<u4")
        expected = row.view("<u4") & structure
        count = n if sel is None else sel.size
        whole = words.reshape(n, size // 4) if sel is None else None
        for c in range(0, count, _UNIFORM_CHUNK):
            if whole is not None:
                rows = slice(c, c + _UNIFORM_CHUNK)
                w = whole[rows]
            else:
                rows = sel[c : c + _UNIFORM_CHUNK]
                if table is not None:
                    w = table.take(rows, axis=0)
                else:
                    w = words.take((starts[rows] // 4)[:, None] + np.arange(size // 4))
            if w.shape[1] % 2 == 0:  # compare 8 bytes at a time
                bad = (w.view("<u8") & structure.view("<u8")) != expected.view("<u8")
            else:
                bad = (w & structure) != expected
            if bad.any():
                raise _Irregular
            b = w.view(np.uint8)
            data[rows] = b[:, voff : voff + t["vlen"]].view(_FLOAT[kind])
            kb = b[:, koff : koff + klen]
            if klen == m:  # one byte per key
                if np.any(kb >= 0x80):
                    raise _Irregular
                k = kb
            else:
                k = _fixed_varints(kb, m)
            if int(k.max()) >= n_cols:
                raise _Irregular
            keys[rows] = k
            if labels is not None:
                labels[rows] = b[:, loff : loff + llen].view(_FLOAT[label[0]])[:, 0]
    return {
        "n": n,
        "m": m,
        "values": data.reshape(-1),
        "keys": keys.reshape(-1),
        "n_cols": n_cols,
        "labels": labels,
    }


def _label_array(records: list[Record]) -> np.ndarray | None:
    labels = [r.label_values for r in records]
    if all(v is None for v in labels):
        return None
    if any(v is None or v.size != 1 for v in labels):
        raise ValueError("every record must have exactly one label value (or none has a label)")
    dtypes = {v.dtype for v in labels}  # type: ignore[union-attr]
    if len(dtypes) != 1:
        raise ValueError(f"records mix label types {sorted(map(str, dtypes))}")
    return np.concatenate(labels)  # type: ignore[arg-type]


def _feature_dtype(records: list[Record]) -> np.dtype:
    kinds = {r.features["values"].kind for r in records if "values" in r.features} - {""}
    if len(kinds) > 1:
        raise ValueError(f"records mix feature types {sorted(kinds)}")
    kind = kinds.pop() if kinds else "Float32"
    if kind not in _NUMPY:
        raise ValueError(f"unsupported feature tensor type {kind}")
    return _NUMPY[kind]


def _scan_strided(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``_scan`` for a stream whose records all pad to the size of the first one (e.g. one-hot
    rows): the headers are one column of an (n, size) view, nothing else is read. None if not."""
    if buf.size < 8 or buf.size % 4:
        return None
    words = buf.view("<u4")
    first = int(words[1])
    size = 8 + first + (-first) % 4
    if words[0] != MAGIC or first >> 29 or buf.size % size:
        return None
    table = words.reshape(-1, size // 4)
    lengths = table[:, 1].astype(np.int64)
    if not (np.all(table[:, 0] == MAGIC) and np.all((lengths + 3) // 4 == (size - 8) // 4)):
        return None  # (a length word with flag bits set fails the second test)
    return np.arange(0, buf.size, size, dtype=np.int64), lengths


def _read_uniform_sparse(buf: np.ndarray) -> tuple[Any, ...]:
    scanned = _scan_strided(buf)
    starts, lengths = scanned if scanned is not None else _scan(buf)
    if starts.size == 0:
        raise _Irregular
    p = _uniform_sparse(buf, starts, lengths)
    n, m = p["n"], p["m"]
    indptr = np.arange(0, n * m + 1, m, dtype=np.int64)
    return p["values"], p["keys"], indptr, (n, p["n_cols"]), p["labels"]


def read_sparse(source: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray | None]:
    """All records as CSR: ``(data, indices, indptr, (n_records, n_cols), labels or None)``.

    Dtypes are kept (float32/float64/int32 data and labels). ``n_cols`` comes from the records'
    shape; dense records are read as rows with keys 0..len-1.
    """
    buf = _to_array(source)
    try:
        return _read_uniform_sparse(buf)
    except _Irregular:
        pass
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
            data = p["values"]
            keys = p["keys"]
        else:
            data, keys = np.zeros(0, np.float32), np.zeros(0, _U64)
        if keys.size and int(keys.max()) >= n_cols:
            raise _Irregular
        labels = p.get("labels")
    except _Irregular:
        records = list(iter_records(buf.tobytes()))
        n = len(records)
        dtype = _feature_dtype(records)
        data = np.concatenate([r.values.astype(dtype) for r in records]) if n else np.zeros(0, dtype)
        keys = (
            np.concatenate(
                [
                    r.keys if r.keys.size or not r.values.size else np.arange(r.values.size, dtype=_U64)
                    for r in records
                ]
            )
            if n
            else np.zeros(0, _U64)
        )
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum([r.values.size for r in records], out=indptr[1:])
        if indptr[-1] != keys.size:
            raise ValueError("a record has a different number of keys and values") from None
        shapes = {r.shape[0] for r in records if r.shape}
        if len(shapes) > 1:
            raise ValueError(f"records have different shapes {sorted(shapes)}") from None
        n_cols = shapes.pop() if shapes else max((r.values.size for r in records), default=0)
        if keys.size and int(keys.max()) >= n_cols:
            raise ValueError(f"a key is >= the number of columns {n_cols}") from None
        labels = _label_array(records)
    index_dtype = np.int32 if n_cols <= np.iinfo(np.int32).max else np.int64
    return data, keys.astype(index_dtype), indptr, (n, n_cols), labels


def read_dense(source: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """All records as a 2-D array ``(n_records, n_features)`` and the labels (or None); dtypes kept."""
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
        records = list(iter_records(buf.tobytes()))
        dtype = _feature_dtype(records)
        widths = {(r.shape[0] if r.keys.size and r.shape else r.values.size) for r in records}
        if len(widths) > 1:
            raise ValueError(f"records have different lengths {sorted(widths)}") from None
        width = widths.pop() if widths else 0
        out = np.zeros((len(records), width), dtype)
        for i, r in enumerate(records):
            if r.keys.size:
                out[i, r.keys.astype(np.int64)] = r.values
            else:
                out[i] = r.values
        return out, _label_array(records)
