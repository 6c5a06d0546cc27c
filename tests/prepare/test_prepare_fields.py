"""Field conversions of the SQL (query.TIMESTAMP, query.RATING), evaluated by the engine."""

from __future__ import annotations

import duckdb

from pipeline_steps.prepare import query


def _eval(expression: str, values: list[str]) -> list:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE v (k INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
    return [row[0] for row in con.execute(f"SELECT {expression} FROM v ORDER BY k").fetchall()]


def test_timestamps_accept_unix_decimal_and_iso_forms():
    vals = ["1500000000", "1500000000.9", "2017-07-14T02:40:00Z", "2017-07-14 02:40:00+00:00", "2017-07-14"]
    vals += ["2017-07-14T04:40:00+02:00", "soon", "", "1e9"]
    value = _eval(query.TIMESTAMP.format(t="x"), vals)
    ok = [v is not None for v in value]
    assert ok == [True] * 6 + [False, False, True]
    assert value[:6] == [1500000000, 1500000000, 1500000000, 1500000000, 1499990400, 1500000000]
    assert value[8] == 1_000_000_000


def test_integer_timestamps_are_exact_up_to_the_limit():
    vals = ["1700000000000000000", "4611686018427387903", "-4611686018427387903", "0000000000000001", "+3"]
    assert _eval(query.TIMESTAMP.format(t="x"), vals) == [int(v) for v in vals]


def test_decimal_timestamps_round_down_and_hex_is_not_a_number():
    vals = ["1.5", "-1.5", "1700000000.999", "2.0", "1_000", "0x10"]
    assert _eval(query.TIMESTAMP.format(t="x"), vals) == [1, -2, 1700000000, 2, 1000, None]


def test_ratings_accept_finite_numbers_only():
    vals = ["5", "4.5", "3", "x", "", "1e0", "inf", "0004.50", "-1", "nan", "4.000000000001"]
    value = _eval(query.RATING.format(r="x"), vals)
    ok = [v is not None for v in value]
    assert ok == [True, True, True, False, False, True, False, True, True, False, True]
    assert [v for v in value if v is not None] == [5.0, 4.5, 3.0, 1.0, 4.5, -1.0, 4.0]


def test_timestamps_out_of_int64_range_are_bad_not_wrapped():
    # 1e20 used to be cast to int64 (INT64_MIN) and then corrupted the last-n holdout order.
    vals = [
        "1e20",
        "99999999999999999999",
        "-1e300",
        "1700000000000000000",
        "-86400",
        "12",
        "4611686018427387904",
    ]
    value = _eval(query.TIMESTAMP.format(t="x"), vals)
    assert [v is not None for v in value] == [False, False, False, True, True, True, False]
    assert value[4:6] == [-86400, 12]
