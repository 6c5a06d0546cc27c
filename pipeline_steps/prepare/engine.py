"""Runs the SQL of `query.py` on DuckDB: files in, bad-row report and numpy arrays out.

What stays in Python, and why (each only on the files that need it):
- the layout of each file from its first lines (`layout.py`: our aliases and header rule);
- exact `file:line` of the (at most 5 per reason) example bad rows: the reader numbers records, and
  its line numbers drift after quoted newlines, so one `csv` pass up to the last example finds them;
- the message for bytes that do not decode (file, line, byte and column);
- codecs DuckDB does not read (anything but UTF-8 and Latin-1) are converted to UTF-8 first.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import shutil
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline_steps.prepare import query
from pipeline_steps.prepare.config import PrepareConfig
from pipeline_steps.prepare.layout import Layout, PrepareInputError, decoded, detect, read_head

if TYPE_CHECKING:  # imported where used: the Spark engine runs where DuckDB is not installed
    import duckdb

MAX_EXAMPLES_PER_REASON = 5
# Two threads and 1 GB before spilling: measured on the 10M-row benchmark (decision 0014).
THREADS = 2
MEMORY_LIMIT = "1GB"
_WIDTH = {"MISSING COLUMNS": "missing field", "TOO MANY COLUMNS": "extra field"}


@dataclass
class Stats:
    rows_read: int = 0
    rows_valid: int = 0
    bad: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        return sum(self.bad.values())

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_valid": self.rows_valid,
            "bad_rows": self.bad_rows,
            "bad_rows_by_reason": dict(sorted(self.bad.items())),
            "examples": self.examples,
            "files": self.files,
        }


@dataclass(frozen=True)
class LocalFile:
    key: str
    path: str


def connect(work_dir: str) -> duckdb.DuckDBPyConnection:
    import duckdb

    # No extension is ever downloaded (the Lambda has no network path to one; ICU is built in).
    settings: dict[str, str | bool | int | float | list[str]] = {
        "threads": THREADS,
        "memory_limit": MEMORY_LIMIT,
        "autoinstall_known_extensions": False,
        # The input order is the row id of the parsed tables (query.with_seq): inserts keep it.
        "preserve_insertion_order": True,
    }
    con = duckdb.connect(config=settings)
    con.execute(f"SET temp_directory = {query.literal(os.path.join(work_dir, 'spill'))}")
    con.execute("SET TimeZone = 'UTC'")  # naive ISO timestamps are UTC
    con.execute("SET enable_progress_bar = false")
    return con


class Engine:
    def __init__(self, config: PrepareConfig, work_dir: str) -> None:
        self.config, self.work_dir = config, work_dir
        self.con = connect(work_dir)
        self._n = 0
        self.starts: dict[str, list[tuple[int, bool]]] = {}  # per table and file: (first row id, header)
        codec = codecs.lookup(config.encoding).name
        self.duck_encoding = {"utf-8": "utf-8", "iso8859-1": "latin-1"}.get(codec)

    def sql(self, text: str) -> Any:
        return self.con.execute(text)

    def scalar(self, text: str) -> Any:
        row = self.sql(text).fetchone()
        return row[0] if row else None

    def count(self, table: str) -> int:
        return int(self.scalar(f"SELECT count(*) FROM {table}"))

    def load(self, files: list[LocalFile], table: str, channel: str) -> Stats:
        """All files of one channel into `table` (rows with their bad-row reason), and the report."""
        self._create(table)
        self.starts[table] = []
        stats = Stats()
        layouts: dict[int, tuple[Layout, Counter]] = {}
        for file_no, f in enumerate(files):
            layout, summary = self._load_file(f, file_no, table)
            if layout is not None:
                layouts[file_no] = (layout, summary.pop("wrong"))
            stats.files.append(summary)
        self._loaded(table)
        self._report(files, table, stats, layouts)
        _check_quality(self.config, stats, channel)
        return stats

    def _loaded(self, table: str) -> None:
        """Every file of `table` is in (the rows are already stored here)."""

    def _create(self, table: str) -> None:
        self.sql(f"CREATE TABLE {table} (u VARCHAR, i VARCHAR, rating FLOAT, ts BIGINT, reason TINYINT)")

    def _load_file(self, f: LocalFile, file_no: int, table: str) -> tuple[Layout | None, dict]:
        gz = _is_gzip(f.path)
        head = read_head(f.path, gz, self.config.encoding, f.key)
        summary: dict = {"key": f.key, "gzip": gz}
        start = self.count(table)  # row ids of appended rows continue from here (no deletes)
        self.starts[table].append((start, False))
        if head is None:
            return None, summary | {"rows_read": 0, "rows_valid": 0}
        first, second = head
        layout = detect(first, second, self.config, f.key)
        self._n += 1
        rejects = f"rejects_{self._n}"
        path = f.path if self.duck_encoding else self._to_utf8(f, gz)
        read = query.read_sql(
            path,
            delimiter=layout.delimiter,
            quote=self.config.quotechar,
            crlf=first.endswith("\r"),
            ncol=layout.ncol,
            gzip=gz and bool(self.duck_encoding),
            encoding=self.duck_encoding or "utf-8",
            rejects=rejects,
        )
        parse = query.parse_sql(read, layout.user, layout.item, layout.rating, layout.timestamp)
        import duckdb

        try:
            self.sql(f"INSERT INTO {table} {parse}")
        except duckdb.Error as exc:
            raise PrepareInputError(f"{f.key}: {str(exc).splitlines()[0]}") from None
        if layout.header:
            self.sql(f"UPDATE {table} SET reason = {query.HEADER} WHERE rowid = {start}")
        self.starts[table][-1] = (start, layout.header)
        wrong = self._rejects(f, gz, rejects)
        self.sql(f"DROP TABLE {rejects}; DROP TABLE {rejects}_scan")
        rows = self.sql(
            f"SELECT count(*) FILTER (WHERE reason IS DISTINCT FROM {query.HEADER}), "
            f"count(*) FILTER (WHERE reason IS NULL) FROM {table} WHERE rowid >= {start}"
        ).fetchone()
        read_rows, valid = int(rows[0]), int(rows[1])
        summary |= {"rows_read": read_rows + sum(wrong.values()), "rows_valid": valid, "wrong": wrong}
        return layout, summary | layout.describe()

    def _rejects(self, f: LocalFile, gz: bool, rejects: str) -> Counter:
        """Rows with a wrong number of fields, by reason; any other reader error stops the run."""
        rows = self.sql(
            f"SELECT error_type, min(line), count(DISTINCT byte_position), min(error_message) FROM {rejects} "
            "WHERE trim(csv_line, ' ' || chr(9) || chr(10) || chr(13)) <> '' GROUP BY error_type ORDER BY 2"
        ).fetchall()
        out: Counter = Counter()
        for error_type, line, n, message in rows:
            if error_type in _WIDTH:
                out[_WIDTH[error_type]] += int(n)
            elif error_type == "INVALID ENCODING":
                _raise_decode_error(f, gz, self.config.encoding)
            else:
                raise PrepareInputError(f"{f.key}:{line}: malformed quoted field ({message})")
        return out

    def _report(
        self, files: list[LocalFile], table: str, stats: Stats, layouts: dict[int, tuple[Layout, Counter]]
    ) -> None:
        """Counts by reason and the first examples per reason with their exact file:line."""
        stats.rows_read = sum(s["rows_read"] for s in stats.files)
        stats.rows_valid = sum(s["rows_valid"] for s in stats.files)
        for _layout, counts in layouts.values():
            stats.bad.update(counts)
        for code, n in self.sql(
            f"SELECT reason, count(*) FROM {table} WHERE reason > 0 GROUP BY 1"
        ).fetchall():
            stats.bad[query.REASONS[code + 1]] += int(n)
        if not stats.bad:
            return
        firsts = self.sql(
            f"SELECT seq, reason FROM (SELECT seq, reason, row_number() OVER "
            f"(PARTITION BY reason ORDER BY seq) AS k FROM {query.with_seq(table, 'reason > 0')}) "
            f"WHERE k <= {MAX_EXAMPLES_PER_REASON}"
        ).fetchall()
        starts = self.starts[table]
        wanted: dict[int, dict[int, str]] = {}
        for seq, code in firsts:  # the file is the last one starting at or before the row
            file_no = bisect_right([s for s, _ in starts], int(seq)) - 1
            start, header = starts[file_no]
            ordinal = int(seq) - start + 1 - header  # record number among the file's data records
            wanted.setdefault(file_no, {})[ordinal] = query.REASONS[code + 1]
        found: list[tuple[int, int, str]] = []
        for file_no in sorted(set(wanted) | {k for k, (_, c) in layouts.items() if c}):
            layout, wrong = layouts[file_no]
            gz = stats.files[file_no]["gzip"]
            lines = _example_lines(
                files[file_no], gz, layout, self.config, wanted.get(file_no, {}), sum(wrong.values())
            )
            found += [(file_no, line, reason) for line, reason in lines]
        shown: Counter = Counter()
        for _file_no, line, reason in sorted(found):
            if shown[reason] < MAX_EXAMPLES_PER_REASON:
                shown[reason] += 1
                stats.examples.append(f"{files[_file_no].key}:{line}: {reason}")

    def _to_utf8(self, f: LocalFile, gz: bool) -> str:
        """A UTF-8 copy of a file in a codec DuckDB does not read (line numbers unchanged)."""
        self._n += 1
        out = os.path.join(self.work_dir, f"utf8-{self._n}")
        try:
            with (
                _open_text(f.path, gz, self.config.encoding, f.key) as src,
                open(out, "w", encoding="utf-8") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        except UnicodeDecodeError:
            _raise_decode_error(f, gz, self.config.encoding)
        return out

    def min_counts(self, table: str, min_user: int, min_item: int) -> str:
        """`query.MIN_COUNTS` re-applied until nothing changes; returns the table left (drops `table`)."""
        n, k = self.count(table), 0
        while min_user > 1 or min_item > 1:
            k += 1
            rule = query.MIN_COUNTS.format(source=table, min_user=min_user, min_item=min_item)
            self.sql(f"CREATE TABLE {table}_{k} AS {rule}; DROP TABLE {table}")
            table = f"{table}_{k}"
            if self.count(table) == n:
                break
            n = self.count(table)
        return table

    def numpy(self, text: str) -> dict[str, np.ndarray]:
        return self.sql(text).fetchnumpy()

    def training_pairs(self, text: str) -> Any:
        """The training pairs `text` selects, kept for the engine to write the training channel
        itself, or None: the driver writes it (here; the Spark engine writes it in its partitions)."""
        return None

    def close(self) -> None:
        self.con.close()


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _open_text(path: str, gz: bool, encoding: str, key: str) -> io.TextIOWrapper:
    raw = gzip.open(path, "rb") if gz else open(path, "rb")  # noqa: SIM115 (wrapped and returned)
    codec = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    return io.TextIOWrapper(raw, encoding=codec, newline="")


def _records(text: Iterator[str], delimiter: str, quotechar: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, fields) per record, as the reader splits them."""
    if len(delimiter) > 1:  # `::`: the csv module takes one character (U+001F, unit separator)
        text, delimiter = _replaced(text, delimiter, "\x1f"), "\x1f"
    if quotechar:
        reader = csv.reader(text, delimiter=delimiter, quotechar=quotechar, strict=False)
    else:
        reader = csv.reader(text, delimiter=delimiter, quoting=csv.QUOTE_NONE, strict=False)
    prev = 0
    for row in reader:
        yield prev + 1, row
        prev = reader.line_num


def _replaced(text: Iterator[str], old: str, new: str) -> Iterator[str]:
    return (line.replace(old, new) for line in text)


def _example_lines(
    f: LocalFile, gz: bool, layout: Layout, config: PrepareConfig, wanted: dict[int, str], n_wrong: int
) -> list[tuple[int, str]]:
    """(line, reason) of the wanted valid-width records (by ordinal) and of wrong-width records."""
    ncol = layout.ncol
    out: list[tuple[int, str]] = []
    ordinal, wrong, header = 0, 0, layout.header
    last = max(wanted, default=0)
    with _open_text(f.path, gz, config.encoding, f.key) as text:
        for line, row in _records(text, layout.delimiter, config.quotechar):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header:
                header = False
            elif len(row) != ncol:
                wrong += 1
                out.append((line, "missing field" if len(row) < ncol else "extra field"))
            else:
                ordinal += 1
                if ordinal in wanted:
                    out.append((line, wanted[ordinal]))
            if ordinal >= last and wrong >= n_wrong:
                break
    return out


def _raise_decode_error(f: LocalFile, gz: bool, encoding: str) -> None:
    with gzip.open(f.path, "rb") if gz else open(f.path, "rb") as raw:
        for number, line in enumerate(raw, 1):
            decoded(line, encoding, f.key, number)
    raise PrepareInputError(f"{f.key}: not valid {encoding}")


def _check_quality(config: PrepareConfig, stats: Stats, channel: str) -> None:
    examples = "; ".join(stats.examples[:10])
    by_reason = ", ".join(f"{k}: {v}" for k, v in sorted(stats.bad.items()))
    if stats.rows_valid == 0:
        keys = [f["key"] for f in stats.files]
        where = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        raise PrepareInputError(
            f"no valid rows in the {channel} input {where} ({stats.rows_read} row(s) read; "
            f"{by_reason or 'no data lines'})" + (f"; e.g. {examples}" if examples else "")
        )
    fraction = stats.bad_rows / max(stats.rows_read, 1)
    if fraction > config.max_bad_fraction:
        raise PrepareInputError(
            f"{stats.bad_rows} of {stats.rows_read} {channel} rows are bad ({fraction:.2%} > "
            f"max_bad_fraction {config.max_bad_fraction:.2%}): {by_reason}; e.g. {examples}"
        )


def local_files(storage: Any, keys: list[str], work_dir: str) -> list[LocalFile]:
    """Paths DuckDB can read: the file itself for a local store, else a copy in `work_dir`."""
    out = []
    for n, key in enumerate(keys):
        local = getattr(storage, "local_path", None)
        if local is not None:
            out.append(LocalFile(key, local(key)))
            continue
        path = Path(work_dir) / f"input-{n}"
        src = storage.open(key)
        try:
            with path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 8 << 20)
        finally:
            src.close()
        out.append(LocalFile(key, str(path)))
    return out
