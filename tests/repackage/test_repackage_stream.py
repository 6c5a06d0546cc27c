"""Streaming repackage (decision 0015): the FM parameters read front to back, user parts written as
they fill; the outputs equal the whole-artifact path byte for byte."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline_steps.formats import mxnet_params
from pipeline_steps.formats.artifact import Member, model_tar_gz, stored_zip
from pipeline_steps.formats.fm_model import FMModel, FMModelError, fm_model_bytes
from pipeline_steps.formats.fm_stream import FMLinear, FMMeta, FMRows, StreamUnsupportedError, iter_fm_model
from pipeline_steps.repackage import core
from tests.conftest import BUCKET
from tests.repackage.test_repackage import N_ITEMS, N_USERS, cfg, layout_b_bytes, setup

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "real-sagemaker"


class Body:
    """An S3 body: read(n) returns at most n bytes, here never more than `step`."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data, self.pos, self.step = data, 0, step

    def read(self, n: int = -1) -> bytes:
        n = len(self.data) - self.pos if n < 0 else min(n, self.step)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def model(seed: int, factors: int = 3) -> FMModel:
    rng = np.random.default_rng(seed)
    n = N_USERS + N_ITEMS
    return FMModel(
        w0=0.5,
        w=rng.normal(size=n).astype(np.float32),
        V=rng.normal(size=(n, factors)).astype(np.float32),
        feature_dim=n,
        hyperparameters={"predictor_type": "binary_classifier", "epochs": "1"},
    )


def multi_host(body: bytes) -> bytes:
    """model_algo-2 before model_algo-1, as in the real two-host NTM tarball."""
    from pipeline_steps.formats.artifact import read_model_tar_gz

    (member,) = read_model_tar_gz(body)
    other = stored_zip([("meta.json", b"{}"), ("params", b"x" * 5000)], (2024, 1, 2, 3, 4, 6))
    return model_tar_gz([Member("model_algo-2", other, 0), member])


def outputs(s3) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/knn/").get("Contents", [])
    objects = {o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read() for o in listed}
    for o in listed:
        s3.delete_object(Bucket=BUCKET, Key=o["Key"])
    return objects


def whole(*args, **kwargs):
    raise StreamUnsupportedError("the whole-artifact path, for comparison")


@pytest.mark.parametrize(
    "make",
    [
        lambda m: fm_model_bytes(m, mtime=0),
        lambda m: multi_host(fm_model_bytes(m, mtime=0)),
        layout_b_bytes,  # V transposed: read whole, yielded in blocks
        lambda m: fm_model_bytes(FMModel(m.w0, m.w, m.V[:, :1], m.feature_dim), mtime=0),  # one factor
    ],
    ids=["layout-a", "two-hosts", "layout-b", "one-factor"],
)
@pytest.mark.parametrize("chunk_rows", [1, 3, 5, 1000])
def test_streamed_outputs_equal_the_whole_artifact_path_byte_for_byte(s3, monkeypatch, make, chunk_rows):
    rng = np.random.default_rng(0)
    event = setup(s3, rng, make(model(1)))
    config = cfg(x=2, users_per_shard=3, related_x=2)
    monkeypatch.setattr(core, "STREAM_CHUNK_ROWS", chunk_rows)
    streamed = core.repackage(s3=s3, bucket=BUCKET, event=event, config=config)
    got = outputs(s3)
    monkeypatch.setattr(core, "iter_fm_model", whole)
    reference = core.repackage(s3=s3, bucket=BUCKET, event=event, config=config)
    assert streamed == reference
    assert got == outputs(s3)
    assert len([k for k in got if "/users-0" in k]) == 3  # 7 users, 3 per part


def test_the_stream_holds_one_block_of_v(s3):
    m = model(2, factors=4)
    events = list(iter_fm_model(Body(fm_model_bytes(m, mtime=0)), chunk_rows=5))
    assert isinstance(events[0], FMMeta) and events[0].feature_dim == N_USERS + N_ITEMS
    rows = [e for e in events[1:-1] if isinstance(e, FMRows)]
    assert [(e.start, e.rows.shape) for e in rows] == [(0, (5, 4)), (5, (5, 4)), (10, (2, 4))]
    assert np.array_equal(np.vstack([e.rows for e in rows]), m.V)
    assert isinstance(events[-1], FMLinear) and np.array_equal(events[-1].w, m.w) and events[-1].w0 == 0.5


def test_the_real_sagemaker_container_streams_like_the_whole_reader():
    """No FM artifact of a real job is in the fixtures; the real NTM one has the same packaging
    (two hosts, stored ZIP, MXNet V2 arrays): its 2000 x 10 array streams row for row, then the
    names say it is not an FM model."""
    tarball = (FIXTURES / "norib016-ntm" / "downloaded_model.tar.gz").read_bytes()
    params = mxnet_params.load(zipfile.ZipFile(FIXTURES / "norib016-ntm" / "model_algo-1").read("params"))
    events = iter_fm_model(Body(tarball, step=4096), chunk_rows=300)
    meta = next(events)
    assert isinstance(meta, FMMeta) and meta.feature_dim == 2000
    blocks = []
    with pytest.raises(FMModelError, match="no FM parameters"):
        for event in events:
            blocks.append(event.rows)
    assert np.array_equal(np.vstack(blocks), params["arg:projection_weight"])


def bare_zip(m: FMModel) -> bytes:
    from pipeline_steps.formats.artifact import read_model_tar_gz

    return read_model_tar_gz(fm_model_bytes(m, mtime=0))[0].data


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda z: z.replace(b"params", b"paramz"), "member params missing"),
        (lambda z: z.replace(b"meta.json", b"meta.jsno"), "params precede meta.json"),
        (lambda z: z[:-300] + bytes([z[-300] ^ 1]) + z[-299:], "fails its CRC-32 check"),
        (lambda z: z[:400], "truncated"),
    ],
)
def test_broken_artifacts_raise_naming_the_part(mangle, match):
    body = mangle(bare_zip(model(3)))
    with pytest.raises(FMModelError, match=match):
        list(iter_fm_model(Body(body)))


def test_a_compressed_member_falls_back_to_the_whole_reader(s3):
    m = model(4)
    meta = {"training_parameters": {"feature_dim": str(m.feature_dim)}, "version": 1}
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr(
            "params",
            mxnet_params.dump(
                {
                    "arg:v": m.V,
                    "arg:w1_weight": m.w.reshape(-1, 1),
                    "arg:w0_weight": np.array([m.w0], np.float32),
                }
            ),
        )
    body = model_tar_gz([Member("model_algo-1", buf.getvalue(), 0)])
    with pytest.raises(StreamUnsupportedError, match="compressed"):
        list(iter_fm_model(Body(body)))
    rng = np.random.default_rng(0)
    out = core.repackage(s3=s3, bucket=BUCKET, event=setup(s3, rng, body), config=cfg(x=2))
    assert out["feature_dim"] == "4"
