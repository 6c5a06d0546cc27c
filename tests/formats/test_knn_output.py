"""k-NN verbose JSON lines: best-first parsing per metric, errors, and the compact writer."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps.formats import knn_output
from pipeline_steps.formats.knn_output import KnnOutputError, dumps_line, format_results, iter_results

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
        ([LINE, "", LINE], 2, "blank line between results"),
        ([b"\xff\xfe"], 1, "malformed JSON"),
    ],
)
def test_errors_name_the_line(lines, line, match):
    with pytest.raises(KnnOutputError, match=match) as err:
        list(iter_results(lines, "L2"))
    assert err.value.line == line and f"line {line}:" in str(err.value)


def test_unknown_metric_and_ragged_read_results():
    with pytest.raises(ValueError, match="unknown k-NN index_metric"):
        list(iter_results([LINE], "MANHATTAN"))
    with pytest.raises(ValueError, match="different numbers of neighbours"):
        knn_output.read_results([LINE, '{"labels":[1.0],"distances":[1.0]}'], "L2")


def _reference(labels, distances, predicted) -> str:
    """One json.dumps per line, the obvious implementation the writer must equal."""
    lines = []
    for lab, dist, pred in zip(labels, distances, predicted, strict=True):
        order = np.argsort(dist, kind="stable")
        obj = {
            "labels": [float(np.float32(x)) for x in np.asarray(lab)[order]],
            "distances": [float(np.float32(x)) for x in np.asarray(dist)[order]],
            "predicted_label": float(np.float32(pred)),
        }
        lines.append(dumps_line(obj) + "\n")
    return "".join(lines)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 8), st.integers(0, 6), st.data())
def test_writer_equals_json_dumps(n, k, data):
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    distances = data.draw(hnp.arrays(np.float64, (n, k), elements=floats | st.floats(-1e6, 1e6)))
    int_labels = data.draw(st.booleans())
    label_elems = st.integers(-(2**24), 2**24).map(float) if int_labels else floats
    labels = data.draw(hnp.arrays(np.float64, (n, k), elements=label_elems))
    predicted = data.draw(hnp.arrays(np.float64, n, elements=label_elems))
    assert format_results(labels, distances, predicted) == _reference(labels, distances, predicted)


def test_default_predicted_label_is_mode_or_mean():
    labels = np.array([[3.0, 1.0, 3.0, 1.0], [5.0, 2.0, 2.0, 9.0]])
    distances = np.arange(8.0).reshape(2, 4)
    assert [json.loads(x)["predicted_label"] for x in format_results(labels, distances).splitlines()] == [
        1.0,
        2.0,
    ]
    means = [
        json.loads(x)["predicted_label"]
        for x in format_results(labels, distances, predictor_type="regressor").splitlines()
    ]
    assert means == [2.0, 4.5]


def test_writer_sorts_ascending_and_round_trips_best_first():
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.arange(1, 51, dtype=np.float64)).reshape(5, 10)
    scores = rng.standard_normal((5, 10))
    text = format_results(labels, scores)
    for line in text.splitlines():
        d = json.loads(line)["distances"]
        assert d == sorted(d)
    for i, (lab, sc) in enumerate(iter_results(text, "INNER_PRODUCT")):
        order = np.argsort(-scores[i], kind="stable")
        assert lab.tolist() == labels[i][order].astype(int).tolist()
        assert np.allclose(sc, scores[i][order], atol=1e-6)


def test_write_results_streams_chunks():
    rng = np.random.default_rng(4)
    labels, distances = rng.integers(1, 100, (25, 4)).astype(float), rng.random((25, 4))
    buf = io.BytesIO()
    size = knn_output.write_results(buf, labels, distances, chunk_rows=7)
    assert buf.getvalue() == format_results(labels, distances).encode() and size == len(buf.getvalue())


def test_writer_argument_errors():
    with pytest.raises(ValueError, match="one shape"):
        format_results(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="predicted labels"):
        format_results(np.zeros((2, 3)), np.zeros((2, 3)), [1.0])


def test_real_batch_transform_output_uses_the_compact_style(fixtures):
    # Real 1P output (built-in K-Means, not k-NN): only its JSON style is checked here.
    lines = (fixtures / "alexdongli-linear-kmeans" / "valid-result").read_text().splitlines()
    assert len(lines) == 10_000
    same = sum(dumps_line(json.loads(line)) == line for line in lines)
    assert same >= 9_900  # the rest differ only in the last digit of a 17-digit number
    for line in lines:
        assert json.loads(line) == json.loads(dumps_line(json.loads(line)))
