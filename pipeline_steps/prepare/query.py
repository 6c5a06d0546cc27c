"""Prepare's relational core as SQL: the definition of what the step does to the rows, run by DuckDB.

1. `read_sql` + `PARSE`: each file is one `read_csv` with the layout found from its first lines
   (`layout.py`), every column as text; rows with a wrong number of fields are the reader's
   rejects. `PARSE` converts and validates: the first failing rule is the row's bad-row reason.
   Files are appended to one table in key order, each in record order (the header, if any, is
   kept as a row with reason `HEADER`), so the row id is the input order: `seq` (`with_seq`).
2. `ID_ORDER`: a code per distinct id of the valid rows, in the order of the dense indices:
   all-integer ids (up to 38 digits) numerically, anything else by UTF-8 bytes (= code points).
   `CODED` puts the codes in place of the strings, so the rules below sort integers.
3. `LATEST`: one row per (user, item), the latest by timestamp, then the later row in input order.
4. `MIN_COUNTS`: drop users and items below their minimum count; re-applied until nothing changes.
5. `LAST_N`: per user with more than n rows, the last n by (timestamp, input order) are held out.

The dense indices are then the ranks of the codes that have training rows (engine.py: a lookup
array, as cheap in numpy as a join here).

Dialect: what DuckDB and Spark SQL share (window functions, CASE, TRY_CAST, joins), except where a
`duckdb:` note gives the Spark SQL form; `to_spark` renders a statement for Spark with those
substitutions (`SPARK`), so the Spark engine runs this same text (spark_engine.py).
"""

from __future__ import annotations

import re

MAX_ID_BYTES = 1024  # an id becomes part of a DynamoDB key (common/table.py): longer = bad row
TIMESTAMP_LIMIT = 2**62  # |epoch seconds|: differences of two timestamps fit in int64
HEADER = -1  # the reason of a file's header row: neither valid nor bad, not counted
REASONS = (
    "missing field",
    "extra field",
    "empty user id",
    "user id too long",
    "empty item id",
    "item id too long",
    "non-numeric rating",
    "bad timestamp",
)  # PARSE's reason k is REASONS[k + 1]; the first two are the reader's rejects

# Unix seconds (integer, or decimal rounded down) or ISO 8601 date/datetime (naive = UTC: the
# session time zone). duckdb: epoch(timestamptz) (Spark: unix_timestamp, also rounding down);
# isfinite (Spark: abs(x) < Infinity).
_LIMIT = f"BETWEEN {1 - TIMESTAMP_LIMIT} AND {TIMESTAMP_LIMIT - 1}"
TIMESTAMP = f"""CASE
  WHEN TRY_CAST({{t}} AS BIGINT) {_LIMIT}
    AND TRY_CAST({{t}} AS DOUBLE) = TRY_CAST({{t}} AS BIGINT)
    THEN TRY_CAST({{t}} AS BIGINT)
  WHEN abs(TRY_CAST({{t}} AS DOUBLE)) < {float(TIMESTAMP_LIMIT)}
    THEN CAST(floor(TRY_CAST({{t}} AS DOUBLE)) AS BIGINT)
  ELSE CAST(floor(epoch(TRY_CAST({{t}} AS TIMESTAMPTZ))) AS BIGINT)
END"""  # integral: the exact integer cast (the double one rounds beyond 2^53; the integer one rounds 1.5)
RATING = "CASE WHEN isfinite(TRY_CAST({r} AS DOUBLE)) THEN CAST({r} AS FLOAT) END"

# duckdb: strlen counts bytes (Spark: octet_length). The header, if any, is the first record (the
# engine marks it HEADER by its row id). No row number here: a numbering window (WITH ORDINALITY)
# makes DuckDB read the file on one thread; the order-preserving insert keeps the order anyway.
PARSE = f"""
SELECT u, i, rating, ts,
  CASE
    WHEN coalesce(u, '') = '' THEN 1
    WHEN strlen(u) > {MAX_ID_BYTES} THEN 2
    WHEN coalesce(i, '') = '' THEN 3
    WHEN strlen(i) > {MAX_ID_BYTES} THEN 4
    WHEN rating IS NULL AND {{has_rating}} THEN 5
    WHEN ts IS NULL THEN 6
  END AS reason
FROM (SELECT {{u}} AS u, {{i}} AS i, {{rating}} AS rating, {{ts}} AS ts FROM {{read}})"""

# duckdb: HUGEINT (Spark: DECIMAL(38, 0)); regexp_full_match (Spark: RLIKE '^(...)$').
ID_ORDER = """
WITH ids AS (SELECT DISTINCT {col} AS id FROM {source} WHERE reason IS NULL),
numeric AS (
  SELECT coalesce(bool_and(regexp_full_match(id, '0|-?[1-9][0-9]{{0,36}}')), false) AS yes FROM ids
)
SELECT id, CAST(row_number() OVER (
  ORDER BY CASE WHEN (SELECT yes FROM numeric) THEN CAST(id AS HUGEINT) END, id) - 1 AS INTEGER) AS ix
FROM ids"""

CODED = """
SELECT du.ix AS u, di.ix AS i, rating, ts, seq
FROM {source} t JOIN user_ids du ON t.u = du.id JOIN item_ids di ON t.i = di.id
WHERE reason IS NULL"""

LATEST = """
SELECT u, i, rating, ts, seq FROM (
  SELECT *, row_number() OVER (PARTITION BY u, i ORDER BY ts DESC, seq DESC) AS k FROM {source}
) WHERE k = 1"""

MIN_COUNTS = """
SELECT * FROM {source}
WHERE u IN (SELECT u FROM {source} GROUP BY u HAVING count(*) >= {min_user})
  AND i IN (SELECT i FROM {source} GROUP BY i HAVING count(*) >= {min_item})"""

LAST_N = """
SELECT *, n > {n} AND from_end <= {n} AS held FROM (
  SELECT *, count(*) OVER (PARTITION BY u) AS n,
    row_number() OVER (PARTITION BY u ORDER BY ts DESC, seq DESC) AS from_end
  FROM {source}
)"""

# Test rows (explicit split) with codes (-1: id without training rows) and whether the pair trains
# (`kept` holds each pair once: LATEST). A join, not EXISTS in the select list (Spark rejects that).
TEST_CODED = """
SELECT coalesce(du.ix, -1) AS u, coalesce(di.ix, -1) AS i, rating, seq, k.u IS NOT NULL AS in_train
FROM {source} t LEFT JOIN user_ids du ON t.u = du.id LEFT JOIN item_ids di ON t.i = di.id
  LEFT JOIN (SELECT u, i FROM {kept}) k ON k.u = du.ix AND k.i = di.ix"""

# The Spark SQL form of each DuckDB-only construct above (the notes), applied in order by `to_spark`:
# (DuckDB pattern, Spark SQL replacement). Everything else is shared text.
SPARK = (
    # the input order: the Spark reader adds a `seq` column itself (spark_engine.py)
    (r"SELECT rowid AS seq, \* FROM", "SELECT * FROM"),
    (r"\bstrlen\(", "octet_length("),
    (r"\bHUGEINT\b", "DECIMAL(38, 0)"),
    (r"regexp_full_match\((\w+), '([^']*)'\)", r"\1 RLIKE '^(\2)$'"),
    (r"epoch\(TRY_CAST\((\w+) AS TIMESTAMPTZ\)\)", r"unix_timestamp(TRY_CAST(\1 AS TIMESTAMP))"),
    # NaN compares above every number in Spark, so this is false for NaN and the infinities
    (r"isfinite\((TRY_CAST\(\w+ AS DOUBLE\))\)", r"abs(\1) < CAST('Infinity' AS DOUBLE)"),
)


def to_spark(text: str) -> str:
    """The same statement in Spark SQL: the substitutions of `SPARK` (the `duckdb:` notes)."""
    for pattern, replacement in SPARK:
        text = re.sub(pattern, replacement, text)
    return text


def with_seq(table: str, where: str = "") -> str:
    """The rows of a parsed table with `seq`, their input order. duckdb: the row id of a table filled
    by order-preserving inserts (Spark: an input-order column added by the reader)."""
    return f"(SELECT rowid AS seq, * FROM {table}{' WHERE ' + where if where else ''})"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_sql(path: str, *, delimiter: str, quote: str, crlf: bool, ncol: int, gzip: bool,
             encoding: str, rejects: str) -> str:  # fmt: skip
    """The `read_csv` call for one file: every column as text, wrong field counts go to `rejects`.

    Blank lines are skipped (whitespace-only ones are rejects with no text, ignored). duckdb: the
    header is read as a record (`skip` and `header` miscount leading blank lines with mixed line
    ends), and `new_line` is set from the first line (auto-detection trips on mixed line ends).
    """
    columns = "{" + ", ".join(f"'c{k}': 'VARCHAR'" for k in range(ncol)) + "}"
    new_line = "" if crlf else "new_line='\\n', "
    return (
        f"read_csv({literal(path)}, delim={literal(delimiter)}, quote={literal(quote)}, "
        f"escape={literal(quote)}, header=false, {new_line}columns={columns}, "
        f"auto_detect=false, compression={literal('gzip' if gzip else 'none')}, "
        f"encoding={literal(encoding)}, store_rejects=true, rejects_table={literal(rejects)}, "
        f"rejects_scan={literal(rejects + '_scan')})"
    )


def parse_sql(read: str, user: int, item: int, rating: int | None, ts: int | None) -> str:
    return PARSE.format(
        read=read,
        u=f"c{user}",
        i=f"c{item}",
        rating=RATING.format(r=f"c{rating}") if rating is not None else "CAST(NULL AS FLOAT)",
        has_rating=str(rating is not None).lower(),
        ts=TIMESTAMP.format(t=f"c{ts}") if ts is not None else "CAST(0 AS BIGINT)",
    )
