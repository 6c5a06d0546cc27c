"""Shared helpers: the sagemaker 2.257.7 SDK as the byte oracle, and the real fixtures."""

from __future__ import annotations

import io
import os
from pathlib import Path

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real-sagemaker"


def sdk_sparse(matrix, labels=None) -> bytes:
    from sagemaker.amazon.common import write_spmatrix_to_sparse_tensor

    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, matrix, labels)
    return buf.getvalue()


def sdk_dense(array, labels=None) -> bytes:
    from sagemaker.amazon.common import write_numpy_to_dense_tensor

    buf = io.BytesIO()
    write_numpy_to_dense_tensor(buf, array, labels)
    return buf.getvalue()


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES
