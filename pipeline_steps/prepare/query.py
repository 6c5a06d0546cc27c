"""Prepare's relational core as SQL: the definition of what the step does to the rows, run by DuckDB.

Read (`read_sql` + `PARSE`): each file is one `read_csv` with the layout found from its first lines
(`layout.py`), every column as text; rows with a wrong number of fields are the reader's rejects.
`PARSE` converts and validates: the first failing rule names the row's bad-row reason.
Then, on the valid rows:

1. `LATEST`: one row per (user, item), the latest by timestamp, then the later row in input order
   (files in key order, then line order = `(file_no, ord)`).
2. `MIN_COUNTS`: drop users and items below their minimum count; re-applied until nothing changes.
3. `LAST_N`: per user with more than n rows, the last n by (timestamp, input order) are held out.
4. `ID_ORDER`: dense indices over the ids with training rows; all-integer ids (up to 38 digits)
   numerically, anything else by UTF-8 bytes (= code point order).

Dialect: the statements use the subset DuckDB and Spark SQL share (window functions, `CASE`,
`TRY_CAST`, `regexp`), except where marked `-- duckdb:` with the Spark SQL form next to it.
"""

from __future__ import annotations

MAX_ID_BYTES = 1024  # an id becomes part of a DynamoDB key (common/table.py): longer = bad row
TIMESTAMP_LIMIT = 2**62  # |epoch seconds|: differences of two timestamps fit in int64
REASONS = (
    "missing field",
    "extra field",
    "empty user id",
    "user id too long",
    "empty item id",
    "item id too long",
    "non-numeric rating",
    "bad timestamp",
)

# Unix seconds (integer or decimal) or ISO 8601 date/datetime (naive = UTC: the session time zone).
# duckdb: strlen = bytes (Spark: octet_length); epoch(timestamptz) (Spark: unix_timestamp, which
# drops the fraction as floor does here).
TIMESTAMP = f"""CASE
  WHEN regexp_full_match({{t}}, '\\s*[+-]?[0-9]+\\s*')
    THEN CASE WHEN abs(TRY_CAST({{t}} AS HUGEINT)) < {TIMESTAMP_LIMIT} THEN TRY_CAST({{t}} AS BIGINT) END
  WHEN abs(TRY_CAST({{t}} AS DOUBLE)) < {float(TIMESTAMP_LIMIT)}
    THEN CAST(floor(TRY_CAST({{t}} AS DOUBLE)) AS BIGINT)
  ELSE CAST(floor(epoch(TRY_CAST({{t}} AS TIMESTAMPTZ))) AS BIGINT)
END"""
RATING = "CASE WHEN isfinite(TRY_CAST({r} AS DOUBLE)) THEN CAST({r} AS FLOAT) END"

# One file's rows with their bad-row reason (NULL = valid). {read} is `read_sql(...)`.
PARSE = f"""
SELECT file_no, ord, u, i, rating, ts,
  CASE
    WHEN coalesce(u, '') = '' THEN 1
    WHEN strlen(u) > {MAX_ID_BYTES} THEN 2
    WHEN coalesce(i, '') = '' THEN 3
    WHEN strlen(i) > {MAX_ID_BYTES} THEN 4
    WHEN rating IS NULL AND {{has_rating}} THEN 5
    WHEN ts IS NULL THEN 6
  END AS reason
FROM (
  SELECT {{file_no}} AS file_no, ordinality - {{header}} AS ord, {{u}} AS u, {{i}} AS i,
    {{rating}} AS rating, {{ts}} AS ts
  FROM {{read}} WITH ORDINALITY
  WHERE ordinality > {{header}}
)"""  # reason k = REASONS[k + 1]; the header line (if any) is the file's first record

LATEST = """
SELECT file_no, ord, u, i, rating, ts FROM (
  SELECT *, row_number() OVER (PARTITION BY u, i ORDER BY ts DESC, file_no DESC, ord DESC) AS k
  FROM {source} WHERE reason IS NULL
) WHERE k = 1"""

MIN_COUNTS = """
SELECT * FROM {source}
WHERE u IN (SELECT u FROM {source} GROUP BY u HAVING count(*) >= {min_user})
  AND i IN (SELECT i FROM {source} GROUP BY i HAVING count(*) >= {min_item})"""

LAST_N = """
SELECT *, n > {n} AND from_end <= {n} AS held FROM (
  SELECT *, count(*) OVER (PARTITION BY u) AS n,
    row_number() OVER (PARTITION BY u ORDER BY ts DESC, file_no DESC, ord DESC) AS from_end
  FROM {source}
)"""

# duckdb: HUGEINT (Spark: DECIMAL(38, 0)); regexp_full_match (Spark: RLIKE '^...$').
ID_ORDER = """
WITH ids AS (SELECT DISTINCT {col} AS id FROM {source}),
numeric AS (SELECT coalesce(bool_and(regexp_full_match(id, '0|-?[1-9][0-9]{{0,36}}')), false) AS yes FROM ids)
SELECT id, CAST(row_number() OVER (
  ORDER BY CASE WHEN (SELECT yes FROM numeric) THEN CAST(id AS HUGEINT) END, id) - 1 AS INTEGER) AS ix
FROM ids"""


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


def parse_sql(read: str, file_no: int, header: bool, user: int, item: int, rating: int | None,
              ts: int | None) -> str:  # fmt: skip
    return PARSE.format(
        read=read,
        file_no=file_no,
        header=int(header),
        u=f"c{user}",
        i=f"c{item}",
        rating=RATING.format(r=f"c{rating}") if rating is not None else "CAST(NULL AS FLOAT)",
        has_rating=str(rating is not None).lower(),
        ts=TIMESTAMP.format(t=f"c{ts}") if ts is not None else "CAST(0 AS BIGINT)",
    )
