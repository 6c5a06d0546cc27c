"""RecordIO-protobuf (``application/x-recordio-protobuf``), numpy only (docs/formats.md §1).

* ``wire``: the format's constants (magic, cflags, record.proto field numbers and tags) and varints;
* ``reference``: the spec, a plain record-by-record encoder (what sagemaker 2.257.7 writes) and a
  tolerant decoder (dmlc multi-part records, unknown and unpacked fields);
* ``writer``: the vectorised encoder; ``one_layout`` accelerates it for rows of one layout
  (one-hot rows), decision 0010;
* ``reader``: the vectorised decoder, falling back to ``reference`` for anything the SDK would
  not have written.

The writers and readers exported here equal their ``reference`` counterparts byte for byte and
array for array; the SDK is the oracle of the encoders (tests/formats/test_recordio_oracle.py).
"""

from __future__ import annotations

from .reader import read_dense, read_sparse, record_sizes
from .reference import Record, Tensor, iter_records, parse_record
from .wire import MAGIC, RecordIOError, resolve_type
from .writer import (
    DEFAULT_CHUNK_ROWS,
    SLOT_BUDGET,
    encode_dense,
    encode_sparse,
    iter_dense_chunks,
    iter_sparse_chunks,
    write_dense,
    write_sparse,
)

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "MAGIC",
    "SLOT_BUDGET",
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
    "record_sizes",
    "resolve_type",
    "write_dense",
    "write_sparse",
]
