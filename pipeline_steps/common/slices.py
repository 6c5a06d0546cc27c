"""Publish's per-batch user slices (decision 0015 "A child holds its own users"): what a Distributed Map
child needs of the run's users, written by repackage beside `publish-batches.json`.

A child publishes a range of parts (common/batches.py). Its user parts cover a contiguous range of
user indices, so it needs only those users' ids, `seen` rows and per-user exclusions, not the run's
`users.json` and `seen.npz` (~0.7 GB of id strings and 4 bytes per interaction at 10M users). For
every entry of `publish-batches.json` that holds user parts, repackage writes one object,
`RunLayout.publish_slice(first_part)` (`runs/<id>/knn/queries/publish-slice-<first_part>.npz`, an
uncompressed `.npz`, read with `allow_pickle=False`):

- `first_user`: int64 scalar, the user index of row 0;
- `user_ids`, `user_id_offsets`: the ids in UTF-8 one after the other (lone surrogates kept:
  `surrogatepass`) and their offsets, (rows + 1,) int64 from 0;
- `seen_indptr`, `seen_indices`: those users' `seen` rows (a CSR as `seen.npz`, rows from 0);
- `excluded_indptr`, `excluded_indices`: their rows of the user exclusions filter (empty without);
- `user_exclusions_key`: str scalar, the filter object they were read from ("" = none).

A child reads `publish-batches.json` (a few KB), the entry holding its range, and that entry's slice:
memory and load work grow with its own users (at most `users_per_child`), not with the run's. The
item ids are still read whole (any item can be in any list; ~10x fewer than users at the target
shape) and so are the item filters and the popularity (n_items entries each).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import zipfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.common.batches import check_range
from pipeline_steps.common.errors import InputError
from pipeline_steps.common.events import PublishPartsEvent
from pipeline_steps.common.layout import RunLayout
from pipeline_steps.common.runio import (
    Csr,
    IdSlice,
    RunInputs,
    UserExclusions,
    checked_csr,
    empty_csr,
    get_bytes,
    get_json,
    load_inputs,
)

if TYPE_CHECKING:  # stubs are dev-only: never imported at run time
    from mypy_boto3_s3 import S3Client

ARRAYS = (
    "first_user",
    "user_ids",
    "user_id_offsets",
    "seen_indptr",
    "seen_indices",
    "excluded_indptr",
    "excluded_indices",
    "user_exclusions_key",
)


def slice_bytes(
    *, first: int, stop: int, users: Sequence[str], seen: Csr, excluded: Csr, exclusions_key: str
) -> bytes:
    """The slice object of users first .. stop - 1 (`users`, `seen`, `excluded`: every user's)."""
    encoded = [users[u].encode("utf-8", "surrogatepass") for u in range(first, stop)]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    arrays: dict[str, Any] = {
        "first_user": np.int64(first),
        "user_ids": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "user_id_offsets": offsets,
        "user_exclusions_key": np.array(exclusions_key),
    }
    for name, m in (("seen", seen), ("excluded", excluded)):
        a, b = int(m.indptr[first]), int(m.indptr[stop])
        arrays[f"{name}_indptr"] = (m.indptr[first : stop + 1] - a).astype(np.int64)
        arrays[f"{name}_indices"] = m.indices[a:b].astype(np.int32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def user_range(batch: dict[str, int], user_parts: Sequence[dict[str, Any]]) -> tuple[int, int] | None:
    """[first, stop) of the users in a batch's user parts; None when it holds item-query parts only."""
    first_part, last_part = batch["first_part"], min(batch["last_part"], len(user_parts) - 1)
    if first_part > last_part:
        return None
    last = user_parts[last_part]
    return int(user_parts[first_part]["first_user"]), int(last["first_user"]) + int(last["n_users"])


def write_slices(
    s3: S3Client,
    bucket: str,
    layout: RunLayout,
    *,
    batches: list[dict[str, int]],
    user_parts: Sequence[dict[str, Any]],
    users: Sequence[str],
    seen: Csr,
    excluded: Csr,
    exclusions_key: str,
) -> list[str]:
    """One slice per batch holding user parts (repackage, before `publish-batches.json`); -> keys."""
    keys = []
    for batch in batches:
        bounds = user_range(batch, user_parts)
        if bounds is None:
            continue
        body = slice_bytes(
            first=bounds[0],
            stop=bounds[1],
            users=users,
            seen=seen,
            excluded=excluded,
            exclusions_key=exclusions_key,
        )
        key = layout.publish_slice(batch["first_part"])
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        keys.append(key)
    return keys


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserSlice:
    key: str
    users: IdSlice
    seen: Csr
    exclusions: UserExclusions


def read_slice(data: bytes, *, key: str, n_items: int) -> UserSlice:
    """Parse and check a slice object; every error names `key`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = [name for name in ARRAYS if name not in z.files]
            if missing:
                raise InputError(f"{key}: not a publish slice, arrays {missing} missing")
            arrays = {name: z[name] for name in ARRAYS}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{key}: not a readable .npz (truncated or not a publish slice: {exc})") from None
    first = int(arrays["first_user"])
    offsets = np.asarray(arrays["user_id_offsets"], dtype=np.int64)
    blob = np.asarray(arrays["user_ids"], dtype=np.uint8).tobytes()
    n = offsets.size - 1
    if n < 0 or offsets[0] != 0 or offsets[-1] != len(blob) or np.any(np.diff(offsets) < 0):
        raise InputError(f"{key}: user_id_offsets must rise from 0 to the {len(blob)} bytes of user_ids")
    try:
        ids = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(offsets.tolist())]
    except UnicodeDecodeError as exc:
        raise InputError(f"{key}: user_ids is not UTF-8 ({exc})") from None
    csr = {
        name: checked_csr(
            np.asarray(arrays[f"{name}_indptr"], dtype=np.int64),
            np.asarray(arrays[f"{name}_indices"], dtype=np.int32),
            name=f"{key} {name}",
            n_users=n,
            n_items=n_items,
            first_row=first,
        )
        for name in ("seen", "excluded")
    }
    return UserSlice(
        key=key,
        users=IdSlice(first, ids, where=key),
        seen=csr["seen"],
        exclusions=UserExclusions(key=str(arrays["user_exclusions_key"]), rows=csr["excluded"], source=key),
    )


def batch_of(s3: S3Client, bucket: str, layout: RunLayout, parts: range) -> dict[str, int]:
    """The entry of `publish-batches.json` that holds `parts` (a child's range lies inside one)."""
    key = layout.publish_batches
    doc = get_json(s3, bucket, key)
    entries = doc if isinstance(doc, list) else []
    for entry in entries:
        try:
            first, last = int(entry["first_part"]), int(entry["last_part"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{key}: malformed entry {entry!r}") from None
        if first <= parts.start and parts.stop - 1 <= last:
            return {"first_part": first, "last_part": last}
    raise InputError(
        f"{key}: no entry holds parts {parts.start}..{parts.stop - 1} (a child's range lies inside one)"
    )


def load_range_inputs(s3: S3Client, bucket: str, event: PublishPartsEvent) -> tuple[RunInputs, range]:
    """A publish child's inputs and parts: the run's manifests, `.out` keys and item ids, and only its
    own users' ids, `seen` rows and exclusions (from its batch's slice; none when its parts are
    item-query parts). The range is checked against the run's parts first (the error names the event)."""
    inputs = load_inputs(s3, bucket, event, with_users=False, with_seen=False)
    qm = inputs.queries
    n_user_parts = len(qm.parts)
    n_parts = n_user_parts + len(inputs.related_out_keys)
    parts = check_range(event.first_part, event.last_part, n_parts, where="publish parts event")
    empty = dataclasses.replace(
        inputs,
        users=IdSlice(0, [], where=f"parts {parts.start}..{parts.stop - 1}"),
        user_exclusions=UserExclusions(key=None, rows=empty_csr()),
    )
    if parts.start >= n_user_parts:
        return empty, parts  # item-query parts only: no user is written
    layout = RunLayout(inputs.run_id)
    batch = batch_of(s3, bucket, layout, parts)
    key = layout.publish_slice(batch["first_part"])
    try:
        data = get_bytes(s3, bucket, key)
    except InputError:
        raise InputError(
            f"s3://{bucket}/{key}: object does not exist (the users of parts {batch['first_part']}.."
            f"{batch['last_part']}; repackage writes it with publish-batches.json)"
        ) from None
    got = read_slice(data, key=key, n_items=inputs.manifest.n_items)
    user_parts = [{"first_user": p.first_user, "n_users": p.n_users} for p in qm.parts]
    need = user_range({"first_part": parts.start, "last_part": parts.stop - 1}, user_parts) or (0, 0)
    have = (got.users.first, got.users.first + len(got.users))
    if not have[0] <= need[0] <= need[1] <= have[1]:
        raise InputError(
            f"{key}: holds users {have[0]}..{have[1] - 1}, parts {parts.start}..{parts.stop - 1} need "
            f"users {need[0]}..{need[1] - 1}"
        )
    return dataclasses.replace(inputs, users=got.users, seen=got.seen, user_exclusions=got.exclusions), parts
