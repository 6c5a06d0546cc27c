"""The reference: a plain, record-by-record encoder and decoder. This module is the spec.

Encoder: what sagemaker 2.257.7 writes (``write_spmatrix_to_sparse_tensor`` /
``write_numpy_to_dense_tensor``, docs/formats.md §1), one ``Record`` per row:

* features: map entry ``"values"`` -> a tensor typed by ``resolve_type`` (float32 -> Float32,
  float64 -> Float64, int64 -> Int32), holding the row's values; a sparse row also holds its
  column indices as ``keys`` and ``shape = [n_cols]``;
* label (when labels are given): map entry ``"values"`` -> a tensor holding the row's one label;
* fields in field-number order, empty repeated fields omitted (an empty sparse row is its shape
  alone), stored entries written as stored (explicit zeros, order, duplicates);
* RecordIO framing with cflag 0 and no splitting of payloads that contain the magic.

Decoder: any valid stream, tolerantly. The length word's low 29 bits are the length; dmlc
multi-part records (cflag 1, 2.., 3) are joined with the magic word in between; unpacked
repeated fields and unknown fields are accepted. Errors are ``RecordIOError`` with the offset.

The vectorised writer and reader of this package produce exactly what these functions produce
(the tests check "fast == reference"); the SDK itself is the oracle for the encoder.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from . import wire
from .wire import RecordIOError, resolve_type

Csr = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]

# --------------------------------------------------------------------------------------------
# inputs (shared with the vectorised writer)


def as_csr(csr: Any) -> Csr:
    """``(data, indices, indptr, (n_rows, n_cols))`` of a scipy sparse matrix/array (``tocsr()``)
    or of a plain ``(data, indices, indptr, shape)`` tuple, checked."""
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
        return data, indices, indptr, shape
    raise TypeError("Array must be sparse: a scipy sparse matrix or a (data, indices, indptr, shape) tuple")


def as_matrix(array: Any) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    return array


def check_labels(labels: Any, n_rows: int) -> tuple[np.ndarray | None, str | None]:
    """Labels as a 1-D array of one per row and their tensor kind, or ``(None, None)``."""
    if labels is None:
        return None, None
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError("Labels must be a Vector")
    if labels.shape[0] != n_rows:
        # The SDK also accepts len(labels) == n_cols and then fails or silently drops labels.
        raise ValueError(f"Label shape {labels.shape} not compatible with {n_rows} rows")
    return labels, resolve_type(labels.dtype)


# --------------------------------------------------------------------------------------------
# encoder


def length_delimited(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + wire.varint_bytes(len(content)) + content


def packed_varints(values: Any) -> bytes:
    return b"".join(wire.varint_bytes(int(v)) for v in values)


def encode_tensor(kind: str, values: np.ndarray, keys: np.ndarray | None = None, shape: tuple = ()) -> bytes:
    """A Float32/Float64/Int32 tensor message: values, keys, shape (each omitted when empty)."""
    packed = (
        packed_varints(wire.int32_as_u64(values))
        if kind == "Int32"
        else wire.float_bytes(values, kind).tobytes()
    )
    out = length_delimited(wire.VALUES_TAG, packed) if len(values) else b""
    if keys is not None and len(keys):
        out += length_delimited(wire.KEYS_TAG, packed_varints(np.asarray(keys).astype(wire.U64)))
    if shape:
        out += length_delimited(wire.SHAPE_TAG, packed_varints(shape))
    return out


def encode_map_entry(record_tag: int, kind: str, tensor: bytes) -> bytes:
    """``features`` or ``label`` entry: key "values" -> Value holding the tensor."""
    value = length_delimited(wire.TENSOR_TAG[kind], tensor)
    return length_delimited(record_tag, wire.MAP_KEY_BYTES + length_delimited(wire.ENTRY_VALUE_TAG, value))


def frame(payload: bytes) -> bytes:
    """One RecordIO record as the SDK frames it (cflag 0)."""
    return wire.header(len(payload)) + payload + b"\0" * wire.padding(len(payload))


def _record(kind: str, tensor: bytes, label_kind: str | None, label: Any) -> bytes:
    payload = encode_map_entry(wire.FEATURES_TAG, kind, tensor)
    if label_kind is not None:
        payload += encode_map_entry(
            wire.LABEL_TAG, label_kind, encode_tensor(label_kind, np.asarray([label]))
        )
    if len(payload) > wire.LENGTH_MASK:
        raise ValueError(f"a record of {len(payload)} bytes does not fit RecordIO's 29-bit length")
    return frame(payload)


def encode_sparse(csr: Any, labels: Any = None) -> bytes:
    """Like the SDK's ``write_spmatrix_to_sparse_tensor``: one sparse record per CSR row."""
    data, indices, indptr, (n_rows, n_cols) = as_csr(csr)
    labels, label_kind = check_labels(labels, n_rows)
    kind = resolve_type(data.dtype)
    out = []
    for i in range(n_rows):
        row = slice(int(indptr[i]), int(indptr[i + 1]))
        tensor = encode_tensor(kind, data[row], indices[row], (n_cols,))
        out.append(_record(kind, tensor, label_kind, None if labels is None else labels[i]))
    return b"".join(out)


def encode_dense(array: Any, labels: Any = None) -> bytes:
    """Like the SDK's ``write_numpy_to_dense_tensor``: one dense record per row."""
    array = as_matrix(array)
    labels, label_kind = check_labels(labels, array.shape[0])
    kind = resolve_type(array.dtype)
    return b"".join(
        _record(kind, encode_tensor(kind, row), label_kind, None if labels is None else labels[i])
        for i, row in enumerate(array)
    )


# --------------------------------------------------------------------------------------------
# decoder


@dataclass(frozen=True, slots=True)
class Tensor:
    """One ``Value`` of a record map. ``kind`` is Float32/Float64/Int32/Bytes ("" if unset)."""

    kind: str
    values: np.ndarray  # float32 / float64 / int32 as stored; object array of bytes for Bytes
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, wire.U64))  # empty = dense
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
        t = self.features.get(wire.MAP_KEY_NAME)
        return t.values if t is not None else np.zeros(0, np.float32)

    @property
    def keys(self) -> np.ndarray:
        t = self.features.get(wire.MAP_KEY_NAME)
        return t.keys if t is not None else np.zeros(0, wire.U64)

    @property
    def shape(self) -> tuple[int, ...]:
        t = self.features.get(wire.MAP_KEY_NAME)
        return t.shape if t is not None else ()

    @property
    def label_values(self) -> np.ndarray | None:
        t = self.label.get(wire.MAP_KEY_NAME)
        return None if t is None else t.values


Field = tuple[int, int, Any, int]  # field number, wire type, payload, absolute offset of the payload


class _Message:
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
            if shift >= 7 * wire.VARINT_MAX_BYTES:
                raise self.fail(f"varint longer than {wire.VARINT_MAX_BYTES} bytes")

    def fields(self) -> Iterator[Field]:
        while self.pos < len(self.buf):
            key = self.varint()
            num, wt = key >> 3, key & 7
            start = self.pos
            if wt == wire.WIRE_VARINT:
                yield num, wt, self.varint(), self.base + start
            elif wt in (wire.WIRE_FIXED64, wire.WIRE_FIXED32):
                size = 8 if wt == wire.WIRE_FIXED64 else 4
                if self.pos + size > len(self.buf):
                    raise self.fail("truncated fixed-width field")
                self.pos += size
                yield num, wt, self.buf[start : self.pos], self.base + start
            elif wt == wire.WIRE_LEN:
                size = self.varint()
                start = self.pos
                if start + size > len(self.buf):
                    raise self.fail(f"field {num} of {size} bytes runs past the end of its message")
                self.pos += size
                yield num, wt, self.buf[start : self.pos], self.base + start
            else:
                raise self.fail(f"unsupported protobuf wire type {wt} (field {num})")


def _parse_tensor(buf: Any, base: int, kind: str) -> Tensor:
    values: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    shape: list[np.ndarray] = []
    wire_dtype = wire.FLOAT_WIRE_DTYPE.get(kind)
    for num, wt, payload, off in _Message(buf, base).fields():
        target = {wire.TENSOR_VALUES: values, wire.TENSOR_KEYS: keys, wire.TENSOR_SHAPE: shape}.get(num)
        if target is None:
            continue
        raw = np.frombuffer(payload, np.uint8) if wt != wire.WIRE_VARINT else None
        if num == wire.TENSOR_VALUES and wire_dtype is not None:
            if raw is None or raw.size % wire_dtype.itemsize:
                raise RecordIOError(off, f"bad {kind} values field")
            target.append(raw.view(wire_dtype).astype(wire_dtype.newbyteorder("=")))
        elif wt == wire.WIRE_VARINT:
            target.append(np.array([payload], wire.U64))
        elif wt == wire.WIRE_LEN:
            try:
                target.append(wire.decode_varints(raw))  # type: ignore[arg-type]
            except ValueError as e:
                raise RecordIOError(off, f"{e} in packed field {num}") from None
        else:
            raise RecordIOError(off, f"unexpected wire type {wt} for field {num}")
    if wire_dtype is not None:
        vals = np.concatenate(values) if values else np.zeros(0, wire.NUMPY_DTYPE[kind])
    else:
        ints = np.concatenate(values) if values else np.zeros(0, wire.U64)
        vals = ints.astype(np.uint32).view(np.int32)  # protobuf int32 keeps the low 32 bits
    k = np.concatenate(keys) if keys else np.zeros(0, wire.U64)
    s = tuple(int(v) for v in np.concatenate(shape)) if shape else ()
    return Tensor(kind, vals, k, s)


def _parse_value(buf: Any, base: int) -> Tensor:
    tensor = Tensor("", np.zeros(0, np.float32))
    for num, wt, payload, off in _Message(buf, base).fields():
        if wt != wire.WIRE_LEN:
            continue
        if num in wire.KIND_OF_FIELD:
            tensor = _parse_tensor(payload, off, wire.KIND_OF_FIELD[num])
        elif num == wire.VALUE_BYTES:
            items: list[bytes] = []
            content_type = None
            for n2, w2, p2, _ in _Message(payload, off).fields():
                if n2 == wire.BYTES_VALUE and w2 == wire.WIRE_LEN:
                    items.append(bytes(p2))
                elif n2 == wire.BYTES_CONTENT_TYPE and w2 == wire.WIRE_LEN:
                    content_type = bytes(p2).decode("utf-8", "replace")
            arr = np.empty(len(items), object)
            arr[:] = items
            tensor = Tensor("Bytes", arr, content_type=content_type)
    return tensor


def _parse_entry(buf: Any, base: int) -> tuple[str, Tensor]:
    key, value = "", Tensor("", np.zeros(0, np.float32))
    for num, wt, payload, off in _Message(buf, base).fields():
        if num == wire.MAP_KEY and wt == wire.WIRE_LEN:
            key = bytes(payload).decode("utf-8", "replace")
        elif num == wire.MAP_VALUE and wt == wire.WIRE_LEN:
            value = _parse_value(payload, off)
    return key, value


def parse_record(payload: bytes | memoryview, offset: int = 0, payload_offset: int | None = None) -> Record:
    """Decode one protobuf ``Record`` payload (no RecordIO framing)."""
    base = offset + wire.HEADER_BYTES if payload_offset is None else payload_offset
    features: dict[str, Tensor] = {}
    label: dict[str, Tensor] = {}
    strings: dict[int, str] = {}
    for num, wt, data, off in _Message(payload, base).fields():
        if wt != wire.WIRE_LEN:
            continue
        if num in (wire.RECORD_FEATURES, wire.RECORD_LABEL):
            key, value = _parse_entry(data, off)
            (features if num == wire.RECORD_FEATURES else label)[key] = value
        elif num in (wire.RECORD_UID, wire.RECORD_METADATA, wire.RECORD_CONFIGURATION):
            strings[num] = bytes(data).decode("utf-8", "replace")
    return Record(
        features,
        label,
        offset,
        strings.get(wire.RECORD_UID),
        strings.get(wire.RECORD_METADATA),
        strings.get(wire.RECORD_CONFIGURATION),
    )


Source = bytes | bytearray | memoryview | BinaryIO
Reader = Callable[[int], bytes | memoryview]


def _stream_reader(stream: BinaryIO) -> Reader:
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


def _view_reader(data: bytes | bytearray | memoryview) -> Reader:
    view = memoryview(data).cast("B")
    pos = 0

    def read(n: int) -> memoryview:
        nonlocal pos
        out = view[pos : pos + n]
        pos += len(out)
        return out

    return read


def _reader(source: Source) -> Reader:
    if isinstance(source, bytes | bytearray | memoryview):
        return _view_reader(source)
    return _stream_reader(source)


def iter_frames(source: Source) -> Iterator[tuple[int, int, bytes | memoryview]]:
    """``(offset, cflag, part)`` of each physical record: the dmlc header checked, padding skipped."""
    read = _reader(source)
    offset = 0
    while True:
        head = read(wire.HEADER_BYTES)
        if not head:
            return
        if len(head) < wire.HEADER_BYTES:
            raise RecordIOError(offset, f"truncated record header ({len(head)} of {wire.HEADER_BYTES} bytes)")
        magic, word = struct.unpack("<II", head)
        if magic != wire.MAGIC:
            raise RecordIOError(offset, f"bad magic 0x{magic:08x} (expected 0x{wire.MAGIC:08x})")
        cflag, length = word >> wire.CFLAG_SHIFT, word & wire.LENGTH_MASK
        payload = read(length)
        if len(payload) < length:
            raise RecordIOError(
                offset, f"truncated record: length {length} but only {len(payload)} bytes left"
            )
        pad = wire.padding(length)
        if pad:
            read(pad)  # a missing final pad at end of stream is tolerated
        yield offset, cflag, payload
        offset += wire.HEADER_BYTES + length + pad


def iter_payloads(source: Source) -> Iterator[tuple[int, bytes | memoryview]]:
    """``(offset, payload)`` of each logical record; dmlc multi-part records are reassembled.

    cflag 0 is a whole record; 1 starts a multi-part record, 2 continues it and 3 ends it. The
    parts were split at occurrences of the magic number in the payload, which joins them again.
    """
    parts: list[bytes | memoryview] = []
    first = end = 0
    for offset, cflag, payload in iter_frames(source):
        end = offset + wire.HEADER_BYTES + len(payload) + wire.padding(len(payload))
        if cflag not in wire.CFLAGS:
            raise RecordIOError(offset, f"unsupported cflag {cflag}")
        if cflag in (wire.CFLAG_WHOLE, wire.CFLAG_START) and parts:
            raise RecordIOError(offset, f"{_CFLAG_NAMES[cflag]} inside an unfinished multi-part record")
        if cflag in (wire.CFLAG_MIDDLE, wire.CFLAG_END) and not parts:
            raise RecordIOError(offset, f"multi-part continuation (cflag {cflag}) without a start")
        if cflag == wire.CFLAG_WHOLE:
            yield offset, payload
        elif cflag == wire.CFLAG_START:
            parts, first = [payload], offset
        else:
            parts += [wire.MAGIC_BYTES, payload]
            if cflag == wire.CFLAG_END:
                yield first, b"".join(parts)
                parts = []
    if parts:
        raise RecordIOError(end, "stream ends inside a multi-part record (no cflag 3 part)")


_CFLAG_NAMES = {
    wire.CFLAG_WHOLE: "complete record (cflag 0)",
    wire.CFLAG_START: "multi-part start (cflag 1)",
}


def iter_records(source: Source) -> Iterator[Record]:
    """Decode every record of a RecordIO-protobuf stream (bytes or a binary file object)."""
    for offset, payload in iter_payloads(source):
        yield parse_record(payload, offset)


def record_sizes(source: bytes | bytearray | memoryview) -> np.ndarray:
    """Bytes each logical record takes in the stream (headers and padding included), in order."""
    offsets = np.array([offset for offset, _ in iter_payloads(source)], np.int64)
    return np.diff(np.append(offsets, len(memoryview(source).cast("B")))).astype(np.int64)


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
    kinds = {r.features[wire.MAP_KEY_NAME].kind for r in records if wire.MAP_KEY_NAME in r.features} - {""}
    if len(kinds) > 1:
        raise ValueError(f"records mix feature types {sorted(kinds)}")
    kind = kinds.pop() if kinds else "Float32"
    if kind not in wire.NUMPY_DTYPE:
        raise ValueError(f"unsupported feature tensor type {kind}")
    return wire.NUMPY_DTYPE[kind]


def index_dtype(n_cols: int) -> np.dtype:
    """CSR column index dtype of the readers: int32 while the columns fit it."""
    return np.dtype(np.int32 if n_cols <= np.iinfo(np.int32).max else np.int64)


def read_sparse(
    source: Source,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int], np.ndarray | None]:
    """All records as CSR: ``(data, indices, indptr, (n_records, n_cols), labels or None)``.

    Dtypes are kept (float32/float64/int32 data and labels). ``n_cols`` comes from the records'
    shape; dense records are read as rows with keys 0..len-1.
    """
    records = list(iter_records(source))
    n = len(records)
    dtype = _feature_dtype(records)
    data = np.concatenate([r.values.astype(dtype) for r in records]) if n else np.zeros(0, dtype)
    keys = (
        np.concatenate(
            [
                r.keys if r.keys.size or not r.values.size else np.arange(r.values.size, dtype=wire.U64)
                for r in records
            ]
        )
        if n
        else np.zeros(0, wire.U64)
    )
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum([r.values.size for r in records], out=indptr[1:])
    if indptr[-1] != keys.size:
        raise ValueError("a record has a different number of keys and values")
    shapes = {r.shape[0] for r in records if r.shape}
    if len(shapes) > 1:
        raise ValueError(f"records have different shapes {sorted(shapes)}")
    n_cols = shapes.pop() if shapes else max((r.values.size for r in records), default=0)
    if keys.size and int(keys.max()) >= n_cols:
        raise ValueError(f"a key is >= the number of columns {n_cols}")
    return data, keys.astype(index_dtype(n_cols)), indptr, (n, n_cols), _label_array(records)


def read_dense(source: Source) -> tuple[np.ndarray, np.ndarray | None]:
    """All records as a 2-D array ``(n_records, n_features)`` and the labels (or None); dtypes kept."""
    records = list(iter_records(source))
    if not records:
        return np.zeros((0, 0), np.float32), None
    dtype = _feature_dtype(records)
    widths = {(r.shape[0] if r.keys.size and r.shape else r.values.size) for r in records}
    if len(widths) > 1:
        raise ValueError(f"records have different lengths {sorted(widths)}")
    out = np.zeros((len(records), widths.pop()), dtype)
    for i, r in enumerate(records):
        if r.keys.size:
            out[i, r.keys.astype(np.int64)] = r.values
        else:
            out[i] = r.values
    return out, _label_array(records)
