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


def test_a_profile_gives_every_step_its_values(monkeypatch):
    """`--profile`: the sections as the app resolves them, without the bench's own reductions."""
    monkeypatch.setattr(scale, "PROFILE", "profiles/100m.json")
    ctx = scale.context()
    assert ctx["topx:fm"]["instance_count"] == 3
    assert ctx["topx:fm"]["hyperparameters"]["epochs"] == "3"  # topx:recipe minimal
    assert ctx["topx:prepare"]["min_shards"] == 3  # FM instances -> train shards
    assert scale._repackage_config().transform_instance_count == 12  # transform instances -> parts
    prepare = scale._prepare_config({"input_prefix": "input/x/"})
    assert (prepare.negative_draws, prepare.negative_ratio, prepare.engine) == (1, 1, "spark")
    assert scale.profile_engines(["duckdb"]) == ["duckdb", "spark"]
    assert scale.profile_summary("profiles/100m.json")["lambda_memory_mb"] == 10240


def test_without_a_profile_the_bench_reduces_the_defaults(monkeypatch):
    monkeypatch.setattr(scale, "PROFILE", None)
    assert scale._prepare_config({"input_prefix": "input/x/"}).negative_draws == 1
    assert scale.context()["topx:fm"]["instance_count"] == 1


def test_spark_at_the_smaller_sizes_only_is_fitted_over_those():
    """`--spark-max-rows`: the Spark figures come from the largest size it ran at."""
    sizes = [1_000_000, 3_000_000, 10_000_000]
    per_size = [_per_size(n, spark=n <= 3_000_000) for n in sizes]
    out = scale.summarise(sizes, per_size, ["duckdb", "spark"])
    assert out["steps"]["prepare_spark"]["sizes"] == [1_000_000, 3_000_000]
    assert out["steps"]["prepare"]["sizes"] == sizes
    assert out["spark_rows_per_core_s"] == round(3_000_000 / (30.0 * 2))


def test_the_summary_is_made_again_from_the_printed_lines(tmp_path):
    """`--from-log`: the per-step lines a run printed give the same summary; the plot takes a step
    measured at fewer sizes (the Spark engine under `--spark-max-rows`)."""
    import json

    sizes = [1_000_000, 3_000_000, 10_000_000]
    per_size = [_per_size(n, spark=n <= 3_000_000) for n in sizes]
    lines = ["not json", "[]"]
    for n, p in zip(sizes, per_size, strict=True):
        p["figures"]["prepare"]["counts"] = {"train_interactions": n // 2}
        p["figures"]["repackage"] |= {"k": 5, "k_all_users": 9, "users_over_cap": 1, "n_parts": 3}
        p["figures"]["evaluate"] |= {"users_filled": 0, "precision": 0.1, "baseline_precision": 0.2}
        lines += [json.dumps({"size": n, "step": step, **fig}) for step, fig in p["figures"].items()]
    got_sizes, got = scale.per_size_from_log("\n".join(lines))
    assert got_sizes == sizes
    summary = scale.summarise(sizes, got, ["duckdb", "spark"])
    assert summary["steps"] == scale.summarise(sizes, per_size, ["duckdb", "spark"])["steps"]
    assert got[2]["shape"]["n_parts"] == 3
    assert scale.plot(summary, tmp_path).is_file()


def test_a_run_stopped_by_a_failed_step_is_summarised_without_it():
    """`--from-log` on a run whose publish failed at the largest size: the other steps are fitted
    over every size, publish over the sizes it has, and the size names what it lacks."""
    import json

    import pytest

    sizes = [1_000_000, 3_000_000, 10_000_000]
    lines = []
    for n in sizes:
        p = _per_size(n, spark=False)
        p["figures"]["prepare"]["counts"] = {"train_interactions": n // 2}
        p["figures"]["repackage"] |= {"k": 5, "k_all_users": 9, "users_over_cap": 1, "n_parts": 3}
        p["figures"]["evaluate"] |= {"users_filled": 0, "precision": 0.1, "baseline_precision": 0.2}
        lines += [
            json.dumps({"size": n, "step": step, **fig})
            for step, fig in p["figures"].items()
            if not (step == "publish" and n == sizes[-1])
        ]
    got_sizes, got = scale.per_size_from_log("\n".join(lines))
    assert got_sizes == sizes and got[2]["shape"]["missing_steps"] == ["publish"]
    assert "missing_steps" not in got[1]["shape"]
    summary = scale.summarise(sizes, got, ["duckdb"])
    assert summary["steps"]["publish"]["sizes"] == sizes[:2]
    assert summary["steps"]["transform"]["sizes"] == sizes
    without_prepare = [line for line in lines if '"step": "prepare"' not in line or '"size": 1000000' in line]
    with pytest.raises(SystemExit, match="size 3000000 has no line for"):
        scale.per_size_from_log("\n".join(without_prepare))
