"""Stream an FM ``model.tar.gz`` (docs/formats.md §2) without holding its parameters: numpy only.

``read_fm_model`` holds the whole artifact, its decompressed tar, the ZIP and every array: at 10M
users, 1M items and 64 factors ``arg:v`` alone is 2.8 GB. ``iter_fm_model`` reads the same bytes
front to back from any object with ``read(n)`` (an S3 body) and yields:

- ``FMMeta(feature_dim, num_factors, hyperparameters, epoch_number)`` first (``meta.json`` precedes
  ``params`` in the stored ZIP, as in SageMaker's artifacts), before any parameter row;
- ``FMRows(start, rows)``: consecutive row blocks of V (feature_dim, num_factors) float32, in
  row order, at most ``chunk_rows`` rows each;
- ``FMLinear(w0, w)`` last: the bias and the (feature_dim,) linear weights (4 bytes per feature).

Memory: one block of V, the linear weights, and the gzip/tar/ZIP readers' buffers. V is streamed
when it is stored as (feature_dim, num_factors) (layout A, what SageMaker's FM writes) with
num_factors > 1; otherwise (layout B stores V transposed; with one factor V and the linear weights
have the same shape and only the names, stored after all arrays, tell them apart) V is read whole and
then yielded in blocks. The names are checked at the end: a file whose streamed array turns out not to
be ``arg:v`` raises ``FMModelError``, as do every check of ``read_fm_model``.

What the stream cannot follow raises ``StreamUnsupportedError`` before any row is yielded when the
header says so (a compressed or data-descriptor ZIP member, ``params`` before ``meta.json``, a
legacy or sparse NDArray, another dtype than float32): callers then read the object whole with
``read_fm_model``.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, cast

import numpy as np

from . import mxnet_params
from .fm_model import MEMBER, FMModelError

__all__ = ["FMLinear", "FMMeta", "FMRows", "StreamUnsupportedError", "iter_fm_model"]

_ZIP_LOCAL = b"PK\x03\x04"
_READ = 1 << 20


class StreamUnsupportedError(FMModelError):
    """A valid artifact this streaming reader does not follow; read it whole instead."""


class _Readable(Protocol):
    def read(self, n: int, /) -> bytes: ...


@dataclass(frozen=True)
class FMMeta:
    feature_dim: int
    num_factors: int | None  # from meta.json when present
    hyperparameters: dict[str, str] = field(default_factory=dict)
    epoch_number: int | None = None


@dataclass(frozen=True)
class FMRows:
    start: int
    rows: np.ndarray  # (n, num_factors) float32


@dataclass(frozen=True)
class FMLinear:
    w0: float
    w: np.ndarray  # (feature_dim,) float32


class _Exact:
    """read(n) of exactly n bytes from a stream (or an error naming what was cut), with a CRC."""

    def __init__(self, raw: _Readable, what: str, size: int | None = None) -> None:
        self.raw, self.what, self.left, self.crc = raw, what, size, 0

    def read(self, n: int) -> bytes:
        if self.left is not None and n > self.left:
            raise FMModelError(f"{self.what}: truncated ({n} bytes needed, {self.left} left)")
        chunks, got = [], 0
        while got < n:
            chunk = self.raw.read(min(n - got, _READ))
            if not chunk:
                raise FMModelError(f"{self.what}: truncated ({n - got} of {n} bytes missing)")
            chunks.append(chunk)
            got += len(chunk)
        data = b"".join(chunks) if len(chunks) != 1 else chunks[0]
        if self.left is not None:
            self.left -= n
        self.crc = zlib.crc32(data, self.crc)
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, _READ)
            self.read(step)
            n -= step


class _Head:
    """A stream whose first bytes were already read (to tell gzip, tar and ZIP apart)."""

    def __init__(self, head: bytes, raw: _Readable) -> None:
        self.head, self.raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = (
                (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            )
            return out
        return self.raw.read(n)


def iter_fm_model(
    body: BinaryIO | _Readable, *, chunk_rows: int = 65_536
) -> Iterator[FMMeta | FMRows | FMLinear]:
    """Events of one FM artifact (module docstring): ``model.tar.gz``, a plain tar or ``model_algo-1``."""
    head = body.read(4)
    stream = _Head(head, body)
    if head == _ZIP_LOCAL:
        yield from _zip_events(stream, MEMBER, chunk_rows)
        return
    source: Any = stream
    if head[:2] == b"\x1f\x8b":
        source = gzip.GzipFile(fileobj=cast(Any, stream), mode="rb")
    try:
        with tarfile.open(fileobj=source, mode="r|") as tf:
            for info in tf:
                if not info.isfile() or os.path.basename(info.name.rstrip("/")) != MEMBER:
                    continue
                member = tf.extractfile(info)
                if member is None:  # a regular file always has a reader
                    break
                yield from _zip_events(
                    _Exact(member, f"model.tar.gz/{MEMBER}", info.size), f"model.tar.gz/{MEMBER}", chunk_rows
                )
                while source.read(_READ):  # to the end: gzip checks its CRC there
                    pass
                return
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise FMModelError(f"model.tar.gz: corrupt or truncated archive ({e})") from None
    raise FMModelError(f"model.tar.gz: member {MEMBER} missing")


def _zip_events(raw: _Readable, what: str, chunk_rows: int) -> Iterator[FMMeta | FMRows | FMLinear]:
    r = _Exact(raw, what)
    meta: FMMeta | None = None
    params = False
    while True:
        signature = r.read(4)
        if signature != _ZIP_LOCAL:
            break  # the central directory: every member has been read
        _, flags, method, _, _, crc, csize, size, n_name, n_extra = r.unpack("<HHHHHIIIHH")
        name = r.read(n_name).decode("utf-8", "replace")
        r.skip(n_extra)
        if method != 0 or flags & 0x08 or csize != size:
            raise StreamUnsupportedError(f"{what}: member {name} is compressed or sized after its data")
        member = _Exact(raw, f"{what}/{name}", size)
        if name == "meta.json":
            meta = _meta(member.read(size), f"{what}/meta.json")
            yield meta
        elif name == "params":
            if meta is None:
                raise StreamUnsupportedError(f"{what}: params precede meta.json")
            yield from _params_events(member, meta, f"{what}/params", chunk_rows)
            params = True
        else:
            member.skip(size)
        if member.crc != crc:
            raise FMModelError(f"{what}: member {name} fails its CRC-32 check")
    for name, found in (("meta.json", meta is not None), ("params", params)):
        if not found:
            raise FMModelError(f"{what}: member {name} missing")


def _meta(data: bytes, what: str) -> FMMeta:
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FMModelError(f"{what}: not valid JSON ({e})") from None
    hyper = meta.get("training_parameters") if isinstance(meta, dict) else None
    if not isinstance(hyper, dict):
        raise FMModelError(f"{what}: field training_parameters missing or not an object")
    try:
        n = int(str(hyper["feature_dim"]))
    except (KeyError, ValueError):
        raise FMModelError(
            f"{what}: field training_parameters.feature_dim missing or not an integer"
        ) from None
    try:
        factors: int | None = int(str(hyper.get("num_factors")))
    except ValueError:
        factors = None
    epoch = meta.get("epoch_number")
    return FMMeta(
        n, factors, {str(k): str(v) for k, v in hyper.items()}, epoch if isinstance(epoch, int) else None
    )


@dataclass
class _Array:
    shape: tuple[int, ...]
    value: np.ndarray | None  # None: streamed (V in layout A)


def _params_events(r: _Exact, meta: FMMeta, what: str, chunk_rows: int) -> Iterator[FMRows | FMLinear]:
    n = meta.feature_dim
    if r.unpack("<Q")[0] != mxnet_params.LIST_MAGIC:
        raise FMModelError(f"{what}: not an NDArray list")
    r.unpack("<Q")
    (count,) = r.unpack("<Q")
    if count > 64:
        raise FMModelError(f"{what}: implausible array count {count}")
    arrays = []
    for index in range(count):
        shape = _array_header(r, f"{what} array {index}")
        size = int(np.prod(shape, dtype=np.int64)) if shape else 0
        if len(shape) == 2 and shape[0] == n and shape[1] > 1:  # V, layout A: stream its rows
            for start in range(0, n, chunk_rows):
                stop = min(start + chunk_rows, n)
                block = np.frombuffer(r.read((stop - start) * shape[1] * 4), "<f4")
                yield FMRows(start, block.astype(np.float32).reshape(stop - start, shape[1]))
            arrays.append(_Array(shape, None))
        else:
            arrays.append(
                _Array(shape, np.frombuffer(r.read(size * 4), "<f4").astype(np.float32).reshape(shape))
            )
    (n_names,) = r.unpack("<Q")
    if n_names != count:
        raise FMModelError(f"{what}: {n_names} names for {count} arrays")
    names = [r.read(r.unpack("<Q")[0]).decode("utf-8", "replace") for _ in range(n_names)]
    params = {
        name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name: a
        for name, a in zip(names, arrays, strict=True)
    }
    yield from _finish(params, meta, what, chunk_rows)


def _array_header(r: _Exact, what: str) -> tuple[int, ...]:
    (magic,) = r.unpack("<I")
    if magic in (mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC):
        (stype,) = r.unpack("<i")
        if stype != mxnet_params.DEFAULT:
            raise StreamUnsupportedError(f"{what}: storage type {stype} (only dense arrays stream)")
    elif magic != mxnet_params.V1_MAGIC:
        raise StreamUnsupportedError(f"{what}: NDArray header 0x{magic:08x} (legacy layout)")
    (ndim,) = r.unpack("<i")
    if not 0 < ndim <= 2:
        raise StreamUnsupportedError(f"{what}: {ndim} dimensions")
    shape = r.unpack(f"<{ndim}q")
    _, _, type_flag = r.unpack("<iii")
    if type_flag != 0:
        raise StreamUnsupportedError(f"{what}: type flag {type_flag} (only float32 streams)")
    return tuple(int(d) for d in shape)


def _finish(
    params: dict[str, _Array], meta: FMMeta, what: str, chunk_rows: int
) -> Iterator[FMRows | FMLinear]:
    n = meta.feature_dim
    names = set(params)
    for linear, bias in (("w1_weight", "w0_weight"), ("Linear_Plus_Bias_weight", "Linear_Plus_Bias_bias")):
        if {"v", linear, bias} <= names:
            break
    else:
        raise FMModelError(
            f"{what}: no FM parameters (need arg:v with arg:w1_weight/arg:w0_weight or "
            f"arg:Linear_Plus_Bias_weight/_bias), found {sorted(params)}"
        )
    v, w, b = params["v"], params[linear], params[bias]
    if w.value is None or b.value is None:
        raise FMModelError(f"{what}: arg:{linear} or arg:{bias} has the shape of V {w.shape}")
    if v.value is not None:  # not streamed: layout B (k, N) or a single factor
        V = v.value
        if V.ndim != 2 or n not in V.shape:
            raise FMModelError(f"{what}: arg:v has shape {V.shape}, no axis equals feature_dim {n}")
        if V.shape[0] != n or (V.shape[1] == n and linear == "Linear_Plus_Bias_weight"):
            V = V.T
        for start in range(0, n, chunk_rows):
            yield FMRows(start, np.ascontiguousarray(V[start : start + chunk_rows]))
    if w.value.size != n or (w.value.ndim == 2 and n not in w.value.shape):
        raise FMModelError(f"{what}: arg:{linear} has shape {w.value.shape}, expected {n} weights")
    if b.value.size != 1:
        raise FMModelError(f"{what}: arg:{bias} has shape {b.value.shape}, expected one bias")
    yield FMLinear(float(b.value.reshape(-1)[0]), w.value.reshape(-1))
