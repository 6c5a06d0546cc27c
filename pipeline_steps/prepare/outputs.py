"""Byte-deterministic writers for the prepared artifacts (same input + config -> same bytes)."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from pipeline_steps.formats import recordio
from pipeline_steps.prepare.features import Csr, fm_rows

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """Like `np.savez`, but with fixed zip timestamps (np.savez stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o100644 << 16
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=False) + "\n").encode("utf-8")


def ids_json_bytes(ids: list[str]) -> bytes:
    # Compact separators keep json's C encoder (indent would switch to the pure-Python one).
    return (json.dumps(ids, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def fm_shard(users: np.ndarray, items: np.ndarray, labels: np.ndarray, n_users: int, n_items: int) -> bytes:
    """One RecordIO-protobuf shard of one-hot FM rows: column u and column n_users + i, value 1.0."""
    n = len(users)
    indices = np.empty(2 * n, dtype=np.int64)
    indices[0::2] = users
    indices[1::2] = items + n_users
    data = np.ones(2 * n, dtype=np.float32)
    indptr = np.arange(0, 2 * n + 1, 2, dtype=np.int64)
    lab = np.ascontiguousarray(labels, dtype=np.float32)
    return recordio.encode_sparse((data, indices, indptr, (n, n_users + n_items)), lab)


def fm_shard_features(
    users: np.ndarray,
    items: np.ndarray,
    labels: np.ndarray,
    user_side: Csr,
    item_side: Csr,
    *,
    history_start: int | None = None,
    drop_user: np.ndarray | None = None,
) -> bytes:
    """One RecordIO-protobuf shard of FM rows user_side[u] + item_side[i] (decision 0018);
    `history_start`: leave each row's own item out of its history field (training rows);
    `drop_user`: the rows (one bool each) that leave out their user one-hot (ID dropout)."""
    data, indices, indptr = fm_rows(
        users, items, user_side, item_side, history_start=history_start, drop_user=drop_user
    )
    lab = np.ascontiguousarray(labels, dtype=np.float32)
    return recordio.encode_sparse((data, indices, indptr, (len(users), user_side.shape[1])), lab)
