"""String id <-> provisional code registry, keyed by a 128-bit hash of the id's bytes.

Per chunk the distinct hashes are found with numpy; only ids never seen before are sliced into
Python `bytes`. Codes are provisional (first-seen order); `final_order` gives the deterministic
dense index order (numeric ids numerically, others by UTF-8 bytes), independent of file order.
"""

from __future__ import annotations

import numpy as np

from pipeline_steps.prepare import fields


class IdCollisionError(RuntimeError):
    """Two different ids share one 64-bit hash (never observed; reported rather than merged)."""


class IdRegistry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.ids: list[bytes] = []
        self._keys = np.empty(0, dtype=np.uint64)  # sorted h1
        self._codes = np.empty(0, dtype=np.int64)  # code of each sorted key
        self._h2: list[np.ndarray] = []  # h2 per code, in code order (chunks appended)
        self._h2_all = np.empty(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, data: bytes, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Codes (int64) of the fields; registers ids seen for the first time."""
        if len(starts) == 0:
            return np.empty(0, dtype=np.int64)
        h1, h2 = fields.hash_fields(buf, starts, lens)
        uniq, first, inverse = np.unique(h1, return_index=True, return_inverse=True)
        if not np.array_equal(h2, h2[first][inverse]):
            row = int(np.flatnonzero(h2 != h2[first][inverse])[0])
            self._collision(data, starts, lens, row, int(first[inverse[row]]))
        pos = np.minimum(np.searchsorted(self._keys, uniq), max(len(self._keys) - 1, 0))
        found = self._keys[pos] == uniq if len(self._keys) else np.zeros(len(uniq), dtype=bool)
        codes = np.empty(len(uniq), dtype=np.int64)
        codes[found] = self._codes[pos[found]]
        self._flush_h2()
        if found.any() and not np.array_equal(self._h2_all[codes[found]], h2[first[found]]):
            raise IdCollisionError(f"two different {self.kind} ids share a 64-bit hash; please report this")
        new = np.flatnonzero(~found)
        if len(new):
            start = len(self.ids)
            codes[new] = np.arange(start, start + len(new))
            self.ids.extend(fields.slices(data, starts[first[new]], lens[first[new]]))
            self._h2.append(h2[first[new]])
            keys = np.concatenate([self._keys, uniq[new]])
            order = np.argsort(keys, kind="stable")
            self._keys = keys[order]
            self._codes = np.concatenate([self._codes, codes[new]])[order]
        return codes[inverse]

    def _flush_h2(self) -> None:
        if self._h2:
            self._h2_all = np.concatenate([self._h2_all, *self._h2])
            self._h2 = []

    def _collision(self, data: bytes, starts, lens, a: int, b: int) -> None:
        ids = fields.slices(data, starts[[a, b]], lens[[a, b]])
        raise IdCollisionError(
            f"{self.kind} ids {ids[0]!r} and {ids[1]!r} share a 64-bit hash; please report this"
        )

    def decoded(self, codes: np.ndarray) -> list[str]:
        return [self.ids[c].decode("utf-8") for c in codes.tolist()]


def final_order(ids: list[str]) -> list[int]:
    """Positions of `ids` in their canonical order: all-integer ids numerically, else by UTF-8 bytes."""
    try:
        keys = [int(s) for s in ids]
        if all(str(k) == s for k, s in zip(keys, ids, strict=True)):
            return sorted(range(len(ids)), key=keys.__getitem__)
    except ValueError:
        pass
    # Python compares str by code point, which is the same order as UTF-8 bytes.
    return sorted(range(len(ids)), key=ids.__getitem__)
