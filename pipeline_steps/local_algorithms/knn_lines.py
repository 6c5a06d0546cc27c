"""The local k-NN emulator's output lines: verbose JSON lines as the k-NN container writes them
(``Accept: application/jsonlines; verbose=true``, docs/formats.md §4); read them with
``pipeline_steps.formats.knn_output``.

SageMaker's compact JSON (``separators=(",", ":")``, sorted keys) of float32-rounded values. By
default (``style="short"``) numbers are rendered with numpy only, no Python call per number: 9
significant digits laid out like ``repr`` (``render_float`` is the one-value definition, the
vectorised renderer equals it), which reads back to exactly the same float32. ``style="json"``
keeps ``json.dumps``'s text of the double (SageMaker's own 17-digit style). See decision 0001.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np

__all__ = ["STYLES", "dumps_line", "format_results", "render_float", "write_results"]

STYLES = ("short", "json")


def dumps_line(obj: Any) -> str:
    """One object in the compact style SageMaker's 1P algorithms write (no newline)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def render_float(x: Any, style: str = "short") -> str:
    """The text the writer gives one value (rounded to float32): the slow, obvious definition.

    ``short``: the float32 correctly rounded to 9 significant digits (``"%.8e"``, enough for
    every float32 to round-trip), then laid out as Python's ``repr`` lays out that decimal
    (trailing zeros dropped, positional for 1e-4 <= |x| < 1e16, else ``1.5e-05``/``1e+16``).
    ``json``: ``json.dumps(float(np.float32(x)))``, the double's shortest repr (up to 17 digits).
    Non-finite values raise ``ValueError`` (JSON has no NaN or Infinity).
    """
    v = float(np.float32(x))
    if not np.isfinite(v):
        raise ValueError(f"k-NN output: {v} is not a finite number (JSON has no NaN/Infinity)")
    if style == "json":
        return json.dumps(v)
    if style != "short":
        raise ValueError(f"unknown float style {style!r}; expected one of {', '.join(STYLES)}")
    return repr(float(f"{v:.8e}"))


def _row_reprs(a: np.ndarray) -> list[str]:
    """Per row, the JSON text of its values without brackets, as ``json.dumps`` writes each float.

    One ``json.dumps`` over the whole (n, k) list; integer-valued rows (labels) are printed as
    ints plus ".0", which is what ``float.__repr__`` gives them, at a fraction of the cost.
    """
    n, k = a.shape
    if n == 0:
        return []
    if k == 0:
        return [""] * n
    integral = np.all(np.isfinite(a)) and np.all(np.abs(a) < 2.0**53) and np.all(a == np.round(a))
    if integral and not np.any(np.signbit(a) & (a == 0)):
        text = json.dumps(a.astype(np.int64).tolist(), separators=(",", ":"))[2:-2].replace("],[", "|")
        return (text.replace(",", ".0,").replace("|", ".0|") + ".0").split("|")
    return json.dumps(a.tolist(), separators=(",", ":"))[2:-2].split("],[")


# --- vectorised "short" rendering -----------------------------------------------------------
#
# Every number becomes one row of a byte matrix ("cell") whose characters sit at fixed slots;
# unused slots hold NUL. Byte 0 of a cell is the separator slot (',' or NUL), set by the caller.
# The cells of a whole chunk of lines are laid side by side with the constant JSON text, and one
# boolean mask drops every NUL, which concatenates everything in order. Digits come four at a
# time from lookup tables of 10,000 little-endian uint32 words (4 ASCII digits each).

_RAW, _LEAD_UNITS, _LEAD, _TRAIL_FIRST, _TRAIL = range(5)


def _digit_tables() -> np.ndarray:
    """(5 * 10000,) uint32: 4-digit groups raw, leading zeros as NUL (keeping / dropping a lone 0),
    trailing zeros as NUL (keeping / dropping a lone 0)."""
    v = np.arange(10000)
    dig = (v[:, None] // np.array([1000, 100, 10, 1]) % 10 + 48).astype(np.uint8)
    pos = np.arange(4)
    nd = 1 + (v >= 10).astype(int) + (v >= 100) + (v >= 1000)
    lead_units = np.where(pos >= 4 - nd[:, None], dig, 0)
    lead = np.where(v[:, None] == 0, 0, lead_units)
    kept = 4 - (v % 10 == 0).astype(int) - (v % 100 == 0) - (v % 1000 == 0)
    trail_first = np.where(pos < kept[:, None], dig, 0)
    trail = np.where(v[:, None] == 0, 0, trail_first)
    tables = np.ascontiguousarray(np.stack([dig, lead_units, lead, trail_first, trail]).astype(np.uint8))
    return tables.view("<u4").reshape(-1)


_LUT = np.zeros(0, np.uint32)  # built by _init_tables() on first use (readers never need it)
_P10 = np.array([float(10**i) for i in range(23)])  # exact doubles
_P10U = np.array([10**i for i in range(20)], np.uint64)
_J0 = 30  # scale exponent j = 8 - e10 lies in [-30, 53]
_MUL = np.array([float(10**j) if j >= 0 else 1.0 for j in range(-_J0, 54)])
_DIV = np.array([float(10**-j) if j < 0 else 1.0 for j in range(-_J0, 54)])
_E_LO = -46


def _at_least_power(f: float, k: int) -> bool:
    """Exactly ``f >= 10**k`` (f finite, >= 0)."""
    num, den = f.as_integer_ratio()
    return num >= 10**k * den if k >= 0 else num * 10**-k >= den


def _decade_thresholds() -> np.ndarray:
    """T[k + 46] = the smallest float32 >= 10**k (as a double), k in [-46, 39]; inf past the range."""
    out = []
    top = float(np.finfo(np.float32).max)
    up, down = np.float32(np.inf), np.float32(0)
    for k in range(_E_LO, 40):
        if not _at_least_power(top, k):
            out.append(np.inf)
            continue
        f = np.float32(10.0**k)
        while not _at_least_power(float(f), k):
            f = np.nextafter(f, up)
        while f > 0 and _at_least_power(float(np.nextafter(f, down)), k):
            f = np.nextafter(f, down)
        out.append(float(f))
    return np.array(out)


_DECADE = np.zeros(0)


def _init_tables() -> None:
    global _LUT, _DECADE
    if not _LUT.size:
        _DECADE = _decade_thresholds()
        _LUT = _digit_tables()


_BLOCK_VALUES = 1 << 16
_ZERO_WORDS = np.array([0, 0x30, 0x3030, 0x303030], np.uint32)  # "", "0", "00", "000"
_EXP2 = np.array([(48 + a // 10) | ((48 + a % 10) << 8) for a in range(100)], np.uint32)


def _check_finite(a: np.ndarray, what: str) -> None:
    if a.size and not np.isfinite(a).all():
        bad = a.reshape(-1)[~np.isfinite(a.reshape(-1))][0]
        raise ValueError(f"k-NN output: {what} holds {bad} (rounded to float32); JSON has no NaN/Infinity")


def _decimal9(ax: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive finite float32 values (as float64, and their int32 bits) -> (D, e10) with
    ax ~= D * 10**(e10 - 8), D in [1e8, 1e9).

    D is the correctly rounded (half-even) 9-digit significand. The scaling is exact when
    j = 8 - e10 is in [0, 12] (a 24-bit float32 times 5**j <= 5**12 fits 53 bits); otherwise y
    carries at most ~1e-15 relative error, and values within 2**-19 of a rounding tie are redone
    exactly with Python's correctly rounded ``"%.8e"``.
    """
    if int(bits.min()) >= 0x00800000:  # normal float32: the exponent field is floor(log2)
        e2 = (bits >> 23) - 127
    else:  # subnormals: take the exponent of the double
        e2 = (ax.view(np.uint64) >> np.uint64(52)).astype(np.int32) - 1023
    e10 = (e2 * 78913) >> 18  # floor(e2 * log10(2)): the decade or the one below
    e10 += ax >= _DECADE[e10 + (1 - _E_LO)]
    lo, hi = int(e10.min()), int(e10.max())
    j = (8 + _J0) - e10  # index of 10**(8 - e10) in _MUL / _DIV
    y = ax * _MUL[j]
    if lo < -4 or hi > 8:  # outside [-4, 8] the scale factor is inexact or a division
        inexact = np.flatnonzero((e10 < -4) | (e10 > 8))
        y[inexact] = ax[inexact] * _MUL[j[inexact]] / _DIV[j[inexact]]
        frac = y[inexact] - np.floor(y[inexact])
        d = np.rint(y)
        for i in inexact[np.abs(frac - 0.5) < 2.0**-19].tolist():  # too close to a tie: exactly
            text = f"{float(ax[i]):.8e}"
            d[i] = float(text[0] + text[2:10])
            e10[i] = int(text[11:]) - 1 if d[i] >= 1e9 else int(text[11:])
    else:
        d = np.rint(y)
    over = d >= 1e9  # 9.999999995e.. rounds up to the next decade
    if over.any():
        d[over] = 1e8
        e10[over] += 1
    return d, e10


def _put(cells: np.ndarray, col: int, word: np.ndarray) -> None:
    """Store uint32 ``word`` (4 bytes, little endian) at byte ``col`` of every cell."""
    cells[:, col : col + 4].view("<u4")[:, 0] = word


def _lut(table: int | np.ndarray, group: np.ndarray) -> np.ndarray:
    """4 ASCII digits of every ``group`` (< 10**4) from ``table`` (a constant or one per value)."""
    return _LUT.take(group.astype(np.intp) + np.asarray(table, np.intp) * 10000)


def _int_bytes(digits: int) -> int:
    return 1 if digits <= 1 else 4 * ((digits + 3) // 4)


def _int_part(cells: np.ndarray, col: int, v: np.ndarray, digits: int) -> int:
    """Write integers ``v`` (uint64, < 10**digits) right-aligned at ``col``, leading zeros as NUL
    (a lone 0 is kept). Returns the next column."""
    if digits <= 1:
        cells[:, col] = v.astype(np.uint8) + np.uint8(48)
        return col + 1
    groups = (digits + 3) // 4
    for k in range(groups):  # k = 0: the most significant group
        place = groups - 1 - k
        g = v // _P10U[4 * place] if place else v
        if k:
            g = g % _P10U[4]
        table: int | np.ndarray = _LEAD_UNITS if place == 0 else _LEAD
        if k:
            table = np.where(v >= _P10U[4 * (place + 1)], _RAW, table)
        _put(cells, col + 4 * k, _lut(table, g))
    return col + 4 * groups


def _int_cells(v: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``[sep][sign][digits]['.']['0']`` for integer-valued floats, |v| < 1e9 (uint64)."""
    digits = len(str(int(v.max()))) if v.size else 1
    width = 4 + _int_bytes(digits)
    signed = bool(neg.any())  # no sign slot when every value is positive
    cells = np.empty((v.size, width - (not signed)), np.uint8)
    cells[:, 0] = 0
    if signed:
        cells[:, 1] = neg.view(np.uint8) * np.uint8(45)
    col = _int_part(cells, 1 + signed, v, digits)
    cells[:, col] = 46  # '.'
    cells[:, col + 1] = 48  # '0'
    return cells


def _fraction9(cells: np.ndarray, col: int, g: np.ndarray) -> None:
    """Write 9 fraction digits ``g`` (< 1e9) at ``col``: trailing zeros as NUL, the first kept."""
    g = g.astype(np.uint32)
    head = g // np.uint32(10**8)
    rest = g - head * np.uint32(10**8)
    mid = rest // np.uint32(10**4)
    lo = rest - mid * np.uint32(10**4)
    cells[:, col] = head.astype(np.uint8) + np.uint8(48)
    _put(cells, col + 1, _lut(np.where(lo != 0, _RAW, _TRAIL), mid))
    _put(cells, col + 5, _lut(_TRAIL, lo))


def _positional_width(lo: int, hi: int) -> tuple[int, int, int]:
    """(width, integer digits, zero slots) of positional cells whose e10 lie in [lo, hi]."""
    int_digits = max(1, hi + 1)
    zeros = max(0, -lo - 1)  # "0.00ddd": zeros between the point and the digits
    return 2 + _int_bytes(int_digits) + 1 + zeros + 9, int_digits, zeros


def _cells(n: int, width: int, neg: np.ndarray) -> np.ndarray:
    cells = np.empty((n, width), np.uint8)
    cells[:, 0] = 0
    cells[:, 1] = neg.view(np.uint8) * np.uint8(45)
    return cells


def _positional_cells(
    d: np.ndarray, e10: np.ndarray, neg: np.ndarray, lo: int, hi: int, width: int = 0
) -> np.ndarray:
    """``[sep][sign][int part]['.'][zeros][9 fraction digits]`` for lo <= e10 <= hi within [-4, 8]
    (d = 0 gives 0.0). Values of other decades give garbage cells of the same width."""
    own, int_digits, zeros = _positional_width(lo, hi)
    cells = _cells(d.size, max(own, width), neg)
    cells[:, own:] = 0
    if hi < 0:  # 0.ddd: all digits after the point
        ipart, frac = np.zeros(d.size, np.uint64), d
    else:
        c = np.clip(e10, -1, hi)
        step = _P10[8 - c]
        q = np.floor(d / step)
        frac = (d - q * step) * _P10[c + 1]  # the digits after the point, as a 9-digit number
        ipart = q.astype(np.uint64)
    col = _int_part(cells, 2, ipart, int_digits)
    cells[:, col] = 46  # '.'
    col += 1
    if zeros:  # -1 - e10 '0's, then NUL; the fraction digits overwrite the word's tail
        _put(cells, col, _ZERO_WORDS.take(-1 - np.clip(e10, lo, -1)))
    _fraction9(cells, col + zeros, frac)
    return cells


def _big_cells(d: np.ndarray, e10: np.ndarray, neg: np.ndarray, width: int = 0) -> np.ndarray:
    """``[sep][sign][9 digits][7 zero slots]['.']['0']`` for 9 <= e10 <= 15."""
    di = d.astype(np.uint64)
    cells = _cells(d.size, max(20, width), neg)
    cells[:, 20:] = 0
    head = di // _P10U[8]
    rest = di - head * _P10U[8]
    cells[:, 2] = head.astype(np.uint8) + np.uint8(48)
    _put(cells, 3, _lut(_RAW, rest // _P10U[4]))
    _put(cells, 7, _lut(_RAW, rest % _P10U[4]))
    for t in range(7):
        cells[:, 11 + t] = (e10 - 8 > t).view(np.uint8) * np.uint8(48)
    cells[:, 18] = 46
    cells[:, 19] = 48
    return cells


def _exponent_cells(d: np.ndarray, e10: np.ndarray, neg: np.ndarray, width: int = 0) -> np.ndarray:
    """``[sep][sign][d0]['.'][d1-d4][d5-d8]['e'][+-][xx]``, NUL for stripped digits and '.'."""
    di = d.astype(np.uint64)
    head = di // _P10U[8]
    rest = di - head * _P10U[8]
    mid, lo = rest // _P10U[4], rest % _P10U[4]
    cells = np.zeros((d.size, max(16, width)), np.uint8)
    word = (
        (neg.astype(np.uint32) * np.uint32(45 << 8))
        | ((head.astype(np.uint32) + np.uint32(48)) << np.uint32(16))
        | ((rest != 0).astype(np.uint32) * np.uint32(46 << 24))
    )
    _put(cells, 0, word)
    _put(cells, 4, _lut(np.where(lo != 0, _RAW, _TRAIL), mid))
    _put(cells, 8, _lut(_TRAIL, lo))
    sign = np.where(e10 < 0, np.uint32(45 << 8), np.uint32(43 << 8))
    _put(cells, 12, np.uint32(101) | sign | (_EXP2[np.abs(e10)] << np.uint32(16)))
    return cells


def _float_cells(a: np.ndarray, what: str = "values") -> np.ndarray:
    """Cells of the "short" rendering of a 1-D float32 array, separator slot NUL; NaN or an
    infinity raises ``ValueError`` naming ``what``."""
    if a.size == 0:
        return np.zeros((0, 2), np.uint8)
    signed = a.view(np.int32)
    neg = signed < 0
    bits = signed & np.int32(0x7FFFFFFF)
    ax = bits.view(np.float32).astype(np.float64)
    head = a[:16]
    if np.array_equal(head, np.rint(head)) and float(ax.max()) < 1e9 and np.array_equal(a, np.rint(a)):
        return _int_cells(ax.astype(np.uint64), neg)  # integers: digits + ".0"
    if int(bits.max()) >= 0x7F800000:  # exponent field all ones: inf or NaN
        _check_finite(a, what)
    zero = bits == 0
    has_zero = bool(zero.any())
    if has_zero:
        ax[zero] = 1.0
        bits[zero] = 0x3F800000
    d, e10 = _decimal9(ax, bits)
    if has_zero:
        d[zero] = 0.0
        e10[zero] = -1  # "0." + fraction 0
    lo, hi = (int(e10.min()), int(e10.max())) if e10.size else (0, 0)
    if lo >= -4 and hi <= 8:
        return _positional_cells(d, e10, neg, lo, hi)
    # several layouts: the most common one renders every value, the others overwrite their rows
    positional = (e10 >= -4) & (e10 <= 8)
    big = (e10 > 8) & (e10 <= 15)
    expo = ~(positional | big)
    p_lo = int(e10[positional].min()) if positional.any() else 0
    p_hi = int(e10[positional].max()) if positional.any() else 0
    Parts = tuple[np.ndarray, np.ndarray, np.ndarray]  # (d, e10, neg) of some values
    renders: list[tuple[np.ndarray, int, Callable[[Parts, int], np.ndarray]]] = [
        (positional, _positional_width(p_lo, p_hi)[0], lambda s, w: _positional_cells(*s, p_lo, p_hi, w)),
        (big, 20, lambda s, w: _big_cells(*s, w)),
        (expo, 16, lambda s, w: _exponent_cells(*s, w)),
    ]
    present = [(m, w, r) for m, w, r in renders if m.any()]
    width = max(w for _, w, _ in present)
    counts = [int(np.count_nonzero(m)) for m, _, _ in present]
    base = counts.index(max(counts))
    cells = present[base][2]((d, e10, neg), width)
    for i, (mask, _, render) in enumerate(present):
        if i != base:
            idx = np.flatnonzero(mask)
            cells[idx] = render((d[idx], e10[idx], neg[idx]), width)
    return cells


def _short_blocks(lab: np.ndarray, dist: np.ndarray, pred: np.ndarray) -> Iterator[bytearray]:
    """The JSON lines of float32 (n, k) labels/distances and (n,) predicted labels, in pieces of
    ~64k values (the temporaries stay in cache and malloc reuses them)."""
    _init_tables()
    n, k = dist.shape
    step = max(1, _BLOCK_VALUES // max(k, 1))
    for i in range(0, n, step):
        yield _short_block(lab[i : i + step], dist[i : i + step], pred[i : i + step])


def _short_block(lab: np.ndarray, dist: np.ndarray, pred: np.ndarray) -> bytearray:
    n = dist.shape[0]
    parts: list[bytes | np.ndarray] = [b'{"distances":[']
    for j, arr in enumerate((dist, lab, pred[:, None])):
        cells = _float_cells(arr.reshape(-1), ("distances", "labels", "predicted_label")[j])
        if cells.size:
            cells[:, 0] = 44  # ','
            cells.reshape(n, -1)[:, 0] = 0  # the first value of a list has no separator
        parts.append(cells.reshape(n, -1))
        parts.append((b'],"labels":[', b'],"predicted_label":', b"}\n")[j])
    widths = [p.shape[1] if isinstance(p, np.ndarray) else len(p) for p in parts]
    text = bytearray(n * sum(widths))  # numpy writes into it: no copy before the translate
    rows = np.frombuffer(text, np.uint8).reshape(n, -1)
    col = 0
    for part, w in zip(parts, widths, strict=True):
        rows[:, col : col + w] = np.frombuffer(part, np.uint8) if isinstance(part, bytes) else part
        col += w
    del rows
    return text.translate(None, b"\0")


def _mode(labels: np.ndarray) -> np.ndarray:
    """Most frequent label per row; ties go to the smallest label."""
    n, k = labels.shape
    if k == 0:
        return np.full(n, np.nan)
    s = np.sort(labels, axis=1)
    start = np.ones((n, k), bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(k), 0), axis=1)
    run_count = np.arange(k) - run_start + 1
    return s[np.arange(n), np.argmax(run_count, axis=1)]


def _prepare(
    labels: Any, distances: Any, predicted_labels: Any, predictor_type: str, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (n, k) labels and distances sorted by ascending distance, and (n,) predicted labels.

    ``check_finite``: raise ``ValueError`` on NaN/inf (the short writer checks as it renders)."""
    lab, dist = np.asarray(labels), np.asarray(distances)
    if lab.dtype not in (np.float32, np.float64):
        lab = lab.astype(np.float64)
    if dist.dtype not in (np.float32, np.float64):
        dist = dist.astype(np.float64)
    if lab.ndim != 2 or lab.shape != dist.shape:
        raise ValueError(f"labels {lab.shape} and distances {dist.shape} must be (n, k) arrays of one shape")
    # a stable sort of rows that are already ascending (the transform's case) is the identity
    if dist.shape[1] > 1 and not np.all(dist[:, 1:] >= dist[:, :-1]):
        order = np.argsort(dist, axis=1, kind="stable")
        lab = np.take_along_axis(lab, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
    with np.errstate(over="ignore"):  # out of float32 range: inf, rejected below
        lab = lab.astype(np.float32)
        dist = dist.astype(np.float32)
    if predicted_labels is None:
        if predictor_type == "regressor":
            pred = lab.astype(np.float64).mean(axis=1) if lab.shape[1] else np.full(lab.shape[0], np.nan)
        else:
            pred = _mode(lab)
    else:
        pred = np.asarray(predicted_labels).reshape(-1)
        if pred.shape[0] != lab.shape[0]:
            raise ValueError(f"{pred.shape[0]} predicted labels for {lab.shape[0]} queries")
    with np.errstate(over="ignore"):
        pred = pred.astype(np.float32)
    if check_finite:
        for what, arr in (("distances", dist), ("labels", lab), ("predicted_label", pred)):
            _check_finite(arr, what)
    return lab, dist, pred


def _format_pieces(labels, distances, predicted_labels, predictor_type: str, style: str) -> list:
    """The output text as a list of bytes-like pieces (all rendered before any is returned)."""
    if style not in STYLES:
        raise ValueError(f"unknown float style {style!r}; expected one of {', '.join(STYLES)}")
    lab, dist, pred = _prepare(labels, distances, predicted_labels, predictor_type, style != "short")
    if style == "short":
        return list(_short_blocks(lab, dist, pred))
    if style != "json":
        raise ValueError(f"unknown float style {style!r}; expected one of {', '.join(STYLES)}")
    rows = zip(
        _row_reprs(dist.astype(np.float64)),
        _row_reprs(lab.astype(np.float64)),
        _row_reprs(pred.astype(np.float64)[:, None]),
        strict=True,
    )
    text = "".join([f'{{"distances":[{d}],"labels":[{lb}],"predicted_label":{p}}}\n' for d, lb, p in rows])
    return [text.encode("ascii")]


def format_results(
    labels: Any,
    distances: Any,
    predicted_labels: Any = None,
    *,
    predictor_type: str = "classifier",
    style: str = "short",
) -> str:
    """Verbose JSON lines for ``(n, k)`` neighbour labels and distances, one ``\\n``-ended line each.

    Each row is re-ordered by ascending distance (stable), as SageMaker returns it. Values are
    rounded to float32 and rendered as ``render_float(x, style)``: by default ("short") 9
    significant digits, which read back (``json.loads`` then float32) to exactly the same
    float32; ``style="json"`` gives ``json.dumps(float(np.float32(x)))``, SageMaker's own
    17-digit rendering. Without ``predicted_labels`` the classifier label is the most frequent
    neighbour label (ties: the smallest), the regressor label the mean. NaN or infinite values
    (after rounding) raise ``ValueError``: JSON has no NaN.
    """
    pieces = _format_pieces(labels, distances, predicted_labels, predictor_type, style)
    return b"".join(pieces).decode("ascii")


def write_results(
    fileobj: BinaryIO,
    labels: Any,
    distances: Any,
    predicted_labels: Any = None,
    *,
    predictor_type: str = "classifier",
    chunk_rows: int = 65536,
    style: str = "short",
) -> int:
    """Stream ``format_results`` (UTF-8) to a binary file object in chunks; returns bytes written."""
    lab, dist = np.asarray(labels), np.asarray(distances)
    pred = None if predicted_labels is None else np.asarray(predicted_labels).reshape(-1)
    total = 0
    step = max(1, int(chunk_rows))
    for start in range(0, lab.shape[0], step):
        stop = start + step
        pieces = _format_pieces(
            lab[start:stop],
            dist[start:stop],
            None if pred is None else pred[start:stop],
            predictor_type,
            style,
        )
        for data in pieces:  # written as they are: no joining copy
            fileobj.write(data)
            total += len(data)
    return total
