"""encode_sparse / encode_dense against the sagemaker 2.257.7 writers, byte for byte."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps.formats import recordio
from pipeline_steps.formats.recordio import one_layout, reference

from .conftest import sdk_dense, sdk_sparse

FEATURE_DTYPES = [np.float32, np.float64, np.int64]
LABEL_DTYPES = [None, np.float32, np.float64, np.int64]
INT32 = st.integers(-(2**31), 2**31 - 1)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _elements(dtype):
    if dtype is np.int64:
        return st.one_of(INT32, st.integers(-3, 300))
    width = 32 if dtype is np.float32 else 64
    return st.floats(width=width, allow_nan=True, allow_infinity=True)


@st.composite
def labels_for(draw, n_rows):
    dtype = draw(st.sampled_from(LABEL_DTYPES))
    if dtype is None:
        return None
    return draw(hnp.arrays(dtype, n_rows, elements=_elements(dtype)))


@st.composite
def sparse_cases(draw):
    dtype = draw(st.sampled_from(FEATURE_DTYPES))
    n_rows = draw(st.integers(0, 25))
    n_cols = draw(st.sampled_from([1, 5, 127, 128, 200, 16_384, 70_001, 2**21 + 3, 2**31 - 1]))
    fixed = draw(st.booleans())  # one-hot-like rows with the same nnz (the writer's fast path)
    nnz_max = min(n_cols, 6)
    if fixed:
        counts = [draw(st.integers(0, nnz_max))] * n_rows
    else:
        counts = draw(st.lists(st.integers(0, nnz_max), min_size=n_rows, max_size=n_rows))
    canonical = draw(st.booleans())
    indices = []
    for c in counts:
        if canonical:
            cols = sorted(draw(st.sets(st.integers(0, n_cols - 1), min_size=c, max_size=c)))
        else:  # unsorted, possibly duplicated: written as stored, like the SDK
            cols = draw(st.lists(st.integers(0, n_cols - 1), min_size=c, max_size=c))
        indices.extend(cols)
    nnz = len(indices)
    data = draw(hnp.arrays(dtype, nnz, elements=_elements(dtype)))
    indptr = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
    idx = np.array(indices, np.int64 if n_cols > 2**31 - 2 else np.int32)
    matrix = sp.csr_matrix((data, idx, indptr), shape=(n_rows, n_cols))
    return matrix, draw(labels_for(n_rows))


@st.composite
def dense_cases(draw):
    dtype = draw(st.sampled_from(FEATURE_DTYPES))
    shape = (draw(st.integers(0, 12)), draw(st.integers(0, 40)))
    array = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    return array, draw(labels_for(shape[0]))


@SETTINGS
@given(sparse_cases())
def test_encode_sparse_equals_sdk(case):
    matrix, labels = case
    expected = sdk_sparse(matrix, labels)
    assert reference.encode_sparse(matrix, labels) == expected
    assert recordio.encode_sparse(matrix, labels) == expected
    triple = (matrix.data, matrix.indices, matrix.indptr, matrix.shape)
    assert recordio.encode_sparse(triple, labels) == expected
    buf = io.BytesIO()
    assert recordio.write_sparse(buf, matrix, labels, chunk_rows=3) == len(expected)
    assert buf.getvalue() == expected


@SETTINGS
@given(dense_cases())
def test_encode_dense_equals_sdk(case):
    array, labels = case
    expected = sdk_dense(array, labels)
    assert reference.encode_dense(array, labels) == expected
    assert recordio.encode_dense(array, labels) == expected
    buf = io.BytesIO()
    assert recordio.write_dense(buf, array, labels, chunk_rows=4) == len(expected)
    assert buf.getvalue() == expected


@SETTINGS
@given(sparse_cases())
def test_sparse_padding_budget_split_is_identical(case):
    matrix, labels = case
    expected = reference.encode_sparse(matrix, labels)
    buf = io.BytesIO()
    # a budget of 4 slots forces single-row chunks wherever rows differ in nnz
    assert recordio.write_sparse(buf, matrix, labels, slot_budget=4) == len(expected)
    assert buf.getvalue() == expected
    assert recordio.encode_sparse(matrix, labels, accelerate=False) == expected


def test_one_hot_fast_path_equals_sdk_on_movielens_shape():
    rng = np.random.default_rng(7)
    n, n_users, n_items = 3000, 943, 1682
    cols = np.stack([rng.integers(0, n_users, n), n_users + rng.integers(0, n_items, n)], 1).ravel()
    matrix = sp.csr_matrix(
        (np.ones(2 * n, np.float32), cols.astype(np.int32), np.arange(0, 2 * n + 1, 2)),
        shape=(n, n_users + n_items),
    )
    labels = rng.integers(0, 2, n).astype(np.float32)
    assert recordio.encode_sparse(matrix, labels) == sdk_sparse(matrix, labels)


@pytest.mark.parametrize(
    ("matrix", "labels"),
    [
        (sp.csr_matrix(([1.0, 2.0], ([0, 0], [200, 70000])), shape=(1, 70001), dtype=np.float32), None),
        (sp.csr_matrix((3, 9), dtype=np.float32), np.array([-1, 0, 2**31 - 1])),
        (
            sp.csr_matrix(([0.0, -0.0], ([1, 1], [0, 2])), shape=(2, 3), dtype=np.float64),
            np.array([-(2**31), 5]),
        ),
        (sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3), dtype=np.float32), None),
    ],
)
def test_sparse_edge_cases(matrix, labels):
    assert recordio.encode_sparse(matrix, labels) == sdk_sparse(matrix, labels)


def test_other_scipy_formats_and_sparse_arrays():
    m = sp.random(20, 50, density=0.2, format="csc", dtype=np.float32, rng=np.random.default_rng(1))
    expected = sdk_sparse(m)
    assert recordio.encode_sparse(m) == expected
    assert recordio.encode_sparse(sp.csr_array(m)) == expected  # the SDK itself rejects sparse arrays


def test_float32_nan_payloads_are_quieted_like_the_sdk():
    bits = np.array([0x7F800001, 0xFFC12345, 0x7FC00000], np.uint32).view(np.float32)
    assert recordio.encode_dense(bits.reshape(1, 3), bits[:1]) == sdk_dense(bits.reshape(1, 3), bits[:1])
    doubles = np.array([0x7FF0000000000001], np.uint64).view(np.float64)
    assert recordio.encode_dense(doubles.reshape(1, 1)) == sdk_dense(doubles.reshape(1, 1))


@pytest.mark.parametrize("bad", [2**31, -(2**31) - 1])
def test_int32_out_of_range_is_rejected_like_the_sdk(bad):
    with pytest.raises(ValueError, match="out of range"):
        sdk_dense(np.array([[bad]]))
    with pytest.raises(ValueError, match="out of range"):
        recordio.encode_dense(np.array([[bad]]))
    with pytest.raises(ValueError, match="out of range"):
        recordio.encode_dense(np.zeros((1, 1), np.float32), np.array([bad]))
    with pytest.raises(ValueError, match="out of range"):
        recordio.encode_sparse(sp.csr_matrix(np.array([[bad, 0]])))


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.uint8, bool, ">f4"])
def test_unsupported_dtypes_are_rejected_like_the_sdk(dtype):
    array = np.zeros((2, 2), dtype)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        sdk_dense(array)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        recordio.encode_dense(array)
    with pytest.raises(ValueError, match="Unsupported dtype"):
        recordio.encode_dense(np.zeros((2, 2), np.float32), np.zeros(2, dtype))


# one layout per row pattern: rows with the same number of non-zeros, float values and labels


@st.composite
def one_layout_cases(draw):
    n_rows = draw(st.integers(1, 400))
    m = draw(st.integers(1, 4))
    n_cols = draw(st.sampled_from([5, 127, 129, 2625, 16_385, 2**21 + 3, 2**31 - 1]))
    m = min(m, n_cols)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # keys spanning 1..5-byte varints, so that rows have several key-length patterns
    cols = np.minimum(n_cols - 1, rng.integers(0, 2, (n_rows, m)) * rng.integers(0, n_cols, (n_rows, m)))
    cols = np.where(rng.random((n_rows, m)) < 0.3, rng.integers(0, min(n_cols, 128), (n_rows, m)), cols)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    one_hot = draw(st.booleans())
    data = np.ones(n_rows * m, dtype) if one_hot else rng.standard_normal(n_rows * m).astype(dtype)
    idx_dtype = np.int64 if n_cols > 2**31 - 2 else np.int32
    indptr = np.arange(0, n_rows * m + 1, m)
    matrix = sp.csr_matrix((data, cols.reshape(-1).astype(idx_dtype), indptr), shape=(n_rows, n_cols))
    label_dtype = draw(st.sampled_from([None, np.float32, np.float64]))
    labels = None if label_dtype is None else rng.integers(0, 2, n_rows).astype(label_dtype)
    chunk = draw(st.sampled_from([7, 64, recordio.DEFAULT_CHUNK_ROWS]))
    return matrix, labels, chunk


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one_layout_cases())
def test_one_layout_rows_equal_sdk(case):
    matrix, labels, chunk = case
    expected = sdk_sparse(matrix, labels)
    buf = io.BytesIO()
    recordio.write_sparse(buf, matrix, labels, chunk_rows=chunk)
    assert buf.getvalue() == expected
    assert recordio.encode_sparse(matrix, labels) == expected


def _one_layout(matrix, labels=None):
    """``one_layout.encode_chunk`` of a whole matrix (None: not of one layout)."""
    m = matrix.tocsr()
    kind = recordio.resolve_type(m.dtype)
    label_kind = None if labels is None else recordio.resolve_type(np.asarray(labels).dtype)
    out = one_layout.encode_chunk(
        m.data, m.indices, m.indptr.astype(np.int64), m.shape[1], labels, kind, label_kind
    )
    return None if out is None else out.tobytes()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(one_layout_cases())
def test_one_layout_equals_the_reference(case):
    matrix, labels, _ = case
    expected = reference.encode_sparse(matrix, labels)
    fast = _one_layout(matrix, labels)
    if fast is not None:  # more than MAX_PATTERNS key-length patterns: the general writer's job
        assert fast == expected
    assert recordio.encode_sparse(matrix, labels) == expected
    assert recordio.encode_sparse(matrix, labels, accelerate=False) == expected


def test_one_hot_rows_take_the_one_layout_path():
    rng = np.random.default_rng(3)
    n = 3000
    cols = np.stack([rng.integers(0, 943, n), 943 + rng.integers(0, 1682, n)], 1).reshape(-1)
    matrix = sp.csr_matrix((np.ones(2 * n, np.float32), cols, np.arange(0, 2 * n + 1, 2)), shape=(n, 2625))
    labels = (rng.random(n) < 0.5).astype(np.float32)
    assert _one_layout(matrix, labels) == sdk_sparse(matrix, labels)
    # int features, int labels and ragged rows go the general way (same bytes as the SDK)
    for m, lab in ((matrix.astype(np.int64), labels), (matrix, np.arange(n)), (matrix[:, :1500], labels)):
        assert _one_layout(m, lab) is None
        assert recordio.encode_sparse(m, lab) == sdk_sparse(m, lab)
