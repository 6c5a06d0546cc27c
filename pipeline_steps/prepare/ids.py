"""String id <-> provisional code registry, keyed by a 128-bit hash of the id's bytes.

Per chunk, codes come from a vectorised hash table; only ids never seen before are sliced into
Python `bytes`. A second independent 64-bit hash is stored per id and compared on every row, so a
collision of the first hash is reported instead of silently merging two ids. Codes are
provisional (first-seen order); `final_order` gives the deterministic dense index order (numeric
ids numerically, others by UTF-8 bytes), independent of file order.
"""

from __future__ import annotations

import numpy as np

from pipeline_steps.prepare import fields
from pipeline_steps.prepare.hashtable import HashTable


class IdCollisionError(RuntimeError):
    """Two different ids share one 64-bit hash (never observed; reported rather than merged)."""


class IdRegistry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ids: list[bytes] = []
        self._table = HashTable()
        self._h2 = np.empty(0, dtype=np.uint64)  # second hash per code, to detect collisions

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, data: bytes, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Codes (int64) of the fields; registers ids seen for the first time."""
        if len(starts) == 0:
            return np.empty(0, dtype=np.int64)
        h1, h2 = fields.hash_fields(buf, starts, lens)
        codes = self._table.lookup(h1)
        new_rows = np.flatnonzero(codes < 0)
        if len(new_rows):
            order = new_rows[np.argsort(h1[new_rows], kind="stable")]
            hs = h1[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = hs[1:] != hs[:-1]
            reps = order[first]  # first row (in input order) of each new id
            start = len(self.ids)
            new_codes = np.arange(start, start + len(reps))
            self._table.insert(h1[reps], new_codes)
            self.ids.extend(fields.slices(data, starts[reps], lens[reps]))
            self._h2 = np.concatenate([self._h2, h2[reps]])
            codes[order] = np.repeat(new_codes, np.diff(np.append(np.flatnonzero(first), len(order))))
        bad = np.flatnonzero(self._h2[codes] != h2)
        if len(bad):
            row = int(bad[0])
            other = self.ids[codes[row]]
            this = fields.slices(data, starts[[row]], lens[[row]])[0]
            raise IdCollisionError(
                f"{self.kind} ids {other!r} and {this!r} share a 64-bit hash; please report this"
            )
        return codes

    def decoded(self, codes: np.ndarray) -> list[str]:
        return [self.ids[c].decode("utf-8") for c in codes.tolist()]


def final_order(ids: list[str], encoded: list[bytes] | None = None) -> list[int]:
    """Positions of `ids` in their canonical order: all-integer ids numerically, else by UTF-8 bytes.

    `encoded` (the same ids as UTF-8 bytes) saves re-encoding when the caller has them.
    """
    try:
        keys = [int(s) for s in ids]
        if all(str(k) == s for k, s in zip(keys, ids, strict=True)):
            return sorted(range(len(ids)), key=keys.__getitem__)
    except ValueError:
        pass
    if encoded is None:
        encoded = [s.encode("utf-8") for s in ids]
    if not any(b"\0" in e for e in encoded):
        # numpy's fixed-width bytes sort is unsigned-bytewise (= code point order for UTF-8) and
        # faster than sorted() on str; NUL padding would only be ambiguous for ids containing NUL.
        return np.argsort(np.array(encoded, dtype=bytes), kind="stable").tolist()
    return sorted(range(len(ids)), key=ids.__getitem__)  # str order = code point order
