"""Vectorised field converters: integer parsing, timestamps, hashing independent of context."""

from __future__ import annotations

import numpy as np

from pipeline_steps.prepare import fields


def _fields(values: list[str], sep: str = ","):
    data = sep.join(values).encode("utf-8")
    lens = np.array([len(v.encode("utf-8")) for v in values], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens + len(sep))[:-1]]).astype(np.int64)
    return data, fields.padded(data), starts, lens


def test_parse_uint_matches_python_on_random_and_edge_values():
    rng = np.random.default_rng(0)
    vals = [str(x) for x in rng.integers(0, 10**16, 2000)] + [str(x) for x in rng.integers(0, 1000, 300)]
    vals += ["", "12a4", "-5", "1.5", " 12", "9" * 16, "9" * 17, "0000000000000001", "+3", "1e5", "١٢", "7"]
    rng.shuffle(vals)
    _, buf, starts, lens = _fields(vals)
    value, ok = fields.parse_uint(buf, starts, lens)
    expected_ok = [v.isascii() and v.isdigit() and 0 < len(v) <= 18 for v in vals]
    assert ok.tolist() == expected_ok
    assert all(int(vals[k]) == value[k] for k in np.flatnonzero(ok))


def test_timestamps_accept_unix_decimal_and_iso_forms():
    vals = ["1500000000", "1500000000.9", "2017-07-14T02:40:00Z", "2017-07-14 02:40:00+00:00", "2017-07-14"]
    vals += ["2017-07-14T04:40:00+02:00", "soon", "", "1e9"]
    data, buf, starts, lens = _fields(vals)
    value, ok = fields.timestamps(data, buf, starts, lens)
    assert ok.tolist() == [True] * 6 + [False, False, True]
    assert value[:6].tolist() == [1500000000, 1500000000, 1500000000, 1500000000, 1499990400, 1500000000]
    assert value[8] == 1_000_000_000


def test_ratings_parse_each_distinct_text_once():
    vals = ["5", "4.5", "3", "x", "", "1e0", "inf", "0004.50", "-1"]
    data, buf, starts, lens = _fields(vals)
    value, ok = fields.ratings(data, buf, starts, lens)
    assert ok.tolist() == [True, True, True, False, False, True, False, True, True]
    assert value[ok].tolist() == [5.0, 4.5, 3.0, 1.0, 4.5, -1.0]
    long = ["4.000000000001", "3"]  # > 8 bytes: hashed instead of packed
    data, buf, starts, lens = _fields(long)
    assert fields.ratings(data, buf, starts, lens)[0].tolist() == [4.000000000001, 3.0]


def test_hash_does_not_depend_on_neighbours_or_position():
    ids = ["a", "ab", "abcdefgh", "abcdefghi", "x" * 17, "x" * 40, "東京", "a b, c"]
    _, buf, starts, lens = _fields(ids)
    h1, h2 = fields.hash_fields(buf, starts, lens)
    for k, v in enumerate(ids):
        _, b1, s1, l1 = _fields(["pad" * k, v], sep="\t")
        g1, g2 = fields.hash_fields(b1, s1[1:], l1[1:])
        assert (g1[0], g2[0]) == (h1[k], h2[k])
    assert len(set(h1.tolist())) == len(ids) and len(set(h2.tolist())) == len(ids)
    # Zero bytes past the end never leak in: a prefix differs from the longer id.
    _, b2, s2, l2 = _fields(["abc", "abc\x00"])
    assert len(set(fields.hash_fields(b2, s2, l2)[0].tolist())) == 2


def test_timestamps_out_of_int64_range_are_bad_not_wrapped():
    # 1e20 used to be cast to int64 (INT64_MIN) and then corrupted the last-n holdout order.
    vals = ["1e20", "99999999999999999999", "-1e300", "1700000000000000000", "-86400", "12"]
    data, buf, starts, lens = _fields(vals)
    value, ok = fields.timestamps(data, buf, starts, lens)
    assert ok.tolist() == [False, False, False, True, True, True]
    assert value[4:].tolist() == [-86400, 12]
