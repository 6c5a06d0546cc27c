"""MXNet NDArray list files (``mx.nd.save``: FM ``params``, K-Means ``model_algo-1``), numpy only.

Layout in docs/formats.md §2. ``load`` returns a :class:`Params` dict (in file order) whose keys are
the stored names (``"arg:v"``...) or, for a file saved from a list, ``"0"``, ``"1"``, ... with
``Params.named`` False. ``Params.meta`` keeps what the values alone do not say (format version,
storage type, context, type flag, sparse storage) so ``dump(load(b)) == b`` for every file MXNet
writes. ``dump`` also takes a plain mapping (named, V2 format, cpu(0)) or a list (unnamed).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["V1_MAGIC", "V2_MAGIC", "V3_MAGIC", "ArrayMeta", "Params", "ParamsFormatError", "dump", "load"]

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8  # no storage type
V2_MAGIC = 0xF993FAC9  # what SageMaker's MXNet writes
V3_MAGIC = 0xF993FACA  # numpy shape semantics
LEGACY = 0  # ArrayMeta.magic for the pre-V1 layout (the first word is ndim, dims are uint32)
DEFAULT, ROW_SPARSE, CSR = 0, 1, 2
_NUM_AUX = {-1: 0, DEFAULT: 0, ROW_SPARSE: 1, CSR: 2}
# mshadow type flags; 12 (bfloat16) has no numpy type and is kept as raw uint16
_DTYPES = {
    0: "<f4", 1: "<f8", 2: "<f2", 3: "u1", 4: "<i4", 5: "i1", 6: "<i8",
    7: "?", 8: "<i2", 9: "<u2", 10: "<u4", 11: "<u8", 12: "<u2",
}  # fmt: skip
_FLAGS = {np.dtype(v).newbyteorder("="): k for k, v in reversed(list(_DTYPES.items()))}
_MAX_NDIM = 32


class ParamsFormatError(ValueError):
    """Bytes that are not a valid NDArray list; names the byte offset and what was expected."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"MXNet NDArray list: {reason} (at byte offset {offset})")
        self.offset = offset
        self.reason = reason


@dataclass(frozen=True)
class Storage:
    """Raw storage of a sparse array as saved: data, storage shape, aux (type flag, shape, array)."""

    data: np.ndarray
    shape: tuple[int, ...]
    aux: tuple[tuple[int, tuple[int, ...], np.ndarray], ...]


@dataclass(frozen=True)
class ArrayMeta:
    """Per-array header fields that ``dump`` needs to reproduce a file byte for byte."""

    magic: int = V2_MAGIC  # V1_MAGIC / V2_MAGIC / V3_MAGIC / LEGACY
    stype: int = DEFAULT  # 0 dense, 1 row_sparse, 2 csr (-1 for a "none" array)
    dev_type: int = 1  # 1 cpu, 2 gpu, 3 cpu_pinned, 5 cpu_shared
    dev_id: int = 0
    type_flag: int | None = None  # None: from the array's dtype
    none_shape: tuple[int, ...] | None = None  # set for a "none" (empty) NDArray: its saved shape
    storage: Storage | None = field(default=None, compare=False)


class Params(dict[str, np.ndarray | None]):
    """Arrays in file order; ``named`` False for a list saved without names (keys "0", "1", ...)."""

    def __init__(self, items: Any = (), *, named: bool = True, meta: Mapping[str, ArrayMeta] | None = None):
        super().__init__(items)
        self.named = named
        self.meta: dict[str, ArrayMeta] = dict(meta or {})


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def fail(self, reason: str, at: int | None = None) -> ParamsFormatError:
        return ParamsFormatError(self.pos if at is None else at, reason)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {what} needs {n} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def shape(self, what: str) -> tuple[int, ...]:
        ndim = self.unpack("<i", f"{what} ndim")
        if ndim < -1 or ndim > _MAX_NDIM:
            raise self.fail(f"{what}: implausible ndim {ndim}", self.pos - 4)
        if ndim <= 0:
            return (ndim,) if ndim < 0 else ()
        return struct.unpack(f"<{ndim}q", self.take(8 * ndim, f"{what} dims"))

    def array(self, type_flag: int, shape: tuple[int, ...], what: str) -> np.ndarray:
        if type_flag not in _DTYPES:
            raise self.fail(f"{what}: unknown type flag {type_flag}", self.pos)
        if any(d < 0 for d in shape):
            raise self.fail(f"{what}: negative dimension in shape {shape}", self.pos)
        dtype = np.dtype(_DTYPES[type_flag])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        raw = self.take(count * dtype.itemsize, f"{what} data")
        return np.frombuffer(raw, dtype).astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _densify(stype: int, shape: tuple[int, ...], storage: Storage) -> np.ndarray:
    out = np.zeros(shape, storage.data.dtype)
    if stype == ROW_SPARSE:
        out[storage.aux[0][2].astype(np.int64)] = storage.data
    else:  # CSR
        indptr, indices = (a[2].astype(np.int64) for a in storage.aux)
        rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
        out[rows, indices] = storage.data
    return out


def _load_array(r: _Reader, index: int) -> tuple[np.ndarray | None, ArrayMeta]:
    what = f"array {index}"
    start = r.pos
    magic = r.unpack("<I", f"{what} magic")
    stype, storage_shape, nad = DEFAULT, None, 0
    if magic in (V2_MAGIC, V3_MAGIC):
        stype = r.unpack("<i", f"{what} storage type")
        if stype not in _NUM_AUX:
            raise r.fail(f"{what}: unknown storage type {stype}", r.pos - 4)
        nad = _NUM_AUX[stype]
        if nad:
            storage_shape = r.shape(f"{what} storage shape")
        shape = r.shape(f"{what} shape")
    elif magic == V1_MAGIC:
        shape = r.shape(f"{what} shape")
    else:
        if magic > _MAX_NDIM:
            raise r.fail(f"{what}: bad NDArray magic 0x{magic:08x}", start)
        shape = struct.unpack(f"<{magic}I", r.take(4 * magic, f"{what} legacy dims"))
        magic = LEGACY
    is_none = len(shape) == 1 and shape[0] == -1 if magic == V3_MAGIC else len(shape) == 0
    if is_none:
        return None, ArrayMeta(magic=magic, stype=stype, none_shape=shape)
    if stype == -1:
        raise r.fail(f"{what}: undefined storage type on a non-empty array", start)
    dev_type = r.unpack("<i", f"{what} context")
    dev_id = r.unpack("<i", f"{what} context")
    type_flag = r.unpack("<i", f"{what} type flag")
    aux_headers = [(r.unpack("<i", f"{what} aux type"), r.shape(f"{what} aux shape")) for _ in range(nad)]
    data = r.array(type_flag, storage_shape if nad else shape, what)  # type: ignore[arg-type]
    storage = None
    if nad:
        aux = tuple((t, s, r.array(t, s, f"{what} aux data")) for t, s in aux_headers)
        storage = Storage(data, storage_shape, aux)  # type: ignore[arg-type]
        try:
            data = _densify(stype, shape, storage)
        except (IndexError, ValueError) as e:
            raise r.fail(f"{what}: inconsistent sparse storage ({e})", start) from None
    implied = _FLAGS.get(data.dtype)
    meta = ArrayMeta(
        magic, stype, dev_type, dev_id, None if implied == type_flag else type_flag, None, storage
    )
    return data, meta


def load(data: bytes | bytearray | memoryview) -> Params:
    """Parse an NDArray list file. Unnamed lists get keys "0", "1", ... and ``named=False``."""
    r = _Reader(bytes(data))
    header = r.unpack("<Q", "list header")
    if header != LIST_MAGIC:
        raise ParamsFormatError(0, f"not an NDArray list (header 0x{header:x}, expected 0x{LIST_MAGIC:x})")
    r.unpack("<Q", "reserved word")
    count = r.unpack("<Q", "array count")
    if count > len(r.data) // 4:
        raise r.fail(f"implausible array count {count}", 16)
    loaded = [_load_array(r, i) for i in range(count)]
    n_names = r.unpack("<Q", "name count")
    if n_names not in (0, count):
        raise r.fail(f"{n_names} names for {count} arrays", r.pos - 8)
    names = []
    for i in range(n_names):
        size = r.unpack("<Q", f"name {i} length")
        raw = r.take(size, f"name {i}")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail(f"name {i} is not UTF-8", r.pos - size) from None
    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} unexpected trailing bytes")
    keys = names if n_names else [str(i) for i in range(count)]
    if len(set(keys)) != len(keys):
        raise ParamsFormatError(r.pos, "duplicate array names")
    out = Params(named=bool(n_names))
    for key, (value, meta) in zip(keys, loaded, strict=True):
        out[key] = value
        out.meta[key] = meta
    return out


def _shape_bytes(shape: tuple[int, ...], legacy: bool = False) -> bytes:
    if legacy:
        return struct.pack(f"<I{len(shape)}I", len(shape), *shape)
    if len(shape) == 1 and shape[0] == -1:
        return struct.pack("<i", -1)
    return struct.pack(f"<i{len(shape)}q", len(shape), *shape)


def _flag_for(array: np.ndarray, meta: ArrayMeta) -> tuple[int, np.dtype]:
    if meta.type_flag is not None:
        return meta.type_flag, np.dtype(_DTYPES[meta.type_flag])
    flag = _FLAGS.get(array.dtype.newbyteorder("="))
    if flag is None:
        raise ValueError(f"MXNet has no type for dtype {array.dtype}")
    return flag, np.dtype(_DTYPES[flag])


def _sparse_storage(stype: int, dense: np.ndarray) -> Storage:
    if stype == ROW_SPARSE:
        rows = np.flatnonzero(dense.reshape(dense.shape[0], -1).any(axis=1))
        data = dense[rows]
        return Storage(data, data.shape, ((6, rows.shape, rows.astype(np.int64)),))
    if dense.ndim != 2:
        raise ValueError("a csr array must be 2-D")
    rows, cols = np.nonzero(dense)
    indptr = np.zeros(dense.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=dense.shape[0]), out=indptr[1:])
    data = dense[rows, cols]
    return Storage(data, data.shape, ((6, indptr.shape, indptr), (6, cols.shape, cols.astype(np.int64))))


def _dump_array(value: np.ndarray | None, meta: ArrayMeta) -> bytes:
    legacy = meta.magic == LEGACY
    if value is None:
        shape = meta.none_shape if meta.none_shape is not None else ((-1,) if meta.magic == V3_MAGIC else ())
        head = b"" if legacy else struct.pack("<I", meta.magic)
        if meta.magic in (V2_MAGIC, V3_MAGIC):
            head += struct.pack("<i", meta.stype if meta.stype in (-1, 0) else -1)
        return head + _shape_bytes(shape, legacy)
    array = np.asarray(value)
    flag, dtype = _flag_for(array, meta)
    stype = meta.stype if meta.magic in (V2_MAGIC, V3_MAGIC) else DEFAULT
    stype = DEFAULT if stype == -1 else stype
    parts = [b"" if legacy else struct.pack("<I", meta.magic)]
    if meta.magic in (V2_MAGIC, V3_MAGIC):
        parts.append(struct.pack("<i", stype))
    storage = None
    if stype != DEFAULT:
        storage = meta.storage
        if storage is None or not np.array_equal(_densify(stype, array.shape, storage), array):
            storage = _sparse_storage(stype, array)
        parts.append(_shape_bytes(storage.shape))
    parts.append(_shape_bytes(array.shape, legacy))
    parts.append(struct.pack("<iii", meta.dev_type, meta.dev_id, flag))
    if storage is not None:
        parts += [struct.pack("<i", t) + _shape_bytes(s) for t, s, _ in storage.aux]
        parts.append(np.ascontiguousarray(storage.data, dtype.newbyteorder("<")).tobytes())
        parts += [np.ascontiguousarray(a, _DTYPES[t]).tobytes() for t, _, a in storage.aux]
    else:
        parts.append(np.ascontiguousarray(array, dtype.newbyteorder("<")).tobytes())
    return b"".join(parts)


def dump(
    params: Mapping[str, np.ndarray | None] | Sequence[np.ndarray | None], *, named: bool | None = None
) -> bytes:
    """Serialise arrays as ``mx.nd.save`` does.

    A :class:`Params` from ``load`` re-dumps byte-identically. Any other mapping is saved with its
    keys as names; a list/tuple without names. ``named`` overrides (False drops the names).
    """
    if isinstance(params, Mapping):
        items = list(params.items())
        meta = getattr(params, "meta", {})
        is_named = getattr(params, "named", True) if named is None else named
    else:
        items = [(str(i), v) for i, v in enumerate(params)]
        meta = {}
        is_named = bool(named)
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(items))]
    out += [_dump_array(v, meta.get(k, ArrayMeta())) for k, v in items]
    out.append(struct.pack("<Q", len(items) if is_named else 0))
    if is_named:
        for key, _ in items:
            raw = key.encode("utf-8")
            out.append(struct.pack("<Q", len(raw)) + raw)
    return b"".join(out)
