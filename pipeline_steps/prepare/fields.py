"""Vectorised operations on fields given as (start, length) slices of one byte buffer.

Both parsers (the bulk fast path and the `csv` fallback) reduce a chunk to one contiguous byte
buffer plus per-row start/length arrays per column; everything here works on that form, so the two
paths produce identical hashes and values.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

_U64 = np.uint64
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=_U64)
SEED1 = _U64(0x9E3779B97F4A7C15)
SEED2 = _U64(0xD1B54A32D192ED03)


def padded(data: bytes) -> np.ndarray:
    """The buffer as uint8 with 8 zero bytes appended, so 8-byte loads never run past the end."""
    return np.frombuffer(data + b"\0" * 8, dtype=np.uint8)


def _words_view(buf: np.ndarray) -> np.ndarray:
    # A uint64 view with a 1-byte stride: element p = the 8 bytes starting at byte p (unaligned
    # loads are fine on x86/arm64). Read-only, no copy.
    n = len(buf) - 7
    return np.ndarray(shape=(max(n, 0),), dtype="<u8", buffer=buf, strides=(1,))


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer, in place: a bijection with full avalanche (uint64 wraps by design)."""
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def hash_fields(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each field's bytes (together a 128-bit key).

    h1 chains a splitmix64 round per 8-byte word (the lookup key); h2 is a cheap multilinear sum
    of the words with different odd constants, only used to detect an h1 collision.
    """
    n = len(starts)
    h1 = np.empty(n, dtype=_U64)
    h2 = np.empty(n, dtype=_U64)
    if n == 0:
        return h1, h2
    words = _words_view(buf)
    last = len(words) - 1
    nwords = np.maximum((lens + 7) // 8, 1)
    # Rows are folded over a power-of-two number of words that depends only on their length, so
    # a field hashes the same whatever else is in its chunk (zero words past the end are folded too).
    width = np.left_shift(1, np.ceil(np.log2(nwords)).astype(np.int64))
    lo, hi = int(width.min()), int(width.max())
    for w in [lo] if lo == hi else np.unique(width).tolist():
        rows = slice(None) if lo == hi else np.flatnonzero(width == w)
        s = starts[rows]
        ln = lens[rows].astype(np.int64)
        full_words = int(ln.min()) // 8  # words every row fills completely need no mask
        a = SEED1 ^ (ln.astype(_U64) * _U64(0xFF51AFD7ED558CCD))
        b = SEED2 ^ ln.astype(_U64)
        for j in range(int(w)):
            if j < full_words:
                word = words[s + 8 * j]
            else:
                # Past a field's end the mask is 0, so the clamped index only has to stay in bounds.
                word = words[np.minimum(s + 8 * j, last)] & _MASKS[np.clip(ln - 8 * j, 0, 8)]
            a ^= word
            _mix(a)
            word *= _H2_MULT[j % len(_H2_MULT)] + _U64(2 * j)
            b += word
        h1[rows] = a
        h2[rows] = _mix(b)
    return h1, h2


_H2_MULT = np.array(
    [0x9FB21C651E98DF25, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=_U64
)


def slices(data: bytes, starts: np.ndarray, lens: np.ndarray) -> list[bytes]:
    return [data[s : s + n] for s, n in zip(starts.tolist(), lens.tolist(), strict=True)]


def _parse_uint_loop(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(starts)
    value = np.zeros(n, dtype=np.int64)
    ok = (lens > 0) & (lens <= 18)
    if n == 0:
        return value, ok
    for k in range(int(min(lens.max(), 18))):
        active = lens > k
        digit = buf[np.where(active, starts + k, 0)].astype(np.int64) - 48
        ok &= ~active | ((digit >= 0) & (digit <= 9))
        value = np.where(active, value * 10 + digit, value)
    return value, ok


_ZEROS = _U64(0x3030303030303030)
_HIGH = _U64(0x8080808080808080)


def _eight_digits(w: np.ndarray) -> np.ndarray:
    # SWAR: 8 ASCII digits (first digit in the lowest byte) -> their value (simdjson's trick).
    w = ((w & _U64(0x0F0F0F0F0F0F0F0F)) * _U64(2561)) >> _U64(8)
    w = ((w & _U64(0x00FF00FF00FF00FF)) * _U64(6553601)) >> _U64(16)
    return ((w & _U64(0x0000FFFF0000FFFF)) * _U64(42949672960001)) >> _U64(32)


def parse_uint(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal digits -> int64, vectorised; returns (values, ok). Non-digit or >18 digits: not ok.

    Reads the 16 bytes ending at each field's end as two words, replaces the bytes before the
    field with '0' and converts 8 digits per word at once. Fields too close to the buffer start
    for a 16-byte window take the per-digit loop.
    """
    n = len(starts)
    ends = starts + lens
    fast = (ends >= 16) & (lens >= 1) & (lens <= 16)
    value = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    if fast.any():
        rows = np.flatnonzero(fast) if not fast.all() else slice(None)
        e, lengths = ends[rows], lens[rows].astype(np.int64)
        # the usual case (e.g. 10-digit unix seconds): one length for all, scalar masks
        ln: np.ndarray | int = int(lengths.min()) if int(lengths.min()) == int(lengths.max()) else lengths
        words = _words_view(buf)
        out = []
        for word_end, keep in ((e - 16, np.clip(ln - 8, 0, 8)), (e - 8, np.minimum(ln, 8))):
            w = words[word_end]
            field_bytes = ~_MASKS[8 - keep]  # the top `keep` bytes belong to the field
            w = (w & field_bytes) | (_ZEROS & ~field_bytes)
            t = w - _ZEROS
            bad = ((t | (t + _U64(0x7676767676767676))) & _HIGH) != 0
            out.append((_eight_digits(w), bad))
        (hi, bad_hi), (lo, bad_lo) = out
        value[rows] = (hi * _U64(100_000_000) + lo).astype(np.int64)
        ok[rows] = ~(bad_hi | bad_lo)
    if not fast.all():
        rest = np.flatnonzero(~fast)
        value[rest], ok[rest] = _parse_uint_loop(buf, starts[rest], lens[rest])
    return value, ok


def _inverse(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, index of each key among them); cheap when there are few distinct keys."""
    s = np.sort(keys)
    uniq = s[np.concatenate([[True], s[1:] != s[:-1]])] if len(s) else s
    if len(uniq) <= 65536:  # binary search in a cache-resident array
        return uniq, np.searchsorted(uniq, keys)
    return np.unique(keys, return_inverse=True)


def parse_by_unique(
    data: bytes, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray, parse
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a Python `parse(bytes) -> float|int|None` once per distinct field value."""
    if len(starts) and int(lens.max()) <= 8:
        # Short fields: the zero-padded 8 bytes themselves are an exact key (text has no NUL).
        words = _words_view(buf)[np.minimum(starts, len(buf) - 8)] & _MASKS[np.minimum(lens, 8)]
        uniq, inverse = _inverse(words)
        texts = [int(w).to_bytes(8, "little").rstrip(b"\0") for w in uniq.tolist()]
    else:
        h1, _ = hash_fields(buf, starts, lens)
        uniq, inverse = _inverse(h1)
        first = np.empty(len(uniq), dtype=np.int64)
        first[inverse] = np.arange(len(starts))  # any row of each distinct value will do
        texts = slices(data, starts[first], lens[first])
    parsed = [parse(t) for t in texts]
    ok_u = np.array([p is not None for p in parsed], dtype=bool)
    vals_u = np.array([p if p is not None else 0 for p in parsed], dtype=np.float64)
    return vals_u[inverse], ok_u[inverse]


def parse_rating(text: bytes) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# |epoch seconds| below 2**62: differences of two timestamps (the holdout split) fit in int64.
TIMESTAMP_LIMIT = 2**62


def parse_timestamp(text: bytes) -> int | None:
    """Unix seconds (int or decimal) or an ISO 8601 date/datetime (naive = UTC) -> epoch seconds.

    Numbers of magnitude >= ``TIMESTAMP_LIMIT`` are not timestamps (None), not wrapped int64s.
    """
    s = text.decode("utf-8", errors="replace").strip()
    if not s:
        return None
    try:
        value = int(s)
        return value if -TIMESTAMP_LIMIT < value < TIMESTAMP_LIMIT else None
    except ValueError:
        pass
    try:
        number = float(s)
        if math.isfinite(number) and -TIMESTAMP_LIMIT < number < TIMESTAMP_LIMIT:
            return math.floor(number)
        return None
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return math.floor(dt.timestamp())


def timestamps(
    data: bytes, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Epoch seconds per field: vectorised for plain digits, per distinct value otherwise."""
    values, ok = parse_uint(buf, starts, lens)
    if not ok.all():
        rest = np.flatnonzero(~ok)
        v, k = parse_by_unique(data, buf, starts[rest], lens[rest], parse_timestamp)
        values[rest] = v.astype(np.int64)
        ok[rest] = k
    return values, ok


def ratings(
    data: bytes, buf: np.ndarray, starts: np.ndarray, lens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """float64 per field; ratings have few distinct values, so each distinct text is parsed once."""
    if len(lens) and int(lens.min()) == 1 and int(lens.max()) == 1:  # "1".."5": one byte each
        digit = buf[starts].astype(np.int64) - 48
        ok = (digit >= 0) & (digit <= 9)
        return np.where(ok, digit, 0).astype(np.float64), ok
    return parse_by_unique(data, buf, starts, lens, parse_rating)
