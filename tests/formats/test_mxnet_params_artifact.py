"""NDArray lists and artifact containers against the real SageMaker files."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline_steps.formats import artifact, mxnet_params
from pipeline_steps.formats.artifact import ArtifactError, Member
from pipeline_steps.formats.fm_model import dmlc_json
from pipeline_steps.formats.mxnet_params import ArrayMeta, Params, ParamsFormatError


def _ntm_zip(fixtures) -> bytes:
    return (fixtures / "norib016-ntm" / "model_algo-1").read_bytes()


def test_ntm_params_parse_and_redump_identically(fixtures):
    raw = zipfile.ZipFile(io.BytesIO(_ntm_zip(fixtures))).read("params")
    params = mxnet_params.load(raw)
    assert params.named and len(params) == 10
    assert all(k.startswith("arg:") for k in params)
    assert params["arg:enc_0_weight"].shape == (30, 2000) and params["arg:enc_0_weight"].dtype == np.float32
    assert all(
        m.magic == mxnet_params.V2_MAGIC and m.dev_type == 1 and m.stype == 0 for m in params.meta.values()
    )
    assert mxnet_params.dump(params) == raw
    assert mxnet_params.dump(dict(params)) == raw  # defaults are what SageMaker writes


def test_kmeans_model_algo_1_parses_and_redumps_identically(fixtures):
    raw = (fixtures / "danielfudge-kmeans" / "model_algo-1").read_bytes()
    params = mxnet_params.load(raw)
    assert not params.named and list(params) == ["0"] and params["0"].shape == (10, 2)
    assert mxnet_params.dump(params) == raw
    assert mxnet_params.dump([params["0"]]) == raw


def test_kmeans_model_tar_gz_opens(fixtures):
    raw = (fixtures / "danielfudge-kmeans" / "model.tar.gz").read_bytes()
    (member,) = artifact.read_model_tar_gz(raw)
    assert member.name == "model_algo-1"
    assert member.data == (fixtures / "danielfudge-kmeans" / "model_algo-1").read_bytes()
    centroids = mxnet_params.load(member.data)["0"]
    assert centroids.shape == (10, 2) and np.isfinite(centroids).all()


@pytest.mark.parametrize("path", ["danielfudge-kmeans/model.tar.gz", "norib016-ntm/downloaded_model.tar.gz"])
def test_tar_writer_reproduces_real_model_tar_gz(fixtures, path):
    raw = (fixtures / path).read_bytes()
    members = artifact.read_model_tar_gz(raw)
    assert artifact.ustar(members) == gzip.decompress(raw)
    assert artifact.model_tar_gz(members) == raw


def test_ntm_tarball_members_and_hosts(fixtures):
    members = artifact.read_model_tar_gz((fixtures / "norib016-ntm" / "downloaded_model.tar.gz").read_bytes())
    assert [m.name for m in members] == ["model_algo-2", "model_algo-1"]
    assert members[1].data == _ntm_zip(fixtures)


def test_zip_writer_reproduces_the_ntm_model_algo_1(fixtures):
    raw = _ntm_zip(fixtures)
    zf = zipfile.ZipFile(io.BytesIO(raw))
    files = [(i.filename, zf.read(i)) for i in zf.infolist()]
    assert [n for n, _ in files] == ["meta.json", "symbol.json", "params"]
    assert artifact.stored_zip(files, zf.infolist()[0].date_time) == raw
    assert artifact.read_zip(raw) == dict(files)


def test_symbol_json_printer_reproduces_mxnet_output(fixtures):
    text = zipfile.ZipFile(io.BytesIO(_ntm_zip(fixtures))).read("symbol.json").decode()
    assert dmlc_json(json.loads(text)) == text


def test_gzip_header_is_sagemakers():
    data = artifact.gzip_bytes(b"hello")
    assert data[:10] == bytes.fromhex("1f8b08000000000000ff") and gzip.decompress(data) == b"hello"


def test_tar_header_fields():
    tar = artifact.ustar([Member("model_algo-1", b"x" * 600, 1_600_000_000)])
    assert len(tar) == 10240
    assert tar[100:108] == b"0100644 " and tar[108:116] == b"0000000 " and tar[257:265] == b"ustar\x0000"
    assert tar[124:136] == b"%011o " % 600 and tar[136:148] == b"%011o " % 1_600_000_000
    assert tar[154:156] == b"\0 " and int(tar[148:154], 8) == sum(tar[:148]) + 8 * 32 + sum(tar[156:512])
    with pytest.raises(ValueError, match="1-100 bytes"):
        artifact.ustar([Member("x" * 101, b"")])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
        (artifact.gzip_bytes(b"not a tar archive at all" * 30), "tar"),
        (artifact.gzip_bytes(artifact.ustar([])), "no files"),
    ],
)
def test_tar_reader_errors(data, match):
    with pytest.raises(ArtifactError, match=match):
        artifact.read_model_tar_gz(data)


def test_truncated_tar_member_is_an_error():
    tar = artifact.ustar([Member("model_algo-1", b"y" * 5000)])
    with pytest.raises(ArtifactError, match=r"truncated|corrupt"):
        artifact.read_model_tar_gz(tar[:3000])


def test_zip_reader_errors(fixtures):
    raw = _ntm_zip(fixtures)
    with pytest.raises(ArtifactError, match="model_algo-1: corrupt or truncated ZIP"):
        artifact.read_zip(raw[:-100], "model_algo-1")
    corrupted = bytearray(raw)
    corrupted[200] ^= 0xFF  # inside meta.json: CRC mismatch
    with pytest.raises(ArtifactError, match="ZIP"):
        artifact.read_zip(bytes(corrupted))


# ---- NDArray list: every layout MXNet can write -------------------------------------------------

DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.int32, np.int8, np.int64, np.bool_]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(DTYPES),
            st.lists(st.integers(1, 4), min_size=1, max_size=3),
            st.sampled_from([mxnet_params.V1_MAGIC, mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC, 0]),
            st.sampled_from([(1, 0), (2, 1), (3, 0), (5, 0)]),
        ),
        min_size=1,  # an empty list has no names either way
        max_size=4,
    ),
    st.booleans(),
    st.data(),
)
def test_any_list_round_trips(specs, named, data):
    params = Params(named=named)
    for i, (dtype, shape, magic, (dev_type, dev_id)) in enumerate(specs):
        key = f"arg:p{i}" if named else str(i)
        params[key] = data.draw(hnp.arrays(dtype, tuple(shape)))
        params.meta[key] = ArrayMeta(magic=magic, dev_type=dev_type, dev_id=dev_id)
    raw = mxnet_params.dump(params)
    loaded = mxnet_params.load(raw)
    assert loaded.named == named and list(loaded) == list(params)
    for key, value in params.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(
            loaded[key], value, equal_nan=value.dtype.kind == "f"
        )
        assert loaded.meta[key] == params.meta[key]
    assert mxnet_params.dump(loaded) == raw


@pytest.mark.parametrize("stype", [mxnet_params.ROW_SPARSE, mxnet_params.CSR])
def test_sparse_arrays_round_trip(stype):
    dense = np.zeros((4, 3), np.float32)
    dense[1, 2], dense[3, 0] = 5, -1
    params = Params({"arg:s": dense}, meta={"arg:s": ArrayMeta(stype=stype)})
    raw = mxnet_params.dump(params)
    loaded = mxnet_params.load(raw)
    assert np.array_equal(loaded["arg:s"], dense) and loaded.meta["arg:s"].stype == stype
    assert mxnet_params.dump(loaded) == raw
    # storage with an explicitly stored zero row is kept as saved
    storage = loaded.meta["arg:s"].storage
    assert storage is not None and storage.data.shape[0] == 2


def test_none_arrays_and_type_flags_round_trip():
    params = Params({"a": None, "b": np.arange(3, dtype=np.uint16)}, meta={"b": ArrayMeta(type_flag=12)})
    for magic in (mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC, mxnet_params.V1_MAGIC, 0):
        params.meta["a"] = ArrayMeta(
            magic=magic, stype=-1 if magic in (mxnet_params.V2_MAGIC, mxnet_params.V3_MAGIC) else 0
        )
        raw = mxnet_params.dump(params)
        loaded = mxnet_params.load(raw)
        assert loaded["a"] is None and loaded.meta["b"].type_flag == 12 and loaded["b"].tolist() == [0, 1, 2]
        assert mxnet_params.dump(loaded) == raw


def test_dump_rejects_dtypes_mxnet_lacks():
    with pytest.raises(ValueError, match="no type"):
        mxnet_params.dump({"x": np.zeros(2, np.complex64)})


def _list(*arrays: bytes, names: list[bytes] | None = None) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(arrays)) + b"".join(arrays)
    names = names or []
    return out + struct.pack("<Q", len(names)) + b"".join(struct.pack("<Q", len(n)) + n for n in names)


_ONE = struct.pack("<Iiiqiii", 0xF993FAC9, 0, 1, 2, 1, 0, 0) + np.ones(2, "<f4").tobytes()


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x12\x01", "truncated: list header"),
        (struct.pack("<QQQ", 0x113, 0, 0), "not an NDArray list"),
        (struct.pack("<QQQ", 0x112, 0, 10**9), "implausible array count"),
        (_list(_ONE)[:-12], "truncated: array 0 data"),
        (
            _list(_ONE.replace(struct.pack("<I", 0xF993FAC9), struct.pack("<I", 0xDEADBEEF), 1)),
            "bad NDArray magic",
        ),
        (_list(_ONE[:4] + struct.pack("<i", 7) + _ONE[8:]), "unknown storage type 7"),
        (_list(_ONE[:-12] + struct.pack("<i", 99) + _ONE[-8:]), "unknown type flag 99"),
        (_list(_ONE[:8] + struct.pack("<i", 99) + _ONE[12:]), "implausible ndim"),
        (_list(_ONE[:12] + struct.pack("<q", -2) + _ONE[20:]), "negative dimension"),
        (_list(_ONE, names=[b"a", b"b"]), "2 names for 1 arrays"),
        (_list(_ONE, _ONE, names=[b"a", b"a"]), "duplicate"),
        (_list(_ONE, names=[b"\xff"]), "not UTF-8"),
        (_list(_ONE) + b"\0", "trailing bytes"),
    ],
)
def test_params_errors(raw, match):
    with pytest.raises(ParamsFormatError, match=match) as err:
        mxnet_params.load(raw)
    assert "byte offset" in str(err.value)
