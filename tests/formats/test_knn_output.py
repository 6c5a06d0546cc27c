"""k-NN verbose JSON lines: best-first parsing per metric, errors (the writer: tests/local_algorithms)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from pipeline_steps.formats import knn_output
from pipeline_steps.formats.knn_output import KnnOutputError, iter_results

# as SageMaker returns it: distances ascending whatever the metric
LINE = '{"distances":[0.5,1.5,2.5],"labels":[268.0,12.0,7.0],"predicted_label":7.0}'


@pytest.mark.parametrize(
    ("metric", "labels", "scores"),
    [
        ("INNER_PRODUCT", [7, 12, 268], [2.5, 1.5, 0.5]),  # similarity: the last is the best
        ("COSINE", [7, 12, 268], [2.5, 1.5, 0.5]),
        ("L2", [268, 12, 7], [0.5, 1.5, 2.5]),  # distance: the first is the best
        ("inner_product", [7, 12, 268], [2.5, 1.5, 0.5]),
    ],
)
def test_best_first_per_metric(metric, labels, scores):
    ((got_labels, got_scores),) = iter_results([LINE], metric)
    assert got_labels.tolist() == labels and got_labels.dtype == np.int64
    assert got_scores.tolist() == scores


def test_order_does_not_rely_on_position():
    shuffled = '{"distances":[1.5,2.5,0.5],"labels":[12.0,7.0,268.0]}'
    for metric, best in (("INNER_PRODUCT", 7), ("COSINE", 7), ("L2", 268)):
        ((labels, _),) = iter_results([shuffled], metric)
        assert labels[0] == best


def test_labels_are_rounded_and_input_forms():
    text = '{"distances":[1,2],"labels":[2.9999997,4.0000001]}\n{"distances":[],"labels":[]}\n\n'
    results = list(iter_results(text, "L2"))
    assert [r[0].tolist() for r in results] == [[3, 4], []]
    assert len(list(iter_results(text.encode(), "L2"))) == 2
    assert len(list(iter_results(io.StringIO(text), "L2"))) == 2
    labels, scores = knn_output.read_results([LINE, LINE], "COSINE")
    assert labels.shape == (2, 3) and labels[:, 0].tolist() == [7, 7] and scores[0, 0] == 2.5


@pytest.mark.parametrize(
    ("lines", "line", "match"),
    [
        ([LINE, "{not json"], 2, "malformed JSON"),
        ([LINE, LINE, "[1, 2]"], 3, "not a JSON object"),
        (['{"distances":[1.0]}'], 1, 'field "labels" missing'),
        (['{"labels":[1.0],"distances":5}'], 1, 'field "distances" missing or not a list'),
        (['{"labels":[1.0, 2.0],"distances":[1.0]}'], 1, "2 labels but 1 distances"),
        (['{"labels":["a"],"distances":[1.0]}'], 1, "non-numbers"),
        (['{"labels":[[1.0]],"distances":[[1.0]]}'], 1, "not a flat list"),
        (['{"labels":[NaN],"distances":[1.0]}'], 1, "not a finite number"),
        ([LINE, "", "  ", LINE], 3, "malformed JSON"),  # whitespace-only is not blank
        ([LINE, "", "\t\n", LINE], 3, "malformed JSON"),
        ([LINE, "", LINE, "", "{", ""], 5, "malformed JSON"),  # numbers count the blank lines
        ([b"\xff\xfe"], 1, "malformed JSON"),
    ],
)
def test_errors_name_the_line(lines, line, match):
    with pytest.raises(KnnOutputError, match=match) as err:
        list(iter_results(lines, "L2"))
    assert err.value.line == line and f"line {line}:" in str(err.value)


def test_empty_lines_between_and_after_results_are_skipped():
    # AssembleWith=Line adds "\n" after each mini-batch response, which already ends with one
    other = '{"distances":[1.0],"labels":[5.0],"predicted_label":5.0}'
    text = f"{LINE}\n{LINE}\n\n{other}\n\n"
    want = [[7, 12, 268], [7, 12, 268], [5]]
    assert [lab.tolist() for lab, _ in iter_results(text, "COSINE")] == want
    assert [lab.tolist() for lab, _ in iter_results(text.encode(), "COSINE")] == want
    assert [lab.tolist() for lab, _ in iter_results(io.BytesIO(text.encode()), "COSINE")] == want
    assert [lab.tolist() for lab, _ in iter_results(["", LINE, "", "\r\n", other], "COSINE")] == want[1:]
    assert [n for n, _, _ in knn_output.iter_numbered_results(text, "L2")] == [1, 2, 4]
    labels, _ = knn_output.read_results(f"\n{LINE}\n\n{LINE}\n\n", "L2")
    assert labels.shape == (2, 3)
    assert list(iter_results("\n\n", "L2")) == []


def test_unknown_metric_and_ragged_read_results():
    with pytest.raises(ValueError, match="unknown k-NN index_metric"):
        list(iter_results([LINE], "MANHATTAN"))
    with pytest.raises(ValueError, match="different numbers of neighbours"):
        knn_output.read_results([LINE, '{"labels":[1.0],"distances":[1.0]}'], "L2")
