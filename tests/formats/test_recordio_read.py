"""Golden vectors, the real train.data, decode round trips and every reader/writer error path."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps.formats import recordio
from pipeline_steps.formats.recordio import RecordIOError, reference

VALUES = "0a0676616c756573"  # MapEntry.key "values"

# docs/formats.md §1: bytes produced by the unmodified sagemaker 2.257.7 code
GOLDEN = {
    "dense_f32_pad": (
        "0a23d7ce 28000000 0a12 " + VALUES + " 1208 1206 0a04 0000e040 "
        "1212 " + VALUES + " 1208 1206 0a04 0000803f"
    ),
    "sparse_f32_labels_f32": (
        "0a23d7ce 33000000 0a1d " + VALUES + " 1213 1211 0a08 0000803f0000803f 1202 0003 1a01 05 1212 "
        + VALUES + " 1208 1206 0a04 0000a040 00"
        "0a23d7ce 33000000 0a1d " + VALUES + " 1213 1211 0a08 0000803f0000803f 1202 0104 1a01 05 1212 "
        + VALUES + " 1208 1206 0a04 00004040 00"
    ),
    "dense_f64_labels_i64": (
        "0a23d7ce 29000000 0a16 " + VALUES + " 120c 1a0a 0a08 000000000000f03f 120f " + VALUES
        + " 1205 3a03 0a01 01 000000"
    ),
}  # fmt: skip


def golden(name: str) -> bytes:
    return bytes.fromhex(GOLDEN[name].replace(" ", ""))


def test_golden_vectors():
    assert recordio.encode_dense(np.array([[7.0]], np.float32), np.array([1.0], np.float32)) == golden(
        "dense_f32_pad"
    )
    one_hot = sp.csr_matrix(([1.0] * 4, ([0, 0, 1, 1], [0, 3, 1, 4])), shape=(2, 5), dtype=np.float32)
    assert recordio.encode_sparse(one_hot, np.array([5.0, 3.0], np.float32)) == golden(
        "sparse_f32_labels_f32"
    )
    assert recordio.encode_dense(np.array([[1.0]]), np.array([1])) == golden("dense_f64_labels_i64")


def test_golden_vectors_decode():
    (rec,) = recordio.iter_records(golden("dense_f32_pad"))
    assert rec.values.dtype == np.float32 and rec.values.tolist() == [7.0]
    assert rec.keys.size == 0 and rec.shape == () and rec.label_values.tolist() == [1.0]
    data, indices, indptr, shape, labels = recordio.read_sparse(golden("sparse_f32_labels_f32"))
    assert (indices.tolist(), indptr.tolist(), shape) == ([0, 3, 1, 4], [0, 2, 4], (2, 5))
    assert data.tolist() == [1.0] * 4 and labels.tolist() == [5.0, 3.0] and labels.dtype == np.float32
    array, labels = recordio.read_dense(golden("dense_f64_labels_i64"))
    assert array.dtype == np.float64 and array.tolist() == [[1.0]]
    assert labels.dtype == np.int32 and labels.tolist() == [1]


def test_real_train_data_decodes_and_reencodes_byte_identically(fixtures):
    raw = (fixtures / "alexdongli-linear-kmeans" / "train.data").read_bytes()
    records = list(recordio.iter_records(raw))
    assert len(records) == 1168
    assert all(r.values.shape == (331,) and r.values.dtype == np.float32 for r in records)
    assert all(r.label_values.shape == (1,) and r.label_values.dtype == np.float32 for r in records)
    features, labels = recordio.read_dense(raw)
    assert features.shape == (1168, 331) and features.dtype == np.float32
    assert np.array_equal(features[5], records[5].values)
    assert np.array_equal(labels, np.concatenate([r.label_values for r in records]))
    assert recordio.encode_dense(features, labels) == raw
    with open(fixtures / "alexdongli-linear-kmeans" / "train.data", "rb") as f:  # file objects too
        assert sum(1 for _ in recordio.iter_records(f)) == 1168


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@st.composite
def csr_and_labels(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int64]))
    n_rows, n_cols = draw(st.integers(1, 20)), draw(st.sampled_from([1, 3, 130, 20_000, 2**31 - 1]))
    counts = draw(st.lists(st.integers(0, min(4, n_cols)), min_size=n_rows, max_size=n_rows))
    indices = draw(hnp.arrays(np.int64, sum(counts), elements=st.integers(0, n_cols - 1)))
    elements = st.integers(-(2**31), 2**31 - 1) if dtype is np.int64 else st.floats(width=32)
    data = draw(hnp.arrays(dtype, sum(counts), elements=elements))
    ldtype = draw(st.sampled_from([None, np.float32, np.float64, np.int64]))
    labels = None
    if ldtype is not None:
        lel = st.integers(-(2**31), 2**31 - 1) if ldtype is np.int64 else st.floats(width=32)
        labels = draw(hnp.arrays(ldtype, n_rows, elements=lel))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (data, indices, indptr, (n_rows, n_cols)), labels


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr_and_labels())
def test_sparse_round_trip(case):
    (data, indices, indptr, shape), labels = case
    raw = recordio.encode_sparse((data, indices, indptr, shape), labels)
    got = recordio.read_sparse(raw)
    stored = {np.int64: np.int32, np.float32: np.float32, np.float64: np.float64}[data.dtype.type]
    assert _same(got[0], data.astype(stored))
    assert got[1].tolist() == indices.tolist() and got[2].tolist() == indptr.tolist() and got[3] == shape
    if labels is None:
        assert got[4] is None
    else:
        assert _same(got[4], labels.astype(np.int32 if labels.dtype == np.int64 else labels.dtype))
    records = list(recordio.iter_records(raw))
    assert len(records) == shape[0]
    for i, rec in enumerate(records):
        assert _same(rec.values, got[0][indptr[i] : indptr[i + 1]])
        assert rec.keys.tolist() == indices[indptr[i] : indptr[i + 1]].tolist() and rec.shape == (shape[1],)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(st.sampled_from([np.float32, np.float64]), st.tuples(st.integers(1, 10), st.integers(1, 30))),
    st.sampled_from([None, np.float32, np.int64]),
)
def test_dense_round_trip(array, label_dtype):
    labels = None if label_dtype is None else np.arange(array.shape[0]).astype(label_dtype) - 3
    got, got_labels = recordio.read_dense(recordio.encode_dense(array, labels))
    assert _same(got, array)
    assert got_labels is None if labels is None else got_labels.tolist() == labels.tolist()


def test_read_dense_of_int_features_with_varying_varint_lengths():
    array = np.array([[1, -1, 300], [2**31 - 1, 0, -(2**31)]])
    got, labels = recordio.read_dense(recordio.encode_dense(array, np.array([0, -7])))
    assert got.dtype == np.int32 and got.tolist() == array.tolist() and labels.tolist() == [0, -7]


def test_empty_inputs():
    assert recordio.encode_dense(np.zeros((0, 3), np.float32)) == b""
    assert recordio.encode_sparse(sp.csr_matrix((0, 3), dtype=np.float32)) == b""
    assert list(recordio.iter_records(b"")) == []
    data, indices, indptr, shape, labels = recordio.read_sparse(b"")
    assert (data.size, indices.size, indptr.tolist(), shape, labels) == (0, 0, [0], (0, 0), None)
    array, labels = recordio.read_dense(b"")
    assert array.shape == (0, 0) and labels is None


def test_all_empty_sparse_rows_round_trip():
    raw = recordio.encode_sparse(sp.csr_matrix((3, 70_000), dtype=np.float32), np.ones(3, np.float32))
    data, _, indptr, shape, _ = recordio.read_sparse(raw)
    assert data.size == 0 and indptr.tolist() == [0, 0, 0, 0] and shape == (3, 70_000)
    assert [r.values.size for r in recordio.iter_records(raw)] == [0, 0, 0]


def test_read_dense_of_sparse_records_densifies():
    m = sp.csr_matrix(np.array([[0, 2.5, 0], [1, 0, 0]], np.float32))
    array, _ = recordio.read_dense(recordio.encode_sparse(m))
    assert array.tolist() == [[0, 2.5, 0], [1, 0, 0]]


def test_magic_inside_a_payload_does_not_confuse_the_fast_scanner():
    magic_float = np.array([recordio.MAGIC], np.uint32).view(np.float32)[0]
    m = sp.csr_matrix(
        ([magic_float, 1.0, magic_float], ([0, 0, 1], [0, 1, 1])), shape=(2, 2), dtype=np.float32
    )
    raw = recordio.encode_sparse(m, np.array([magic_float, 2.0], np.float32))
    assert raw.count(struct.pack("<I", recordio.MAGIC)) > 2
    data, indices, _, _, labels = recordio.read_sparse(raw)
    assert data.view(np.uint32).tolist() == m.data.view(np.uint32).tolist() and indices.tolist() == [0, 1, 1]
    assert labels.view(np.uint32)[0] == recordio.MAGIC


def _frame(payload: bytes, cflag: int = 0) -> bytes:
    return (
        struct.pack("<II", recordio.MAGIC, (cflag << 29) | len(payload))
        + payload
        + b"\0" * (-len(payload) % 4)
    )


def _value_record(values: list[float]) -> bytes:
    tensor = b"\x0a" + bytes([4 * len(values)]) + np.array(values, "<f4").tobytes()
    value = b"\x12" + bytes([len(tensor)]) + tensor
    entry = bytes.fromhex(VALUES) + b"\x12" + bytes([len(value)]) + value
    return b"\x0a" + bytes([len(entry)]) + entry


def test_irregular_but_valid_records_use_the_general_parser():
    # unknown fields, uid/metadata, an unpacked float field, a label map with two keys
    payload = _value_record([1.0, 2.0]) + b"\x1a\x03abc" + b"\x22\x01m" + b"\x30\x07"
    raw = _frame(payload) + _frame(_value_record([3.0, 4.0]))
    recs = list(recordio.iter_records(raw))
    assert recs[0].uid == "abc" and recs[0].metadata == "m" and recs[1].offset == len(_frame(payload))
    array, labels = recordio.read_dense(raw)
    assert array.tolist() == [[1, 2], [3, 4]] and labels is None
    unpacked = b"\x0d" + np.array([5.0], "<f4").tobytes() + b"\x0d" + np.array([6.0], "<f4").tobytes()
    value = b"\x12" + bytes([len(unpacked)]) + unpacked
    entry = bytes.fromhex(VALUES) + b"\x12" + bytes([len(value)]) + value
    (rec,) = recordio.iter_records(_frame(b"\x0a" + bytes([len(entry)]) + entry))
    assert rec.values.tolist() == [5.0, 6.0]


def test_fm_style_output_record_with_several_label_keys():
    def entry(key: bytes, v: float) -> bytes:
        tensor = b"\x0a\x04" + np.array([v], "<f4").tobytes()
        value = b"\x12" + bytes([len(tensor)]) + tensor
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
        return b"\x12" + bytes([len(body)]) + body

    (rec,) = recordio.iter_records(_frame(entry(b"score", 0.25) + entry(b"predicted_label", 1.0)))
    assert rec.label["score"].values.tolist() == [0.25] and rec.label["predicted_label"].kind == "Float32"
    assert rec.features == {} and rec.label_values is None and rec.values.size == 0


def test_bytes_values():
    inner = b"\x0a\x02hi\x0a\x01!\x12\x0atext/plain"
    value = b"\x4a" + bytes([len(inner)]) + inner
    entry = bytes.fromhex(VALUES) + b"\x12" + bytes([len(value)]) + value
    (rec,) = recordio.iter_records(_frame(b"\x0a" + bytes([len(entry)]) + entry))
    t = rec.features["values"]
    assert t.kind == "Bytes" and list(t.values) == [b"hi", b"!"] and t.content_type == "text/plain"


def test_dmlc_multipart_records_are_reassembled():
    magic = struct.pack("<I", recordio.MAGIC)
    base = _value_record([1.0, 2.0, 3.0])
    skip = -(len(base) + 2) % 4
    uid = b"x" * skip + magic + b"yz"
    payload = base + b"\x1a" + bytes([len(uid)]) + uid  # the magic word sits at an aligned offset
    cut = len(base) + 2 + skip
    # split the way dmlc's writer does: at the aligned magic word, which is dropped
    raw = _frame(payload[:cut], 1) + _frame(payload[cut + 4 :], 3)
    rec = next(recordio.iter_records(raw))
    assert rec.values.tolist() == [1.0, 2.0, 3.0] and rec.uid.endswith("yz")
    three = _frame(b"abcd", 1) + _frame(b"efgh", 2) + _frame(b"", 3)
    assert [p for _, p in reference.iter_payloads(io.BytesIO(three))] == [b"abcd" + magic + b"efgh" + magic]
    data, *_ = recordio.read_sparse(raw)  # the fast reader falls back to the general parser
    assert data.tolist() == [1.0, 2.0, 3.0]


def test_length_word_flags_are_masked_not_taken_as_length():
    rec = _value_record([1.0])
    raw = struct.pack("<II", recordio.MAGIC, len(rec)) + rec + b"\0" * (-len(rec) % 4)
    assert next(recordio.iter_records(raw)).values.tolist() == [1.0]
    # the final pad of the last record may be missing
    assert next(recordio.iter_records(raw[: 8 + len(rec)])).values.tolist() == [1.0]


@pytest.mark.parametrize(
    ("raw", "offset", "reason"),
    [
        (b"\x00\x01\x02\x03\x04\x05\x06\x07", 0, "bad magic"),
        (_frame(_value_record([1.0])) + b"\x0a\x23\xd7", 24, "truncated record header"),
        (_frame(_value_record([1.0]))[:-6], 0, "truncated record"),
        (_frame(b"abcd", 4), 0, "unsupported cflag 4"),
        (_frame(b"abcd", 2), 0, "without a start"),
        (_frame(b"abcd", 1), 12, "ends inside a multi-part"),
        (_frame(b"abcd", 1) + _frame(b"abcd"), 12, "inside an unfinished"),
        (_frame(b"abcd", 1) + _frame(b"abcd", 1), 12, "inside an unfinished"),
        (_frame(b"\x0a\x05abc"), 9, "runs past the end"),
        (_frame(b"\x0a"), 9, "truncated varint"),
        (_frame(b"\x0b"), 9, "unsupported protobuf wire type 3"),
        (_frame(b"\x0d\x00\x00"), 9, "truncated fixed-width"),
        (_frame(b"\x08" + b"\xff" * 11), 9, "longer than 10 bytes"),
    ],
)
def test_reader_errors_name_offset_and_reason(raw, offset, reason):
    with pytest.raises(RecordIOError, match=reason) as err:
        list(recordio.iter_records(raw))
    assert err.value.offset >= offset
    assert "byte offset" in str(err.value)
    with pytest.raises(RecordIOError):
        recordio.read_sparse(raw)


def test_bad_tensor_contents_are_errors():
    bad_floats = b"\x0a\x03\x01\x02\x03"  # 3 bytes are not float32 values
    value = b"\x12" + bytes([len(bad_floats)]) + bad_floats
    entry = bytes.fromhex(VALUES) + b"\x12" + bytes([len(value)]) + value
    with pytest.raises(RecordIOError, match="bad Float32 values"):
        list(recordio.iter_records(_frame(b"\x0a" + bytes([len(entry)]) + entry)))
    bad_keys = b"\x12\x01\x80"  # truncated packed varint
    value = b"\x12" + bytes([len(bad_keys)]) + bad_keys
    entry = bytes.fromhex(VALUES) + b"\x12" + bytes([len(value)]) + value
    with pytest.raises(RecordIOError, match="truncated varint in packed field 2"):
        list(recordio.iter_records(_frame(b"\x0a" + bytes([len(entry)]) + entry)))


def test_inconsistent_files_for_the_array_readers():
    a = recordio.encode_dense(np.ones((1, 2), np.float32), np.ones(1, np.float32))
    b = recordio.encode_dense(np.ones((1, 3), np.float32))
    c = recordio.encode_dense(np.ones((1, 2)))
    with pytest.raises(ValueError, match="different lengths"):
        recordio.read_dense(a + b)
    with pytest.raises(ValueError, match="exactly one label"):
        recordio.read_dense(a + recordio.encode_dense(np.ones((1, 2), np.float32)))
    with pytest.raises(ValueError, match="mix feature types"):
        recordio.read_dense(a + c)
    with pytest.raises(ValueError, match="mix label types"):
        recordio.read_dense(a + recordio.encode_dense(np.ones((1, 2), np.float32), np.ones(1)))
    s1 = recordio.encode_sparse(sp.csr_matrix(np.ones((1, 2), np.float32)))
    s2 = recordio.encode_sparse(sp.csr_matrix(np.ones((1, 3), np.float32)))
    with pytest.raises(ValueError, match="different shapes"):
        recordio.read_sparse(s1 + s2)


def test_writer_argument_errors():
    with pytest.raises(TypeError, match="must be sparse"):
        recordio.encode_sparse(np.ones((2, 2), np.float32))
    with pytest.raises(ValueError, match="Matrix"):
        recordio.encode_dense(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="Vector"):
        recordio.encode_dense(np.ones((2, 2), np.float32), np.ones((2, 1), np.float32))
    with pytest.raises(ValueError, match="not compatible"):
        recordio.encode_dense(np.ones((2, 3), np.float32), np.ones(3, np.float32))
    data, indices = np.ones(2, np.float32), np.array([0, 1])
    with pytest.raises(ValueError, match="indptr must have"):
        recordio.encode_sparse((data, indices, np.array([0, 2]), (2, 2)))
    with pytest.raises(ValueError, match="non-decreasing"):
        recordio.encode_sparse((data, indices, np.array([0, 2, 1]), (2, 2)))
    with pytest.raises(ValueError, match="column indices"):
        recordio.encode_sparse((data, np.array([0, 5]), np.array([0, 1, 2]), (2, 2)))
    with pytest.raises(ValueError, match="Matrix"):
        recordio.encode_sparse((data, indices, np.array([0, 2]), (2,)))


class _Trickle(io.RawIOBase):
    """A stream that returns at most 3 bytes per read, like a slow network body."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._buf.read(min(n, 3) if n >= 0 else 3)


def test_short_reads_from_streams_are_completed():
    raw = recordio.encode_dense(np.arange(12, dtype=np.float32).reshape(3, 4), np.arange(3))
    records = list(recordio.iter_records(_Trickle(raw)))
    assert [r.values.tolist() for r in records] == np.arange(12).reshape(3, 4).tolist()
    assert [r.label_values.tolist() for r in records] == [[0], [1], [2]]


# --------------------------------------------------------------------------------------------
# the vectorised reader equals the reference reader


def _reference_sparse(raw: bytes):
    """CSR from the reference parser, record by record (the slow, obvious reading)."""
    records = list(recordio.iter_records(raw))
    data = np.concatenate([r.values for r in records])
    keys = np.concatenate([r.keys for r in records]).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum([r.values.size for r in records])])
    shapes = {r.shape for r in records}
    labels = [r.label_values for r in records]
    labels = None if labels[0] is None else np.concatenate(labels)
    return data, keys, indptr, shapes, labels


def _assert_same(got, raw):
    data, keys, indptr, shapes, labels = _reference_sparse(raw)
    assert got[0].dtype == data.dtype and np.array_equal(got[0], data, equal_nan=True)
    assert got[1].dtype == np.int32 and got[1].tolist() == keys.tolist()
    assert got[2].tolist() == indptr.tolist()
    assert shapes == {(got[3][1],)} and got[3][0] == indptr.size - 1
    if labels is None:
        assert got[4] is None
    else:
        assert got[4].dtype == labels.dtype and np.array_equal(got[4], labels, equal_nan=True)


def _assert_equal_results(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
        else:
            assert a == b


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    m=st.integers(1, 5),
    n_cols=st.sampled_from([5, 127, 128, 2625, 20_000, 3_000_000]),
    dtype=st.sampled_from([np.float32, np.float64]),
    label_dtype=st.sampled_from([None, np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_read_sparse_of_one_layout_rows_equals_the_reference(n, m, n_cols, dtype, label_dtype, seed):
    rng = np.random.default_rng(seed)
    m = min(m, n_cols)
    cols = np.sort(
        np.argsort(rng.random((n, n_cols)) if n_cols < 200 else rng.integers(0, n_cols, (n, m)), axis=1)[
            :, :m
        ],
        axis=1,
    )
    values = rng.standard_normal(n * m).astype(dtype)
    values[rng.random(n * m) < 0.1] = 1.0
    matrix = sp.csr_matrix((values, cols.reshape(-1), np.arange(0, n * m + 1, m)), shape=(n, n_cols))
    labels = None if label_dtype is None else rng.integers(0, 5, n).astype(label_dtype)
    raw = recordio.encode_sparse(matrix, labels)
    got = recordio.read_sparse(raw)
    _assert_same(got, raw)
    _assert_equal_results(got, reference.read_sparse(raw))
    assert recordio.record_sizes(raw).tolist() == reference.record_sizes(raw).tolist()


def test_one_hot_rows_read_back():
    rng = np.random.default_rng(7)
    n = 5000
    users, items = rng.integers(0, 943, n), rng.integers(0, 1682, n)
    cols = np.stack([users, 943 + items], 1).reshape(-1)
    matrix = sp.csr_matrix((np.ones(2 * n, np.float32), cols, np.arange(0, 2 * n + 1, 2)), shape=(n, 2625))
    raw = recordio.encode_sparse(matrix, (rng.random(n) < 0.5).astype(np.float32))
    got = recordio.read_sparse(raw)
    _assert_same(got, raw)
    _assert_equal_results(got, reference.read_sparse(raw))
    assert got[1].reshape(n, 2).tolist() == cols.reshape(n, 2).tolist()


def _records_of(raw: bytes) -> tuple[list[int], list[int]]:
    """Start offsets and payload lengths of the records of a simple stream."""
    sizes = recordio.record_sizes(raw)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
    return starts, [struct.unpack_from("<I", raw, s + 4)[0] for s in starts]


@pytest.mark.parametrize(
    "case",
    ["ragged_nnz", "int_values", "int_labels", "padding_byte", "keys_not_m_varints", "extra_field"],
)
def test_mixed_layouts_read_like_the_reference(case):
    rng = np.random.default_rng(11)
    n = 40
    cols = np.stack([rng.integers(0, 100, n), 100 + rng.integers(0, 300, n)], 1)
    ones = np.ones(2 * n, np.float32)
    one_hot = sp.csr_matrix((ones, cols.reshape(-1), np.arange(0, 2 * n + 1, 2)), shape=(n, 400))
    labels = rng.random(n).astype(np.float32)
    if case == "ragged_nnz":
        extra = sp.csr_matrix((rng.random((n - n // 2, 400)) < 0.02).astype(np.float32))
        raw = recordio.encode_sparse(one_hot[: n // 2], labels[: n // 2]) + recordio.encode_sparse(
            (one_hot[n // 2 :] + extra).astype(np.float32), labels[n // 2 :]
        )
    elif case == "int_values":
        raw = recordio.encode_sparse(one_hot.astype(np.int64), labels)
    elif case == "int_labels":
        raw = recordio.encode_sparse(one_hot, np.arange(n, dtype=np.int64))
    else:
        raw = bytearray(recordio.encode_sparse(one_hot, labels))
        starts, lengths = _records_of(bytes(raw))
        i = [j for j, length in enumerate(lengths) if length % 4][3]  # a record with padding
        if case == "keys_not_m_varints":  # a record with two 1-byte keys
            i = next(j for j, s in enumerate(starts) if raw[s + 8 + 25] == 2)
        s, length = starts[i], lengths[i]
        if case == "padding_byte":  # padding content is ignored by the reference parser
            raw[s + 8 + length] = 0x55
        elif case == "keys_not_m_varints":  # the first key byte continues: 1 key for 2 values
            assert raw[s + 8 + 24] == 0x12 and raw[s + 8 + 25] == 2  # keys field after 8 value bytes
            raw[s + 8 + 26] |= 0x80
        else:  # a uid string (field 3) appended inside the padding-free payload of one record
            payload = bytes(raw[s + 8 : s + 8 + length]) + b"\x1a\x01x"
            new = struct.pack("<II", recordio.MAGIC, len(payload)) + payload + b"\0" * ((-len(payload)) % 4)
            raw = raw[:s] + new + raw[s + 8 + length + (-length) % 4 :]
        raw = bytes(raw)
    if case == "keys_not_m_varints":
        with pytest.raises(ValueError):
            reference.read_sparse(raw)
        with pytest.raises(ValueError):
            recordio.read_sparse(raw)
        return
    got = recordio.read_sparse(raw)
    _assert_same(got, raw)
    _assert_equal_results(got, reference.read_sparse(raw))


def test_record_sizes_count_whole_records_as_a_transform_sends_them():
    dense = recordio.encode_dense(np.ones((3, 65), np.float32))
    assert recordio.record_sizes(dense).tolist() == [288, 288, 288]
    assert recordio.record_sizes(b"").tolist() == []
    one = _frame(_value_record([1.0, 2.0]))
    split = _frame(b"abc", 1) + _frame(b"defgh", 3)  # a multi-part record: 12 + 16 bytes
    assert recordio.record_sizes(one + split + one).tolist() == [len(one), 28, len(one)]
    assert (
        recordio.record_sizes(one + split + one).tolist()
        == reference.record_sizes(one + split + one).tolist()
    )
