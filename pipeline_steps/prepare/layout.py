"""Per-file layout detection: delimiter, header, and which column holds user/item/rating/timestamp."""

from __future__ import annotations

import codecs
import csv
import gzip
from dataclasses import dataclass

from pipeline_steps.prepare.config import PrepareConfig


class PrepareInputError(ValueError):
    """The input data cannot be used; the message names the file (and line/field when known)."""


# Normalised header names (lower case, `:type` suffix dropped, `_ - . space` removed), best first.
ALIASES: dict[str, tuple[str, ...]] = {
    "user": ("userid", "user", "customerid", "customer", "reviewerid", "visitorid", "memberid", "clientid",
             "accountid", "buyerid", "personid", "uid"),
    "item": ("itemid", "item", "movieid", "productid", "asin", "product", "articleid", "sku", "trackid",
             "songid", "bookid", "isbn", "contentid", "movie", "iid"),
    "rating": ("rating", "starrating", "stars", "score", "bookrating", "rate", "preference"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "reviewdate", "reviewtime", "unixreviewtime",
                  "eventtime", "createdat", "ratingtime"),
}  # fmt: skip
_ALL_ALIASES = {a for names in ALIASES.values() for a in names}
_AUTO_DELIMITERS = ("\t", "::", ",", ";", "|")


@dataclass(frozen=True)
class Layout:
    delimiter: str
    header: bool
    ncol: int
    user: int
    item: int
    rating: int | None
    timestamp: int | None
    names: tuple[str, ...] | None

    def describe(self) -> dict:
        def col(i: int | None) -> str | int | None:
            return None if i is None else (self.names[i] if self.names else i)

        return {
            "delimiter": self.delimiter,
            "header": self.header,
            "columns": {
                "user": col(self.user),
                "item": col(self.item),
                "rating": col(self.rating),
                "timestamp": col(self.timestamp),
            },
        }


def read_head(path: str, gz: bool, encoding: str, key: str) -> tuple[str, str | None] | None:
    """(first line, second line or None) of a file after its blank lines; None if it has no data.

    Blank means empty or whitespace only; the bytes of these lines must decode with `encoding`.
    """
    with gzip.open(path, "rb") if gz else open(path, "rb") as raw:
        try:
            head = raw.read(1 << 20)
        except (OSError, EOFError) as exc:
            raise PrepareInputError(f"{key}: corrupt gzip data ({exc})") from None
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8) :]
    lines = head.split(b"\n")
    skip = 0
    while skip < len(lines) - 1 and not lines[skip].strip():
        skip += 1
    if not lines[skip].strip():
        return None
    text = [decoded(line, encoding, key, skip + n + 1) for n, line in enumerate(lines[skip : skip + 2])]
    return text[0], text[1] if len(lines) > skip + 2 else None


def decoded(line: bytes, encoding: str, key: str, number: int) -> str:
    """The line as text, or an error naming file, line, byte and column (no guessing)."""
    try:
        return line.decode(encoding)
    except UnicodeDecodeError as exc:
        raise PrepareInputError(
            f"{key}:{number}: not valid {encoding} (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            'set `encoding` in the prepare config (e.g. "latin-1") if the file uses another encoding'
        ) from None


def normalise(name: str) -> str:
    name = name.strip().strip('"').split(":", 1)[0].lower()
    for ch in "_-. ":
        name = name.replace(ch, "")
    return name


def split_line(text: str, delimiter: str, quotechar: str) -> list[str]:
    text = text.rstrip("\r\n")
    if len(delimiter) > 1 or not quotechar:
        return text.split(delimiter)
    return next(csv.reader([text], delimiter=delimiter, quotechar=quotechar), [])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def detect(first: str, second: str | None, config: PrepareConfig, key: str) -> Layout:
    """Layout of one file from its first (and second) line."""
    delimiter = config.delimiter
    if delimiter == "auto":
        delimiter = next((d for d in _AUTO_DELIMITERS if d in first), "")
        if not delimiter:
            raise PrepareInputError(
                f"{key}:1: cannot detect the delimiter (no tab, '::', ',', ';' or '|' in the first line); "
                "set `delimiter` in the prepare config"
            )
    fields = split_line(first, delimiter, config.quotechar)
    names = [normalise(f) for f in fields]
    specs = {"user": config.user_col, "item": config.item_col}
    specs |= {"rating": config.rating_col, "timestamp": config.timestamp_col}
    by_name = any(isinstance(s, str) and s for s in specs.values())
    if config.header is not None:
        header = config.header
    elif by_name or any(n in _ALL_ALIASES for n in names):
        header = True
    else:
        # Unknown header words: a non-numeric rating position above a numeric one.
        nxt = split_line(second, delimiter, config.quotechar) if second else []
        header = len(fields) >= 3 and len(nxt) >= 3 and not _is_number(fields[2]) and _is_number(nxt[2])
    if by_name and not header:
        raise PrepareInputError(f"{key}: columns are configured by name but the file has no header line")
    ncol = len(fields)
    cols = {
        role: _resolve(role, spec, fields, names if header else None, ncol, key)
        for role, spec in specs.items()
    }
    user, item = cols["user"], cols["item"]
    if user is None or item is None:  # a one-column file without header
        raise PrepareInputError(f"{key}: needs a user and an item column; the first line has {ncol} field(s)")
    if user == item:
        raise PrepareInputError(f"{key}: user and item resolve to the same column {user}")
    return Layout(
        delimiter=delimiter,
        header=header,
        ncol=ncol,
        user=user,
        item=item,
        rating=cols["rating"],
        timestamp=cols["timestamp"],
        names=tuple(f.strip() for f in fields) if header else None,
    )


def _resolve(role: str, spec, fields: list[str], names: list[str] | None, ncol: int, key: str) -> int | None:
    optional = role in ("rating", "timestamp")
    if spec == "" and optional:
        return None
    if isinstance(spec, int):
        if spec >= ncol:
            raise PrepareInputError(f"{key}: {role}_col={spec} but the first line has only {ncol} field(s)")
        return spec
    if isinstance(spec, str):
        assert names is not None  # by-name specs force header mode
        exact = [i for i, f in enumerate(fields) if f.strip() == spec]
        loose = [i for i, n in enumerate(names) if n == normalise(spec)]
        if exact or loose:
            return (exact or loose)[0]
        raise PrepareInputError(f"{key}: no column named {spec!r} for {role}_col; header is {fields}")
    if names is None:  # no header: MovieLens u.data order (user, item, rating, timestamp)
        default = {"user": 0, "item": 1, "rating": 2, "timestamp": 3}[role]
        return default if default < ncol else None
    for alias in ALIASES[role]:
        if alias in names:
            return names.index(alias)
    if optional:
        return None
    raise PrepareInputError(
        f"{key}: cannot find the {role} column in header {fields}; "
        f"set `{role}_col` (name or 0-based position)"
    )
