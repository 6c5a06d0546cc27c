"""The local k-NN emulator's verbose JSON lines: the vectorised writer equals the one-value
reference (``render_float``), round trips, and SageMaker's compact style."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps.formats.knn_output import iter_results
from pipeline_steps.local_algorithms import knn_lines
from pipeline_steps.local_algorithms.knn_lines import dumps_line, format_results, render_float

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "real-sagemaker"


def _reference(labels, distances, predicted, style="short") -> str:
    """One line at a time, one ``render_float`` per value: the obvious implementation."""
    lines = []
    for lab, dist, pred in zip(labels, distances, predicted, strict=True):
        order = np.argsort(dist, kind="stable")
        fields = {
            "distances": [render_float(x, style) for x in np.asarray(dist)[order]],
            "labels": [render_float(x, style) for x in np.asarray(lab)[order]],
        }
        parts = [f'"{key}":[{",".join(v)}]' for key, v in fields.items()]
        lines.append("{" + ",".join(parts) + f',"predicted_label":{render_float(pred, style)}}}\n')
    return "".join(lines)


def _json_reference(labels, distances, predicted) -> str:
    """One json.dumps per line: the writer's "json" style must equal it."""
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


FINITE32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)
# every float32 bit pattern that is finite: subnormals, huge and tiny, -0.0
BITS32 = st.integers(0, 2**32 - 1).filter(lambda b: (b >> 23) & 0xFF != 0xFF)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 8), st.integers(0, 6), st.data())
def test_writer_equals_reference(n, k, data):
    elems = (
        FINITE32
        | st.floats(-1e6, 1e6)
        | st.floats(-1.0, 1.0)
        | BITS32.map(lambda b: float(np.uint32(b).view(np.float32)))
    )
    distances = data.draw(hnp.arrays(np.float64, (n, k), elements=elems))
    int_labels = data.draw(st.booleans())
    label_elems = st.integers(-(2**24), 2**24).map(float) if int_labels else elems
    labels = data.draw(hnp.arrays(np.float64, (n, k), elements=label_elems))
    predicted = data.draw(hnp.arrays(np.float64, n, elements=label_elems))
    assert format_results(labels, distances, predicted) == _reference(labels, distances, predicted)
    assert format_results(labels, distances, predicted, style="json") == _json_reference(
        labels, distances, predicted
    )


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.uint32, st.integers(1, 300), elements=BITS32))
def test_short_style_round_trips_every_float32(bits):
    values = bits.view(np.float32)
    labels = np.zeros((1, values.size))
    line = format_results(labels, np.sort(values)[None, :], [0.0])
    back = np.array(json.loads(line)["distances"], np.float64).astype(np.float32)
    assert back.view(np.uint32).tolist() == np.sort(values).view(np.uint32).tolist()  # -0.0 included
    # and every number is the reference text
    assert line == _reference(labels, np.sort(values)[None, :], [0.0])


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (268.0, "268.0"),
        (0.5, "0.5"),
        (0.1, "0.100000001"),  # float32(0.1) = 0.100000001490116...
        (2.0**-13, "0.000122070312"),  # positional down to 1e-4, ties to even
        (9.99999e-5, "9.99999029e-05"),
        (1.001953125, "1.00195312"),  # a tie at the 10th digit: half to even
        (123456792.0, "123456792.0"),
        (2.0**31, "2147483650.0"),
        (2.0**60, "1.1529215e+18"),
        (1e16, "1.00000003e+16"),
        (-3.4028234663852886e38, "-3.40282347e+38"),
        (1.401298464324817e-45, "1.40129846e-45"),
    ],
)
def test_short_style_examples(value, text):
    assert render_float(value) == text
    line = format_results([[1.0]], [[value]], [1.0])
    assert line == f'{{"distances":[{text}],"labels":[1.0],"predicted_label":1.0}}\n'
    assert np.float32(json.loads(line)["distances"][0]) == np.float32(value)


@pytest.mark.parametrize("style", ["short", "json"])
@pytest.mark.parametrize(
    ("labels", "distances", "predicted", "what"),
    [
        ([[1.0, 2.0]], [[0.5, np.nan]], [1.0], "distances"),
        ([[1.0, np.inf]], [[0.5, 0.6]], [1.0], "labels"),
        ([[1.0, 2.0]], [[0.5, 0.6]], [np.nan], "predicted_label"),
        ([[1.0, 2.0]], [[0.5, 1e39]], [1.0], "distances"),  # inf once rounded to float32
    ],
)
def test_writer_rejects_non_finite_values(labels, distances, predicted, what, style):
    with pytest.raises(ValueError, match=f"{what} holds .*JSON has no NaN"):
        format_results(labels, distances, predicted, style=style)
    with pytest.raises(ValueError, match="not a finite number"):
        render_float(np.nan, style)


def test_unknown_style():
    with pytest.raises(ValueError, match="unknown float style"):
        format_results([[1.0]], [[1.0]], [1.0], style="fast")


def test_blocks_and_layout_mixtures_equal_the_reference():
    # many values per call (several internal blocks) mixing every layout within one array
    rng = np.random.default_rng(5)
    n, k = 60, 1200
    scale = 10.0 ** rng.integers(-12, 20, (n, k))
    distances = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    distances[:, ::97] = 0.0
    distances[:, 1::97] = -0.0
    distances = np.sort(distances, axis=1)
    labels = rng.integers(1, 50_000, (n, k)).astype(np.float32)
    predicted = labels[:, 0]
    text = format_results(labels, distances, predicted)
    assert text == _reference(labels, distances, predicted)
    for line, row in zip(text.splitlines(), distances, strict=True):
        assert np.array_equal(np.array(json.loads(line)["distances"]).astype(np.float32), row)


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
    size = knn_lines.write_results(buf, labels, distances, chunk_rows=7)
    assert buf.getvalue() == format_results(labels, distances).encode() and size == len(buf.getvalue())
    buf = io.BytesIO()
    knn_lines.write_results(buf, labels, distances, chunk_rows=7, style="json")
    assert buf.getvalue() == format_results(labels, distances, style="json").encode()


def test_writer_argument_errors():
    with pytest.raises(ValueError, match="one shape"):
        format_results(np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="predicted labels"):
        format_results(np.zeros((2, 3)), np.zeros((2, 3)), [1.0])


def test_real_batch_transform_output_uses_the_compact_style():
    # Real 1P output (built-in K-Means, not k-NN): only its JSON style is checked here.
    lines = (FIXTURES / "alexdongli-linear-kmeans" / "valid-result").read_text().splitlines()
    assert len(lines) == 10_000
    same = sum(dumps_line(json.loads(line)) == line for line in lines)
    assert same >= 9_900  # the rest differ only in the last digit of a 17-digit number
    for line in lines:
        assert json.loads(line) == json.loads(dumps_line(json.loads(line)))
