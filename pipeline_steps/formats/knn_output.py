"""k-NN batch-transform output, ``Accept: application/jsonlines; verbose=true`` (FORMATS.md §3.3-3.4).

One JSON object per query, in input order: ``labels`` (neighbour labels as floats), ``distances``
(sorted ascending, whatever the metric) and ``predicted_label``. With INNER_PRODUCT / COSINE the
"distance" is a similarity, so the best neighbour is the *last* one: ``iter_results`` never relies
on position and sorts every line best-first for the given metric.

The writer renders SageMaker's compact style, exactly ``json.dumps(obj, separators=(",", ":"),
sort_keys=True)`` of float32-rounded values, but formats a whole batch with one ``json.dumps``
per column group instead of one per line (integer-valued labels skip float formatting).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "METRICS",
    "KnnOutputError",
    "best_first",
    "dumps_line",
    "format_results",
    "iter_results",
    "read_results",
    "write_results",
]

METRICS = ("L2", "INNER_PRODUCT", "COSINE")


class KnnOutputError(ValueError):
    """A malformed line of a k-NN ``.out`` file; ``line`` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"k-NN output line {line}: {reason}")
        self.line = line
        self.reason = reason


def _metric(metric: str) -> str:
    m = str(metric).upper()
    if m not in METRICS:
        raise ValueError(f"unknown k-NN index_metric {metric!r}; expected one of {', '.join(METRICS)}")
    return m


def best_first(labels: np.ndarray, scores: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort one query's neighbours best first: descending similarity (IP/COSINE), ascending L2."""
    key = scores if _metric(metric) == "L2" else -scores
    order = np.argsort(key, kind="stable")
    return labels[order], scores[order]


def _lines(lines: Iterable[str | bytes] | str | bytes) -> Iterable[str | bytes]:
    return lines.splitlines() if isinstance(lines, str | bytes) else lines


def _parse(lineno: int, line: str | bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise KnnOutputError(lineno, f"malformed JSON ({e})") from None
    if not isinstance(obj, dict):
        raise KnnOutputError(lineno, "not a JSON object")
    fields = []
    for key in ("labels", "distances"):
        value = obj.get(key)
        if not isinstance(value, list):
            raise KnnOutputError(lineno, f'field "{key}" missing or not a list')
        try:
            fields.append(np.array(value, np.float64))
        except (TypeError, ValueError):
            raise KnnOutputError(lineno, f'field "{key}" holds non-numbers') from None
        if fields[-1].ndim != 1:
            raise KnnOutputError(lineno, f'field "{key}" is not a flat list of numbers')
    labels, distances = fields
    if labels.size != distances.size:
        raise KnnOutputError(lineno, f"{labels.size} labels but {distances.size} distances")
    if not np.all(np.isfinite(labels)):
        raise KnnOutputError(lineno, "a label is not a finite number")
    return np.rint(labels).astype(np.int64), distances


def iter_results(
    lines: Iterable[str | bytes] | str | bytes, metric: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per query (in input order): ``(item_labels int64, scores float64)``, best first.

    Labels are ``int(round(x))`` of the float labels. Trailing blank lines are ignored; a blank
    line followed by more output, malformed JSON or a length mismatch raise ``KnnOutputError``.
    """
    descending = _metric(metric) != "L2"
    blank = 0
    for lineno, line in enumerate(_lines(lines), 1):
        if not line.strip():
            blank = blank or lineno
            continue
        if blank:
            raise KnnOutputError(blank, "blank line between results (every query has one line)")
        labels, scores = _parse(lineno, line)
        order = np.argsort(-scores if descending else scores, kind="stable")
        yield labels[order], scores[order]


def read_results(lines: Iterable[str | bytes] | str | bytes, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """All queries at once as ``(n, k)`` arrays, best first (every line must have the same k)."""
    results = list(iter_results(lines, metric))
    ks = {lab.size for lab, _ in results}
    if len(ks) > 1:
        raise ValueError(f"queries have different numbers of neighbours {sorted(ks)}; use iter_results")
    k = ks.pop() if ks else 0
    labels = np.array([lab for lab, _ in results], np.int64).reshape(len(results), k)
    scores = np.array([s for _, s in results], np.float64).reshape(len(results), k)
    return labels, scores


# --------------------------------------------------------------------------------------------
# writer


def dumps_line(obj: Any) -> str:
    """One object in the compact style SageMaker's 1P algorithms write (no newline)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


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


def format_results(
    labels: Any, distances: Any, predicted_labels: Any = None, *, predictor_type: str = "classifier"
) -> str:
    """Verbose JSON lines for ``(n, k)`` neighbour labels and distances, one ``\\n``-ended line each.

    Each row is re-ordered by ascending distance (stable), as SageMaker returns it. Values are
    rounded to float32. Without ``predicted_labels`` the classifier label is the most frequent
    neighbour label (ties: the smallest), the regressor label the mean.
    """
    lab = np.asarray(labels, np.float64)
    dist = np.asarray(distances, np.float64)
    if lab.ndim != 2 or lab.shape != dist.shape:
        raise ValueError(f"labels {lab.shape} and distances {dist.shape} must be (n, k) arrays of one shape")
    order = np.argsort(dist, axis=1, kind="stable")
    lab = np.take_along_axis(lab, order, axis=1).astype(np.float32).astype(np.float64)
    dist = np.take_along_axis(dist, order, axis=1).astype(np.float32).astype(np.float64)
    if predicted_labels is None:
        if predictor_type == "regressor":
            pred = lab.mean(axis=1) if lab.shape[1] else np.full(lab.shape[0], np.nan)
        else:
            pred = _mode(lab)
    else:
        pred = np.asarray(predicted_labels, np.float64).reshape(-1)
        if pred.shape[0] != lab.shape[0]:
            raise ValueError(f"{pred.shape[0]} predicted labels for {lab.shape[0]} queries")
    pred = pred.astype(np.float32).astype(np.float64)[:, None]
    rows = zip(_row_reprs(dist), _row_reprs(lab), _row_reprs(pred), strict=True)
    return "".join([f'{{"distances":[{d}],"labels":[{lb}],"predicted_label":{p}}}\n' for d, lb, p in rows])


def write_results(
    fileobj: BinaryIO,
    labels: Any,
    distances: Any,
    predicted_labels: Any = None,
    *,
    predictor_type: str = "classifier",
    chunk_rows: int = 65536,
) -> int:
    """Stream ``format_results`` (UTF-8) to a binary file object in chunks; returns bytes written."""
    lab, dist = np.asarray(labels), np.asarray(distances)
    pred = None if predicted_labels is None else np.asarray(predicted_labels).reshape(-1)
    total = 0
    for start in range(0, lab.shape[0], max(1, int(chunk_rows))):
        stop = start + max(1, int(chunk_rows))
        text = format_results(
            lab[start:stop],
            dist[start:stop],
            None if pred is None else pred[start:stop],
            predictor_type=predictor_type,
        )
        data = text.encode("utf-8")
        fileobj.write(data)
        total += len(data)
    return total
