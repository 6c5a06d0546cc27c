"""MovieLens 100k, taken from the PyPI wheel ``recbole==1.2.1`` (the only reachable copy here).

The wheel's ``ml-100k.inter`` holds the original ``u.data`` rows in their original order (with a
header line), ``ml-100k.item`` the titles, release years and genres, ``ml-100k.user`` the users' age,
gender, occupation and zip code (the side features of docs/decisions/0018). The GroupLens terms
forbid redistribution, so the data is downloaded at run time into a cache outside the repository's
tracked files.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RECBOLE_SPEC = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
MEMBER_PREFIX = "recbole/dataset_example/ml-100k/"
CITATION = (
    "MovieLens 100k: F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History "
    "and Context. ACM TiiS 5, 4, Article 19. Used under the GroupLens terms (research use, no "
    "redistribution): https://grouplens.org/datasets/movielens/"
)
N_RATINGS = 100_000
N_TEST_PER_USER = 10


@dataclass(frozen=True)
class MovieLens100k:
    """Paths of the files rebuilt from the wheel, in MovieLens' own formats."""

    u_data: Path  # user \t item \t rating \t timestamp, no header, original order
    ua_base: Path  # 90,570 rows
    ua_test: Path  # 9,430 rows
    titles: dict[str, str]  # item id -> title
    genres: dict[str, frozenset[str]] = field(default_factory=dict)  # item id -> its genres
    # Metadata for prepare's side features (TSV with a header; genres separated by spaces):
    # item_id, title, year, genres / user_id, age, gender, occupation, zip_code.
    item_features: Path | None = None
    user_features: Path | None = None


def cache_dir() -> Path:
    base = os.environ.get("FM_KNN_TOPX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fm-knn-topx"
    )
    return Path(base)


def _download_wheel(dest: Path) -> Path:
    wheel = dest / WHEEL_NAME
    if wheel.exists():
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), RECBOLE_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not wheel.exists():
        raise RuntimeError(f"could not download {RECBOLE_SPEC} with pip: {proc.stderr.strip()[-500:]}")
    return wheel


def ua_split(lines: list[str]) -> tuple[list[str], list[str]]:
    """The classic ua split: per user, the first 10 ratings in file order are the test set."""
    seen: dict[str, int] = {}
    base: list[str] = []
    test: list[str] = []
    for line in lines:
        user = line.split("\t", 1)[0]
        n = seen.get(user, 0)
        seen[user] = n + 1
        (test if n < N_TEST_PER_USER else base).append(line)
    return base, test


def load(directory: Path | None = None) -> MovieLens100k:
    """Download (once) and rebuild u.data, ua.base, ua.test and the titles; returns their paths."""
    root = directory or cache_dir()
    out = root / "ml-100k"
    u_data, ua_base, ua_test, item = (out / n for n in ("u.data", "ua.base", "ua.test", "u.item.tsv"))
    item_features, user_features = out / "item-features.tsv", out / "user-features.tsv"
    if not all(p.exists() for p in (u_data, ua_base, ua_test, item, item_features, user_features)):
        wheel = _download_wheel(root / "wheels")
        with zipfile.ZipFile(wheel) as zf:
            inter = zf.read(MEMBER_PREFIX + "ml-100k.inter").decode("utf-8").splitlines()
            items = zf.read(MEMBER_PREFIX + "ml-100k.item").decode("utf-8", errors="replace").splitlines()
            users = zf.read(MEMBER_PREFIX + "ml-100k.user").decode("utf-8", errors="replace").splitlines()
        rows = [line for line in inter[1:] if line.strip()]
        if len(rows) != N_RATINGS:
            raise RuntimeError(f"{WHEEL_NAME}: expected {N_RATINGS} ratings, found {len(rows)}")
        base, test = ua_split(rows)
        out.mkdir(parents=True, exist_ok=True)
        for path, data in ((ua_base, base), (ua_test, test), (u_data, rows), (item, items[1:])):
            tmp = path.with_suffix(".tmp")
            tmp.write_text("\n".join(data) + "\n", encoding="utf-8")
            tmp.replace(path)
        _write_tsv(item_features, ITEM_FEATURE_HEADER, items[1:])
        _write_tsv(user_features, USER_FEATURE_HEADER, users[1:])
    titles: dict[str, str] = {}
    genres: dict[str, frozenset[str]] = {}
    for line in item.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            titles[parts[0]] = f"{parts[1]} ({parts[2]})" if len(parts) > 2 and parts[2] else parts[1]
            # recbole's `class:token_seq` column: genres separated by spaces ("Animation Children's")
            genres[parts[0]] = frozenset(parts[3].split()) if len(parts) > 3 else frozenset()
    return MovieLens100k(
        u_data=u_data,
        ua_base=ua_base,
        ua_test=ua_test,
        titles=titles,
        genres=genres,
        item_features=item_features,
        user_features=user_features,
    )


# The wheel's members have recbole's typed headers (`item_id:token`, ...): plain names instead.
ITEM_FEATURE_HEADER = ("item_id", "title", "year", "genres")
USER_FEATURE_HEADER = ("user_id", "age", "gender", "occupation", "zip_code")


def _write_tsv(path: Path, header: tuple[str, ...], lines: list[str]) -> None:
    """A TSV with `header`, one row per line of the member (csv quoting where a value needs it)."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        for line in lines:
            if line.strip():
                fields = line.split("\t")
                writer.writerow((fields + [""] * len(header))[: len(header)])
    tmp.replace(path)


def genre_share(
    related: Mapping[str, Sequence[str]], genres: Mapping[str, frozenset[str]]
) -> dict[str, float | int]:
    """Share of (item, related item) pairs with a genre in common, and the same share over all pairs.

    `related`: item id -> its related item ids. Items without genres are left out of both shares.
    The random share is exact: over every ordered pair of distinct items with genres.
    """
    pairs = hits = 0
    for item, others in related.items():
        mine = genres.get(item)
        if not mine:
            continue
        for other in others:
            theirs = genres.get(other)
            if theirs:
                pairs += 1
                hits += bool(mine & theirs)
    known = [g for g in genres.values() if g]
    names = sorted(set().union(*known)) if known else []
    matrix = np.array([[name in g for name in names] for g in known], dtype=np.float64)
    sharing = (matrix @ matrix.T) > 0
    n = len(known)
    random_pairs = n * (n - 1)
    random_hits = int(sharing.sum()) - n  # the diagonal: every item shares a genre with itself
    return {
        "related_pairs": pairs,
        "related_share": hits / pairs if pairs else float("nan"),
        "random_share": random_hits / random_pairs if random_pairs else float("nan"),
    }


if __name__ == "__main__":
    ds = load()
    print(CITATION)
    print(ds.u_data, ds.ua_base, ds.ua_test, len(ds.titles))
