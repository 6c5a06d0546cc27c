"""bench/scale.py's summary: exponents over the sizes, and the Spark figure only when it was measured."""

from __future__ import annotations

import pytest

from bench import scale


def _figures(seconds: float, rows: int, *, cpu: float | None = None, inc_kb: int = 10_240) -> dict:
    return {
        "seconds": seconds,
        "cpu_seconds": cpu if cpu is not None else seconds,
        "start_rss_kb": 100_000,
        "peak_rss_kb": 100_000 + inc_kb,
        "input_rows": rows,
        "cores": 2,
    }


def _per_size(n: int, *, spark: bool) -> dict:
    figures = {step: _figures(n / 1e5, n, inc_kb=n // 100) for step in scale.STEPS}
    figures["transform"] = _figures((n / 1e6) ** 2, n)  # quadratic
    if spark:
        figures["prepare_spark"] = _figures(10 + n / 1e5, n) | {"startup_seconds": 10.0, "cores": 2}
    return {"shape": {"rows": n}, "figures": figures}


def test_summary_fits_exponents_and_names_the_largest():
    sizes = [1_000_000, 3_000_000, 10_000_000]
    out = scale.summarise(sizes, [_per_size(n, spark=False) for n in sizes], ["duckdb"])
    assert out["steps"]["prepare"]["time_exponent"] == pytest.approx(1.0)
    assert out["max_time_exponent"] == pytest.approx(2.0)
    assert out["max_time_exponent_step"] == "transform"
    assert out["steps"]["transform"]["vs_linear"] == pytest.approx(10.0)
    assert out["steps"]["publish"]["rss_exponent"] == pytest.approx(1.0, abs=0.01)
    # prepare: rows / (wall seconds x threads) at the largest size
    assert out["prepare_rows_per_core_s"] == round(10_000_000 / (100.0 * 2))
    assert out["spark_rows_per_core_s"] is None


def test_spark_figure_excludes_its_start_up():
    sizes = [1_000_000, 3_000_000]
    out = scale.summarise(sizes, [_per_size(n, spark=True) for n in sizes], ["duckdb", "spark"])
    assert out["spark_rows_per_core_s"] == round(3_000_000 / (30.0 * 2))
    assert out["spark_startup_seconds"] == 10.0
    assert "prepare_spark" in out["steps"]  # its exponent counts in max_time_exponent


def test_spark_not_requested_is_stated():
    sizes = [1_000_000, 3_000_000]
    out = scale.summarise(sizes, [_per_size(n, spark=False) for n in sizes], ["duckdb"])
    assert out["spark_rows_per_core_s"] is None
    assert out["spark_status"] == "not requested (--engines)"


def test_index_type_is_reported_cdk_json_default_otherwise():
    sizes = [1_000_000, 3_000_000]
    per_size = [_per_size(n, spark=False) for n in sizes]
    assert scale.summarise(sizes, per_size, ["duckdb"])["index_type"] == "faiss.Flat"
    assert scale.summarise(sizes, per_size, ["duckdb"], "faiss.IVFFlat")["index_type"] == "faiss.IVFFlat"


def test_index_type_reaches_the_knn_training_request(monkeypatch):
    import pipeline_steps.local_algorithms as local

    seen: list[dict] = []

    def fake_job(request, **_):
        seen.append(request["HyperParameters"])
        return {"TrainingJobStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}}

    monkeypatch.setattr(local, "run_training_job", fake_job)
    rep = {"feature_dim": "65", "k": "10", "sample_size": "30", "knn_train_s3_uri": "s3://b/t"}
    state = {"run": "r", "repackage": {"result": rep}, "prepare": {"n_items": 30}}
    scale.step_knn_train(None, None, state)
    scale.step_knn_train(None, None, state | {"index_type": "faiss.IVFFlat"})
    assert [h["index_type"] for h in seen] == ["faiss.Flat", "faiss.IVFFlat"]
