"""The bytes of RecordIO-protobuf (docs/formats.md §1), named: framing, record.proto tags, varints.

RecordIO frame (dmlc): ``magic`` (uint32 LE), ``lrecord = cflag << 29 | length`` (uint32 LE), the
payload, zero padding to a multiple of 4. The payload is a protobuf ``aialgs.data.Record``
(``record.proto``, proto2); every field the writers emit is length-delimited, so every tag below
is ``field_number << 3 | 2`` and fits one byte.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

# --- RecordIO framing (dmlc-core recordio.h) ------------------------------------------------

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER_BYTES = 8  # magic + lrecord
ALIGN = 4  # payloads are zero-padded to a multiple of 4 bytes
CFLAG_SHIFT = 29
LENGTH_MASK = (1 << CFLAG_SHIFT) - 1
# cflag: a whole record, or the start / middle / end part of a record dmlc split at a magic word
CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END = 0, 1, 2, 3
CFLAGS = (CFLAG_WHOLE, CFLAG_START, CFLAG_MIDDLE, CFLAG_END)


def padding(length: int) -> int:
    """Zero bytes after a payload of ``length`` bytes."""
    return -length % ALIGN


def header(length: int, cflag: int = CFLAG_WHOLE) -> bytes:
    """The 8-byte record header."""
    return MAGIC_BYTES + struct.pack("<I", cflag << CFLAG_SHIFT | length)


# --- protobuf wire types and record.proto field numbers ---------------------------------------

WIRE_VARINT, WIRE_FIXED64, WIRE_LEN, WIRE_FIXED32 = 0, 1, 2, 5


def tag(field: int, wire_type: int = WIRE_LEN) -> int:
    return field << 3 | wire_type


# message Record { map<string, Value> features = 1; map<string, Value> label = 2;
#                  optional string uid = 3; metadata = 4; configuration = 5; }
RECORD_FEATURES, RECORD_LABEL, RECORD_UID, RECORD_METADATA, RECORD_CONFIGURATION = 1, 2, 3, 4, 5
# a map<string, Value> entry: message { string key = 1; Value value = 2; }
MAP_KEY, MAP_VALUE = 1, 2
# message Value { oneof value { Float32Tensor float32_tensor = 2; Float64Tensor float64_tensor = 3;
#                               Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
VALUE_FIELD = {"Float32": 2, "Float64": 3, "Int32": 7}
VALUE_BYTES = 9
# message Float32Tensor / Float64Tensor / Int32Tensor { repeated <type> values = 1 [packed];
#                  repeated uint64 keys = 2 [packed]; repeated uint64 shape = 3 [packed]; }
TENSOR_VALUES, TENSOR_KEYS, TENSOR_SHAPE = 1, 2, 3
# message Bytes { repeated bytes value = 1; optional string content_type = 2; }
BYTES_VALUE, BYTES_CONTENT_TYPE = 1, 2

FEATURES_TAG = tag(RECORD_FEATURES)  # 0x0a
LABEL_TAG = tag(RECORD_LABEL)  # 0x12
ENTRY_VALUE_TAG = tag(MAP_VALUE)  # 0x12
VALUES_TAG, KEYS_TAG, SHAPE_TAG = tag(TENSOR_VALUES), tag(TENSOR_KEYS), tag(TENSOR_SHAPE)  # 0a 12 1a
TENSOR_TAG = {kind: tag(number) for kind, number in VALUE_FIELD.items()}  # Float32 12, Float64 1a, Int32 3a
KIND_OF_TAG = {t: kind for kind, t in TENSOR_TAG.items()}
KIND_OF_FIELD = {number: kind for kind, number in VALUE_FIELD.items()}

MAP_KEY_NAME = "values"  # the key the built-in algorithms use for features and label
MAP_KEY_BYTES = bytes([tag(MAP_KEY), len(MAP_KEY_NAME)]) + MAP_KEY_NAME.encode()  # 0a 06 "values"

# --- tensor element types ---------------------------------------------------------------------

FLOAT_WIRE_DTYPE: dict[str, np.dtype] = {
    "Float32": np.dtype("<f4"),
    "Float64": np.dtype("<f8"),
}  # packed fixed-width
NUMPY_DTYPE: dict[str, np.dtype] = {
    "Float32": np.dtype(np.float32),
    "Float64": np.dtype(np.float64),
    "Int32": np.dtype(np.int32),
}
FLOAT32_QUIET_NAN_BIT = np.uint32(0x00400000)
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
U64 = np.uint64


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


def float_bytes(values: Any, kind: str) -> np.ndarray:
    """Little-endian bytes as protobuf writes them; float32 NaNs get their quiet bit like the SDK
    (its values pass through a Python float)."""
    out = np.asarray(values).astype(FLOAT_WIRE_DTYPE[kind], copy=True)
    if kind == "Float32":
        nan = np.isnan(out)
        if nan.any():
            out.view("<u4")[nan] |= FLOAT32_QUIET_NAN_BIT
    return out.view(np.uint8)


def int32_as_u64(values: Any) -> np.ndarray:
    """int32 varint payload: negatives are 10-byte two's complement (protobuf int32)."""
    v = np.asarray(values).astype(np.int64, copy=False)
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < INT32_MIN or hi > INT32_MAX:
            raise ValueError(f"Value out of range: {lo if lo < INT32_MIN else hi}")
    return v.view(U64)


# --- varints ----------------------------------------------------------------------------------

VARINT_MAX_BYTES = 10
_VARINT_LIMITS = [1 << (7 * i) for i in range(1, VARINT_MAX_BYTES)]


def varint_bytes(value: int) -> bytes:
    """A base-128 varint, low group first (negative ints as their 64-bit two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_length(value: int) -> int:
    return len(varint_bytes(value))


def varint_lengths(x: np.ndarray) -> np.ndarray:
    """Varint length in bytes of every element of a uint64 array (int64 result)."""
    n = np.ones(x.shape, np.int64)
    if x.size:
        top = int(x.max())
        for limit in _VARINT_LIMITS:
            if limit > top:
                break
            n += x >= U64(limit)
    return n


def decode_varints(b: np.ndarray) -> np.ndarray:
    """Packed varints (uint8 array) -> uint64 array. Raises ValueError on a truncated varint."""
    if b.size == 0:
        return np.zeros(0, U64)
    term = b < 0x80
    if not term[-1]:
        raise ValueError("truncated varint")
    ends = np.flatnonzero(term)
    if ends.size == b.size:
        return b.astype(U64)
    counts = np.diff(ends, prepend=-1)
    if int(counts.max()) > VARINT_MAX_BYTES:
        raise ValueError(f"varint longer than {VARINT_MAX_BYTES} bytes")
    starts = ends - counts + 1
    shift = ((np.arange(b.size) - np.repeat(starts, counts)) * 7).astype(U64)
    return np.add.reduceat((b & 0x7F).astype(U64) << shift, starts)


def shape_field(n_cols: int) -> bytes:
    """``shape = [n_cols]``: the last field of every sparse tensor."""
    return bytes([SHAPE_TAG]) + varint_bytes(varint_length(n_cols)) + varint_bytes(n_cols)
