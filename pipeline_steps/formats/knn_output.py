"""k-NN batch-transform output, ``Accept: application/jsonlines; verbose=true`` (docs/formats.md §4).

One JSON object per query, in input order: ``labels`` (neighbour labels as floats), ``distances``
(sorted ascending, whatever the metric) and ``predicted_label``. With INNER_PRODUCT / COSINE the
"distance" is a similarity, so the best neighbour is the *last* one: ``iter_results`` never relies
on position and sorts every line best-first for the given metric.

This module reads the lines (publish and evaluate use it). The local k-NN emulator writes them
with ``pipeline_steps.local_algorithms.knn_lines``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np

__all__ = [
    "METRICS",
    "KnnOutputError",
    "best_first",
    "is_blank",
    "iter_numbered_results",
    "iter_results",
    "parse_result",
    "read_results",
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


def _is_blank(line: str | bytes) -> bool:
    """Empty, or nothing but a line ending: what ``AssembleWith=Line`` adds after a response that
    already ends with one. Spaces or tabs are not blank: SageMaker never writes them, so such a
    line is reported as malformed like any other garbage."""
    return not line or line in ("\n", "\r\n", b"\n", b"\r\n")


def iter_numbered_results(
    lines: Iterable[str | bytes] | str | bytes, metric: str
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(line number, item_labels int64, scores float64)`` per query, best first.

    Line numbers are 1-based and count the blank lines too (they point into the file).
    """
    _metric(metric)
    for lineno, line in enumerate(_lines(lines), 1):
        if _is_blank(line):
            continue
        yield (lineno, *parse_result(lineno, line, metric))


def is_blank(line: str | bytes) -> bool:
    """A line that is never a result (see ``iter_results``): callers that skip lines unparsed."""
    return _is_blank(line)


def parse_result(lineno: int, line: str | bytes, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """One non-blank verbose line -> ``(item_labels int64, scores float64)`` best first."""
    labels, scores = _parse(lineno, line)
    order = np.argsort(scores if _metric(metric) == "L2" else -scores, kind="stable")
    return labels[order], scores[order]


def iter_results(
    lines: Iterable[str | bytes] | str | bytes, metric: str
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per query (in input order): ``(item_labels int64, scores float64)``, best first.

    Labels are ``int(round(x))`` of the float labels. Empty lines are skipped wherever they are:
    with ``BatchStrategy=MultiRecord`` and ``AssembleWith=Line`` SageMaker adds a newline after
    each mini-batch response ("Add a newline character at the end of every transformed record",
    TransformOutput.AssembleWith, CDK/API docs), and a JSON-lines response already ends with one,
    so the file has an empty line after each mini-batch. A whitespace-only line, malformed JSON or
    a length mismatch raise ``KnnOutputError`` with the line number. Counting results (one per
    query) is the caller's job: a blank line is never a result.
    """
    for _, labels, scores in iter_numbered_results(lines, metric):
        yield labels, scores


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
