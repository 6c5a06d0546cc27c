"""The `items` attribute: one compact JSON string per user, bounded far below DynamoDB's 400 KB.

`[["<item_id>", <score>], ...]` best first, scores with 7 significant digits (float32 precision).
A cold item (metadata only, recommended from its features; decision 0018) has a third element 1:
`["<item_id>", <score>, 1]`, inside the same byte budget; without cold items the text is unchanged.
One string attribute instead of a list of maps: a DynamoDB list of maps costs ~20 bytes of type
overhead per entry and is slower to marshal; a string is one value either way for the reader.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

# DynamoDB's item limit is 409,600 bytes (names + values). Keys take at most 2,048 + 1,024 bytes,
# the other attributes < 100, so this budget for the items string leaves > 50 KB of slack.
MAX_ITEMS_BYTES = 350_000


_encode_string = json.encoder.encode_basestring  # the C version when available, as json.dumps uses


def encode_items(
    item_ids: Sequence[str],
    scores: Sequence[float] | np.ndarray,
    cold: Sequence[bool] | np.ndarray | None = None,
) -> tuple[str, int]:
    """-> (JSON string, number of entries kept); keeps the best-first prefix that fits the budget.

    `cold`: per entry, whether the item is cold (marked with a third element).
    """
    values = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
    if len(values) != len(item_ids):
        raise ValueError(f"{len(item_ids)} item ids but {len(values)} scores")
    marks = [False] * len(values) if cold is None else [bool(c) for c in cold]
    if len(marks) != len(values):
        raise ValueError(f"{len(item_ids)} item ids but {len(marks)} cold flags")
    # json's C string encoder + repr of the rounded float: what json.dumps writes, at a third of the cost.
    entries = [
        f"[{_encode_string(item_id)},{float(f'{score:.7g}')!r}{',1' if mark else ''}]"
        for item_id, score, mark in zip(item_ids, values, marks, strict=True)
    ]
    sizes = np.fromiter((len(e.encode("utf-8")) + 1 for e in entries), dtype=np.int64, count=len(entries))
    # total = 2 brackets + entries + (n - 1) commas = 1 + cumsum(entry + 1)
    n = int(np.searchsorted(np.cumsum(sizes) + 1, MAX_ITEMS_BYTES, side="right"))
    return "[" + ",".join(entries[:n]) + "]", n


def decode_items(text: str) -> list[dict]:
    """[{"item_id", "score"}] best first; a cold item adds "cold": True."""
    out = []
    for entry in json.loads(text):
        item = {"item_id": entry[0], "score": entry[1]}
        if len(entry) > 2 and entry[2]:
            item["cold"] = True
        out.append(item)
    return out
