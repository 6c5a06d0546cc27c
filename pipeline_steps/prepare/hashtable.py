"""A vectorised open-addressing hash table uint64 key -> int64 value (numpy only).

Sorting or binary-searching millions of random keys per chunk costs far more than one or two
random gathers per key, which is all a lookup here needs (load factor <= 1/2, linear probing).
Keys must already be well mixed (they are 64-bit hashes).
"""

from __future__ import annotations

import numpy as np


class HashTable:
    def __init__(self, capacity_bits: int = 16) -> None:
        self._alloc(capacity_bits)
        self.size = 0

    def _alloc(self, bits: int) -> None:
        self.bits = bits
        self.mask = np.uint64((1 << bits) - 1)
        self.keys = np.zeros(1 << bits, dtype=np.uint64)
        self.values = np.full(1 << bits, -1, dtype=np.int64)  # -1 = empty slot

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Value per key, -1 where absent."""
        slot = (keys & self.mask).astype(np.intp)
        v = self.values[slot]
        hit = self.keys[slot] == keys
        out = np.where(hit, v, -1)  # an empty slot has value -1 anyway
        todo = np.flatnonzero((v >= 0) & ~hit)  # slot taken by another key: probe on (rare)
        while len(todo):
            slot[todo] = (slot[todo] + 1) & int(self.mask)
            s = slot[todo]
            v = self.values[s]
            hit = (v >= 0) & (self.keys[s] == keys[todo])
            out[todo[hit]] = v[hit]
            todo = todo[(v >= 0) & ~hit]
        return out

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Insert distinct keys that are not in the table yet."""
        if 2 * (self.size + len(keys)) > len(self.keys):
            old = self.values >= 0
            old_keys, old_values = self.keys[old], self.values[old]
            bits = self.bits
            while 2 * (self.size + len(keys)) > (1 << bits):
                bits += 1
            self._alloc(bits)
            self.size = 0
            self._place(old_keys, old_values)
        self._place(keys, values)

    def _place(self, keys: np.ndarray, values: np.ndarray) -> None:
        slot = (keys & self.mask).astype(np.intp)
        todo = np.arange(len(keys))
        while len(todo):
            s = slot[todo]
            free = self.values[s] < 0
            # Among keys aiming at the same free slot, the first one takes it; the rest probe on.
            cand = todo[free]
            _, first = np.unique(slot[cand], return_index=True)
            won = cand[first]
            self.keys[slot[won]] = keys[won]
            self.values[slot[won]] = values[won]
            taken = np.zeros(len(keys), dtype=bool)
            taken[won] = True
            todo = todo[~taken[todo]]
            slot[todo] = (slot[todo] + 1) & int(self.mask)
        self.size += len(keys)
