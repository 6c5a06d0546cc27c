"""FM artifact: write -> read for both parameter layouts, multi-host tarballs, corrupt archives."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest

from pipeline_steps.formats import artifact, fm_model, mxnet_params
from pipeline_steps.formats.artifact import Member
from pipeline_steps.formats.fm_model import FMModel, FMModelError, read_fm_model, write_fm_model

HYPER = {"num_factors": "3", "predictor_type": "binary_classifier", "epochs": "5", "mini_batch_size": "1000"}


def _model(n: int = 7, k: int = 3, seed: int = 0) -> FMModel:
    rng = np.random.default_rng(seed)
    hyper = dict(HYPER, num_factors=str(k))
    return FMModel(0.25, rng.standard_normal(n), rng.standard_normal((n, k)), n, hyper)


def _tarball(params: dict, n: int, meta: dict | None = None, extra_hosts: bool = False) -> bytes:
    meta = meta or {"training_parameters": {"feature_dim": str(n)}, "version": 1, "epoch_number": 2}
    zipped = artifact.stored_zip(
        [
            ("meta.json", json.dumps(meta).encode()),
            ("symbol.json", b"{}"),
            ("params", mxnet_params.dump(params)),
        ],
        (2024, 1, 2, 3, 4, 6),
    )
    members = [Member("model_algo-1", zipped, 1)]
    if extra_hosts:  # model_algo-2 first, as in the real NTM tarball, and with other values
        other = artifact.stored_zip([("meta.json", b"{}"), ("params", b"")], (2024, 1, 2, 3, 4, 6))
        members = [Member("model_algo-2", other, 1), *members, Member("model_algo-3", other, 1)]
    return artifact.model_tar_gz(members)


def _assert_same(a: FMModel, b: FMModel) -> None:
    assert a.w0 == pytest.approx(b.w0, rel=1e-7) and a.feature_dim == b.feature_dim
    assert np.array_equal(a.w, b.w.astype(np.float32)) and np.array_equal(a.V, b.V.astype(np.float32))


def test_write_read_round_trip_layout_a(tmp_path):
    model = _model()
    path = tmp_path / "model.tar.gz"
    data = write_fm_model(model, path, mtime=1_700_000_000)
    assert path.read_bytes() == data and data[:10] == bytes.fromhex("1f8b08000000000000ff")
    got = read_fm_model(path)
    _assert_same(got, model)
    assert got.V.shape == (7, 3) and got.w.shape == (7,) and got.num_factors == 3
    assert (
        got.hyperparameters["feature_dim"] == "7"
        and got.hyperparameters["predictor_type"] == "binary_classifier"
    )
    assert got.epoch_number == 5
    assert fm_model.fm_model_bytes(got, mtime=1_700_000_000) == data  # deterministic given the mtime


def test_written_layout_is_sagemakers():
    data = fm_model.fm_model_bytes(_model(), mtime=1_700_000_000)
    (member,) = artifact.read_model_tar_gz(data)
    assert member.name == "model_algo-1" and member.mtime == 1_700_000_000
    zf = zipfile.ZipFile(io.BytesIO(member.data))
    infos = zf.infolist()
    assert [i.filename for i in infos] == ["meta.json", "symbol.json", "params"]
    assert all(i.compress_type == zipfile.ZIP_STORED and i.create_system == 3 for i in infos)
    assert all(
        i.external_attr == 0o100644 << 16 and i.date_time == time.gmtime(1_700_000_000)[:6] for i in infos
    )
    meta = json.loads(zf.read("meta.json"))
    assert list(meta) == ["training_parameters", "version", "epoch_number"]
    assert all(isinstance(v, str) for v in meta["training_parameters"].values())
    params = mxnet_params.load(zf.read("params"))
    assert list(params) == ["arg:v", "arg:w1_weight", "arg:w0_weight"]
    assert [params[k].shape for k in params] == [(7, 3), (7, 1), (1,)]
    assert all(v.dtype == np.float32 for v in params.values())
    symbol = json.loads(zf.read("symbol.json"))
    names = {n["name"] for n in symbol["nodes"] if n["op"] == "null"}
    assert {"data", "v", "w1_weight", "w0_weight", "out_label"} == names
    assert symbol["nodes"][-1]["op"] == "LogisticRegressionOutput"


@pytest.mark.parametrize(("n", "k"), [(7, 3), (5, 5)])
def test_write_read_round_trip_layout_b(tmp_path, n, k):
    model = _model(n, k)
    data = write_fm_model(model, tmp_path / "b.tar.gz", mtime=1_700_000_000, layout="B")
    (member,) = artifact.read_model_tar_gz(data)
    zf = zipfile.ZipFile(io.BytesIO(member.data))
    params = mxnet_params.load(zf.read("params"))
    assert list(params) == ["arg:v", "arg:Linear_Plus_Bias_weight", "arg:Linear_Plus_Bias_bias"]
    assert [params[key].shape for key in params] == [(k, n), (1, n), (1,)]
    assert "Linear_Plus_Bias" in {nd["name"] for nd in json.loads(zf.read("symbol.json"))["nodes"]}
    _assert_same(read_fm_model(tmp_path / "b.tar.gz"), model)
    with pytest.raises(ValueError, match="unknown FM parameter layout"):
        fm_model.fm_model_bytes(model, layout="C")


def test_write_to_file_object():
    buf = io.BytesIO()
    data = write_fm_model(_model(), buf, mtime=5)
    assert buf.getvalue() == data
    _assert_same(read_fm_model(data), _model())


@pytest.mark.parametrize(("n", "k"), [(7, 3), (4, 4)])  # (4, 4): both axes equal feature_dim
def test_read_layout_b(n, k):
    model = _model(n, k)
    params = {
        "arg:v": model.V.T.astype(np.float32),
        "arg:Linear_Plus_Bias_weight": model.w.reshape(1, n).astype(np.float32),
        "arg:Linear_Plus_Bias_bias": np.array([model.w0], np.float32),
    }
    _assert_same(read_fm_model(_tarball(params, n)), model)


@pytest.mark.parametrize(("n", "k"), [(7, 3), (4, 4)])
def test_read_layout_a_square(n, k):
    model = _model(n, k)
    params = {
        "arg:w0_weight": np.array([model.w0], np.float32),
        "arg:v": model.V.astype(np.float32),
        "arg:w1_weight": model.w.reshape(n, 1).astype(np.float32),
    }
    got = read_fm_model(_tarball(params, n))
    _assert_same(got, model)
    assert got.epoch_number == 2


def test_layout_a_with_v_stored_transposed_is_picked_by_feature_dim():
    model = _model(9, 2)
    params = {
        "arg:v": model.V.T.astype(np.float32),
        "arg:w1_weight": model.w.reshape(1, 9).astype(np.float32),
        "arg:w0_weight": np.array([model.w0], np.float32),
    }
    _assert_same(read_fm_model(_tarball(params, 9)), model)


def test_multi_host_tarball_uses_model_algo_1():
    model = _model()
    data = fm_model.fm_model_bytes(model, mtime=1)
    (member,) = artifact.read_model_tar_gz(data)
    other = Member("model_algo-2", b"not a zip", 1)
    _assert_same(read_fm_model(artifact.model_tar_gz([other, member])), model)


def test_bare_model_algo_1_zip_is_accepted():
    model = _model()
    (member,) = artifact.read_model_tar_gz(fm_model.fm_model_bytes(model, mtime=1))
    _assert_same(read_fm_model(member.data), model)


def _params_a(n: int = 7) -> dict:
    m = _model(n)
    return {"arg:v": m.V, "arg:w1_weight": m.w.reshape(n, 1), "arg:w0_weight": np.array([m.w0], np.float32)}


def _zip_of(files: list[tuple[str, bytes]]) -> bytes:
    return artifact.model_tar_gz(
        [Member("model_algo-1", artifact.stored_zip(files, (2024, 1, 1, 0, 0, 0)), 1)]
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (lambda good: good[: len(good) // 2], "model.tar.gz: corrupt or truncated gzip"),
        (lambda good: b"\x1f\x8b" + b"\0" * 40, "model.tar.gz"),
        (lambda good: artifact.gzip_bytes(b"junk" * 300), "model.tar.gz: corrupt or truncated tar"),
        (
            lambda good: artifact.model_tar_gz([Member("model_algo-2", b"x", 1)]),
            "member model_algo-1 missing",
        ),
        (
            lambda good: artifact.model_tar_gz([Member("model_algo-1", b"PK\x03\x04 broken", 1)]),
            "model_algo-1: corrupt",
        ),
        (lambda good: _zip_of([("params", b"")]), "member meta.json missing"),
        (lambda good: _zip_of([("meta.json", b"{}")]), "member params missing"),
        (lambda good: _zip_of([("meta.json", b"{nope"), ("params", b"")]), "meta.json: not valid JSON"),
        (
            lambda good: _zip_of([("meta.json", b"[]"), ("params", b"")]),
            "meta.json: field training_parameters",
        ),
        (
            lambda good: _zip_of([("meta.json", b'{"training_parameters": {}}'), ("params", b"")]),
            "meta.json: field training_parameters.feature_dim",
        ),
        (
            lambda good: _zip_of(
                [("meta.json", b'{"training_parameters": {"feature_dim": "7"}}'), ("params", b"\x12\x01")]
            ),
            "model_algo-1/params: MXNet NDArray list: truncated",
        ),
        (lambda good: _tarball({"arg:v": np.zeros((7, 2), np.float32)}, 7), "no FM parameters"),
        (lambda good: _tarball(_params_a(), 8), "no axis equals feature_dim 8"),
        (
            lambda good: _tarball({**_params_a(), "arg:w1_weight": np.zeros((6, 1), np.float32)}, 7),
            "arg:w1_weight has shape",
        ),
        (
            lambda good: _tarball({**_params_a(), "arg:w0_weight": np.zeros(2, np.float32)}, 7),
            "arg:w0_weight has shape",
        ),
    ],
)
def test_corrupt_artifacts_raise_a_clear_value_error(data, match):
    good = fm_model.fm_model_bytes(_model(), mtime=1)
    with pytest.raises(FMModelError, match=match) as err:
        read_fm_model(data(good))
    assert isinstance(err.value, ValueError)


def test_every_truncation_is_a_clear_error():
    good = fm_model.fm_model_bytes(_model(), mtime=1)
    for cut in range(0, len(good), max(1, len(good) // 60)):
        with pytest.raises(FMModelError):
            read_fm_model(good[:cut])


def test_model_validation_and_hyperparameter_consistency():
    with pytest.raises(ValueError, match="V must be"):
        FMModel(0.0, np.zeros(3), np.zeros((4, 2)), 3)
    bad = _model()
    bad.hyperparameters["feature_dim"] = "8"
    with pytest.raises(ValueError, match="feature_dim"):
        fm_model.fm_model_bytes(bad)
