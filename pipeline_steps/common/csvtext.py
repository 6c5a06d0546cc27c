"""UTF-8 CSV/TSV text with a header, as the batch filters and the read API's item metadata read it
(stdlib only: the query Lambda imports it without numpy).

A file is CSV, or TSV when its first line holds a tab. Blank lines are skipped. Errors are
`InputError`s naming the file (`where`), the line and, for a missing column, the column.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator

from pipeline_steps.common.errors import InputError

ITEM_ID_COLUMN = "item_id"


def decode(data: bytes, where: str) -> str:
    """UTF-8 text (a byte-order mark is dropped); malformed bytes are an error naming the line."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{where} line {line}: not valid UTF-8 ({exc.reason})") from None


_LINE_END = re.compile(r"\r\n|\r|\n")  # what io.StringIO(newline="") splits on


def _lines(text: str) -> Iterator[str]:
    """The lines of `text` with their endings, one at a time (a StringIO copy would double the text)."""
    start = 0
    for end in _LINE_END.finditer(text):
        yield text[start : end.end()]
        start = end.end()
    if start < len(text):
        yield text[start:]


def rows(text: str, where: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV, or of a TSV when its first line holds a tab."""
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(_lines(text), delimiter=delimiter, strict=True)
    try:
        for row in reader:
            if row and any(v.strip() for v in row):
                yield reader.line_num, row
    except csv.Error as exc:
        raise InputError(f"{where} line {reader.line_num}: malformed CSV ({exc})") from None


def header(
    lines: Iterator[tuple[int, list[str]]], where: str, needed: Iterable[str]
) -> tuple[int, list[str]]:
    """The header row (line number, names); an error naming the line and the first missing column."""
    wanted = list(needed)
    first = next(lines, None)
    if first is None:
        raise InputError(f"{where}: empty file, expected a header with {', '.join(map(repr, wanted))}")
    lineno, names = first
    for name in wanted:
        if name not in names:
            raise InputError(f"{where} line {lineno}: header {names} has no column {name!r}")
    return lineno, names


def check_width(row: list[str], names: list[str], where: str, lineno: int) -> None:
    if len(row) != len(names):
        raise InputError(f"{where} line {lineno}: {len(row)} fields, the header has {len(names)}")
